package seal

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The body is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár
// 2015) over AES-256-GCM: plaintext is cut into chunks of ChunkSize bytes
// (the last may be shorter, and is empty only for an empty payload); chunk i
// is sealed with nonce = NoncePrefix(4) || uint64_be(i) and associated data
// SHA-256(header bytes) || final flag (1 for the last chunk, else 0). So
// reordering, dropping, duplicating or truncating chunks, appending data, or
// changing one header byte all fail authentication.

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

type chunkParams struct {
	aead   cipher.AEAD
	prefix []byte
	hh     [32]byte
	size   int
}

func (p *chunkParams) nonce(dst []byte, i uint64) []byte {
	dst = append(dst[:0], p.prefix...)
	return binary.BigEndian.AppendUint64(dst, i)
}

func (p *chunkParams) ad(dst []byte, final bool) []byte {
	dst = append(dst[:0], p.hh[:]...)
	if final {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// chunkWriter encrypts a plaintext stream into sealed chunks. It keeps one
// chunk in memory: a full chunk is only written once more data arrives, so
// that Close can mark the real last chunk final.
type chunkWriter struct {
	p      chunkParams
	w      io.Writer
	buf    []byte
	out    []byte
	nonce  []byte
	adbuf  []byte
	i      uint64
	closed bool
	err    error
}

func newChunkWriter(w io.Writer, key, prefix []byte, hh [32]byte, size int) (*chunkWriter, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return &chunkWriter{
		p:   chunkParams{aead: aead, prefix: prefix, hh: hh, size: size},
		w:   w,
		buf: make([]byte, 0, size),
		out: make([]byte, 0, size+tagSize),
	}, nil
}

func (c *chunkWriter) flush(final bool) error {
	c.nonce = c.p.nonce(c.nonce, c.i)
	c.adbuf = c.p.ad(c.adbuf, final)
	c.out = c.p.aead.Seal(c.out[:0], c.nonce, c.buf, c.adbuf)
	if _, err := c.w.Write(c.out); err != nil {
		return err
	}
	c.i++
	c.buf = c.buf[:0]
	return nil
}

func (c *chunkWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.closed {
		return 0, errors.New("seal: write after close")
	}
	n := 0
	for len(b) > 0 {
		if len(c.buf) == c.p.size {
			if c.err = c.flush(false); c.err != nil {
				return n, c.err
			}
		}
		k := copy(c.buf[len(c.buf):c.p.size], b)
		c.buf = c.buf[:len(c.buf)+k]
		b = b[k:]
		n += k
	}
	return n, nil
}

// Close writes the final chunk. It does not close the underlying writer.
func (c *chunkWriter) Close() error {
	if c.err != nil {
		return c.err
	}
	if c.closed {
		return nil
	}
	c.closed = true
	c.err = c.flush(true)
	return c.err
}

// chunkReader decrypts and authenticates sealed chunks. It returns io.EOF
// only after a chunk marked final has been authenticated and nothing
// follows it; any failure is ErrTampered and sticks.
type chunkReader struct {
	p     chunkParams
	r     *bufio.Reader
	in    []byte
	plain []byte
	pos   int
	nonce []byte
	adbuf []byte
	i     uint64
	done  bool
	err   error
}

func newChunkReader(r io.Reader, key, prefix []byte, hh [32]byte, size int) (*chunkReader, error) {
	if size < minChunkSize || size > maxChunkSize {
		return nil, fmt.Errorf("%w: chunk size %d out of range", ErrMalformed, size)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return &chunkReader{
		p:     chunkParams{aead: aead, prefix: prefix, hh: hh, size: size},
		r:     bufio.NewReaderSize(r, 64<<10),
		in:    make([]byte, size+tagSize),
		plain: make([]byte, 0, size),
	}, nil
}

func (c *chunkReader) next() error {
	n, err := io.ReadFull(c.r, c.in)
	final := false
	switch {
	case err == io.EOF:
		// No bytes at all where a chunk was due: the final chunk is missing.
		return fmt.Errorf("%w: archive truncated after chunk %d (no final chunk)", ErrTampered, c.i)
	case err == io.ErrUnexpectedEOF:
		final = true
	case err != nil:
		return &readError{err: err}
	default:
		if _, perr := c.r.Peek(1); perr == io.EOF {
			final = true
		} else if perr != nil {
			return &readError{err: perr}
		}
	}
	if n < tagSize {
		return fmt.Errorf("%w: archive truncated in chunk %d", ErrTampered, c.i)
	}
	c.nonce = c.p.nonce(c.nonce, c.i)
	c.adbuf = c.p.ad(c.adbuf, final)
	plain, oerr := c.p.aead.Open(c.plain[:0], c.nonce, c.in[:n], c.adbuf)
	if oerr != nil {
		return fmt.Errorf("%w: chunk %d (at byte %d of the body) does not authenticate", ErrTampered, c.i, c.i*uint64(c.p.size+tagSize))
	}
	c.plain, c.pos = plain, 0
	c.i++
	c.done = final
	return nil
}

func (c *chunkReader) Read(b []byte) (int, error) {
	for c.pos == len(c.plain) {
		if c.err != nil {
			return 0, c.err
		}
		if c.done {
			return 0, io.EOF
		}
		if c.err = c.next(); c.err != nil {
			return 0, c.err
		}
	}
	n := copy(b, c.plain[c.pos:])
	c.pos += n
	return n, nil
}
