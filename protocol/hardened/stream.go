package hardened

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/trainyard/trainyard/internal/aeadstream"
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

// trainLayout is the train stream's chunk layout: nonce = counter (11
// bytes) | last-chunk flag, associated data = the header. The chunking is
// internal/aeadstream's, shared with sealed archives.
type trainLayout struct{ header []byte }

func (l trainLayout) Nonce(dst []byte, i uint64, last bool) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[3:11], i)
	if last {
		n[11] = 1
	}
	return append(dst, n[:]...)
}

func (l trainLayout) AD(dst []byte, _ bool) []byte { return append(dst, l.header...) }

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
	return aeadstream.NewWriter(w, aead, trainLayout{header: hb}, chunkSize), nil
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
	return aeadstream.NewReader(r, aead, trainLayout{header: hb}, h.ChunkSize, 4096, func(f aeadstream.Failure, i uint64) error {
		if f == aeadstream.Forged {
			return fmt.Errorf("%w: sealed stream chunk %d fails authentication", ErrTampered, i)
		}
		return fmt.Errorf("%w: sealed stream truncated", ErrTampered)
	}), nil
}
