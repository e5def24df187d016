package hardened

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Sealed stream format (all integers big-endian):
//
//	header  = magic "TYSTRM01" | alg u8 (1 = AES-256-GCM) | chunk size u32 | salt [32] | commit [32]
//	chunk_i = AES-256-GCM(subkey, nonce_i, plaintext_i, aad = header)
//	nonce_i = counter_i as 11 bytes | last-chunk flag u8 (0 or 1)
//
// subkey = HKDF-SHA256(K, salt, "trainyard/v1 stream key") and commit =
// HKDF-SHA256(K, salt, "trainyard/v1 stream commit"); the commitment makes a
// wrong or substituted key fail before any plaintext is released. Every chunk
// but the last holds exactly chunk-size bytes of plaintext; the last holds
// 0..chunk-size and carries the flag, so truncation and extension both fail
// (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár).
const (
	streamMagic        = "TYSTRM01"
	streamAlgAES256GCM = 1
	streamHeaderSize   = 8 + 1 + 4 + 32 + 32
	// DefaultChunkSize bounds the memory a sealed stream needs on either side.
	DefaultChunkSize = 1 << 20
	minChunkSize     = 512
	maxChunkSize     = 16 << 20
	keySize          = 32
	gcmTagSize       = 16
)

// StreamHeader is the parsed fixed-size header of a sealed stream.
type StreamHeader struct {
	Alg       byte
	ChunkSize int
	Salt      [32]byte
	Commit    [32]byte
}

// ParseStreamHeader checks and decodes a sealed stream header.
func ParseStreamHeader(b []byte) (StreamHeader, error) {
	var h StreamHeader
	if len(b) != streamHeaderSize {
		return h, fmt.Errorf("%w: stream header is %d bytes, want %d", ErrMalformed, len(b), streamHeaderSize)
	}
	if string(b[:8]) != streamMagic {
		return h, fmt.Errorf("%w: not a trainyard sealed stream", ErrMalformed)
	}
	h.Alg = b[8]
	if h.Alg != streamAlgAES256GCM {
		return h, fmt.Errorf("%w: stream algorithm %d", ErrUnsupported, h.Alg)
	}
	cs := binary.BigEndian.Uint32(b[9:13])
	if cs < minChunkSize || cs > maxChunkSize {
		return h, fmt.Errorf("%w: chunk size %d out of range", ErrMalformed, cs)
	}
	h.ChunkSize = int(cs)
	copy(h.Salt[:], b[13:45])
	copy(h.Commit[:], b[45:77])
	return h, nil
}

func (h StreamHeader) marshal() []byte {
	b := make([]byte, 0, streamHeaderSize)
	b = append(b, streamMagic...)
	b = append(b, h.Alg)
	b = binary.BigEndian.AppendUint32(b, uint32(h.ChunkSize))
	b = append(b, h.Salt[:]...)
	return append(b, h.Commit[:]...)
}

func streamKeys(key []byte, salt []byte) (cipher.AEAD, []byte, error) {
	if len(key) != keySize {
		return nil, nil, fmt.Errorf("%w: content key is %d bytes, want %d", ErrTampered, len(key), keySize)
	}
	sub, err := hkdf.Key(sha256.New, key, salt, "trainyard/v1 stream key", 32)
	if err != nil {
		return nil, nil, err
	}
	commit, err := hkdf.Key(sha256.New, key, salt, "trainyard/v1 stream commit", 32)
	if err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	return aead, commit, nil
}

func chunkNonce(n *[12]byte, counter uint64, last bool) {
	*n = [12]byte{}
	binary.BigEndian.PutUint64(n[3:11], counter)
	if last {
		n[11] = 1
	}
}

type sealWriter struct {
	w       io.Writer
	aead    cipher.AEAD
	aad     []byte
	buf     []byte // plaintext of the pending chunk
	out     []byte
	counter uint64
	err     error
	closed  bool
}

