// Package aeadstream is the STREAM construction (Hoang, Reyhanitabar,
// Rogaway, Vizár 2015) both of trainyard's sealed formats use: plaintext
// cut into chunks of a fixed size, each sealed with an AEAD under a nonce
// that binds its position and whether it is the last, so that reordering,
// dropping, duplicating, truncating or extending chunks fails
// authentication. The formats differ only in how position and finality go
// into the nonce and the associated data (Layout); the buffering, the
// detection of the last chunk and the failure rules are this package's, once.
package aeadstream

import (
	"bufio"
	"crypto/cipher"
	"errors"
	"io"
)

// Layout binds chunk i and its finality into the nonce and the associated
// data. Implementations append to dst and return it.
type Layout interface {
	Nonce(dst []byte, i uint64, final bool) []byte
	AD(dst []byte, final bool) []byte
}

// Failure is what went wrong with a sealed stream; the formats turn it into
// their own error vocabulary (Reader.Fail).
type Failure int

const (
	// NoFinal: the stream ended where a chunk was due; the final chunk is
	// missing.
	NoFinal Failure = iota
	// Short: a chunk is shorter than the AEAD tag.
	Short
	// Forged: a chunk fails authentication.
	Forged
)

// Writer seals what is written to it into chunks of Size bytes. It keeps one
// chunk in memory: a full chunk is sealed only once more data arrives, so
// that Close seals the real last chunk as final.
type Writer struct {
	w      io.Writer
	aead   cipher.AEAD
	l      Layout
	size   int
	buf    []byte
	out    []byte
	nonce  []byte
	ad     []byte
	i      uint64
	closed bool
	err    error
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("aeadstream: write after close")

// NewWriter seals into w with aead, chunks of size bytes laid out by l.
func NewWriter(w io.Writer, aead cipher.AEAD, l Layout, size int) *Writer {
	return &Writer{w: w, aead: aead, l: l, size: size, buf: make([]byte, 0, size), out: make([]byte, 0, size+aead.Overhead())}
}

func (c *Writer) flush(final bool) error {
	c.nonce = c.l.Nonce(c.nonce[:0], c.i, final)
	c.ad = c.l.AD(c.ad[:0], final)
	c.out = c.aead.Seal(c.out[:0], c.nonce, c.buf, c.ad)
	c.i++
	c.buf = c.buf[:0]
	_, err := c.w.Write(c.out)
	return err
}

func (c *Writer) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.closed {
		return 0, ErrClosed
	}
	n := 0
	for len(b) > 0 {
		if len(c.buf) == c.size {
			if c.err = c.flush(false); c.err != nil {
				return n, c.err
			}
		}
		k := copy(c.buf[len(c.buf):c.size], b)
		c.buf = c.buf[:len(c.buf)+k]
		b = b[k:]
		n += k
	}
	return n, nil
}

// Close seals the final chunk (empty for an empty stream). It does not
// close the underlying writer.
func (c *Writer) Close() error {
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

// Reader opens and authenticates sealed chunks. It returns io.EOF only after
// a chunk sealed as final has been authenticated and nothing follows it. A
// failure of the stream is Fail's error; an error of the underlying reader
// is ReadErr's; either sticks.
type Reader struct {
	// Fail makes the format's error for a failure at chunk i.
	Fail func(f Failure, i uint64) error
	// ReadErr wraps an error of the underlying reader (nil: as it is).
	ReadErr func(error) error

	r     *bufio.Reader
	aead  cipher.AEAD
	l     Layout
	in    []byte
	plain []byte
	pos   int
	nonce []byte
	ad    []byte
	i     uint64
	done  bool
	err   error
}

// NewReader opens what r holds with aead, chunks of size plaintext bytes
// laid out by l, reading ahead through a buffer of bufSize bytes.
func NewReader(r io.Reader, aead cipher.AEAD, l Layout, size, bufSize int, fail func(Failure, uint64) error) *Reader {
	return &Reader{Fail: fail, r: bufio.NewReaderSize(r, bufSize), aead: aead, l: l, in: make([]byte, size+aead.Overhead())}
}

func (c *Reader) readErr(err error) error {
	if c.ReadErr != nil {
		return c.ReadErr(err)
	}
	return err
}

func (c *Reader) next() error {
	n, err := io.ReadFull(c.r, c.in)
	final := false
	switch {
	case err == io.EOF:
		return c.Fail(NoFinal, c.i)
	case err == io.ErrUnexpectedEOF:
		final = true
	case err != nil:
		return c.readErr(err)
	default:
		// A full chunk is the last one when nothing follows it.
		if _, perr := c.r.Peek(1); perr == io.EOF {
			final = true
		} else if perr != nil {
			return c.readErr(perr)
		}
	}
	if n < c.aead.Overhead() {
		return c.Fail(Short, c.i)
	}
	c.nonce = c.l.Nonce(c.nonce[:0], c.i, final)
	c.ad = c.l.AD(c.ad[:0], final)
	plain, oerr := c.aead.Open(c.in[:0], c.nonce, c.in[:n], c.ad)
	if oerr != nil {
		return c.Fail(Forged, c.i)
	}
	c.plain, c.pos = plain, 0
	c.i++
	c.done = final
	return nil
}

func (c *Reader) Read(b []byte) (int, error) {
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