// NewSealWriter returns a writer that seals everything written to it under
// key (32 bytes) into w. Close must be called to write the final chunk; it
// does not close w. chunkSize 0 means DefaultChunkSize.
func NewSealWriter(w io.Writer, key []byte, chunkSize int) (io.WriteCloser, error) {
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < minChunkSize || chunkSize > maxChunkSize {
		return nil, fmt.Errorf("%w: chunk size %d out of range", ErrUnsupported, chunkSize)
	}
	h := StreamHeader{Alg: streamAlgAES256GCM, ChunkSize: chunkSize}
	if _, err := rand.Read(h.Salt[:]); err != nil {
		return nil, err
	}
	aead, commit, err := streamKeys(key, h.Salt[:])
	if err != nil {
		return nil, err
	}
	copy(h.Commit[:], commit)
	hb := h.marshal()
	if _, err := w.Write(hb); err != nil {
		return nil, err
	}
	return &sealWriter{w: w, aead: aead, aad: hb, buf: make([]byte, 0, chunkSize),
		out: make([]byte, 0, chunkSize+gcmTagSize)}, nil
}

func (s *sealWriter) flush(last bool) error {
	var nonce [12]byte
	chunkNonce(&nonce, s.counter, last)
	s.counter++
	s.out = s.aead.Seal(s.out[:0], nonce[:], s.buf, s.aad)
	s.buf = s.buf[:0]
	_, err := s.w.Write(s.out)
	return err
}

func (s *sealWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.closed {
		return 0, errors.New("hardened: write to closed seal writer")
	}
	n := 0
	for len(p) > 0 {
		// A full buffer is flushed only once more data arrives, so the
		// chunk written by Close is always the one flagged last.
		if len(s.buf) == cap(s.buf) {
			if s.err = s.flush(false); s.err != nil {
				return n, s.err
			}
		}
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

func (s *sealWriter) Close() error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return nil
	}
	s.closed = true
	s.err = s.flush(true)
	return s.err
}

type openReader struct {
	r       *bufio.Reader
	aead    cipher.AEAD
	aad     []byte
	cs      int
	ct      []byte
	plain   []byte // decrypted bytes not yet returned
	counter uint64
	done    bool
	err     error
}

// NewOpenReader reads a sealed stream from r and returns its plaintext.
// A wrong key fails at once; any modification, truncation or extension of
// the stream fails with ErrTampered no later than the chunk it touches.
func NewOpenReader(r io.Reader, key []byte) (io.Reader, error) {
	hb := make([]byte, streamHeaderSize)
	if _, err := io.ReadFull(r, hb); err != nil {
		// %v, not %w: a short header (io.ErrUnexpectedEOF) is a refused
		// train, not a network failure to retry.
		return nil, fmt.Errorf("%w: reading stream header: %v", ErrMalformed, err)
	}
	h, err := ParseStreamHeader(hb)
	if err != nil {
		return nil, err
	}
	aead, commit, err := streamKeys(key, h.Salt[:])
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(commit, h.Commit[:]) != 1 {
		return nil, fmt.Errorf("%w: stream key commitment does not match", ErrTampered)
	}
	return &openReader{r: bufio.NewReaderSize(r, 4096), aead: aead, aad: hb, cs: h.ChunkSize,
		ct: make([]byte, h.ChunkSize+gcmTagSize)}, nil
}

func (o *openReader) next() error {
	n, err := io.ReadFull(o.r, o.ct)
	last := false
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		last = true
	case err != nil:
		return err
	default:
		if _, perr := o.r.Peek(1); perr == io.EOF {
			last = true
		} else if perr != nil {
			return perr
		}
	}
	if n < gcmTagSize {
		return fmt.Errorf("%w: sealed stream truncated", ErrTampered)
	}
	var nonce [12]byte
	chunkNonce(&nonce, o.counter, last)
	o.counter++
	p, aerr := o.aead.Open(o.ct[:0], nonce[:], o.ct[:n], o.aad)
	if aerr != nil {
		return fmt.Errorf("%w: sealed stream chunk %d fails authentication", ErrTampered, o.counter-1)
	}
	o.plain = p
	o.done = last
	return nil
}

func (o *openReader) Read(p []byte) (int, error) {
	for len(o.plain) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		if o.done {
			return 0, io.EOF
		}
		if err := o.next(); err != nil {
			o.err = err
			return 0, err
		}
	}
	n := copy(p, o.plain)
	o.plain = o.plain[n:]
	return n, nil
}
