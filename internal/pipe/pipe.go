// Package pipe moves one side of a byte stream onto a second goroutine, so
// that on a machine with two cores the hashing and I/O of one side run beside
// the decryption and hashing of the other. A sealed results stream is hashed
// twice by design (the plaintext files for the signed tree manifest, the
// ciphertext for the signed blob digest); on one goroutine those passes add
// up, on two they overlap.
//
// Memory is bounded: each pipe holds at most depth buffers of size bytes.
// Bytes are copied once into a pooled buffer; a copy costs a small fraction
// of a SHA-256 pass over the same bytes.
package pipe

import (
	"errors"
	"io"
	"sync"
)

// DefaultSize and DefaultDepth suit 1 MiB AEAD chunks: two buffers in
// flight and one being filled.
const (
	DefaultSize  = 1 << 20
	DefaultDepth = 3
)

func defaults(size, depth int) (int, int) {
	if size <= 0 {
		size = DefaultSize
	}
	if depth < 2 {
		depth = DefaultDepth
	}
	return size, depth
}

// ErrClosed is returned by Write after Close, and by Read after Close.
var ErrClosed = errors.New("pipe: write after close")

// Writer hands what is written to it to a goroutine that writes it to the
// underlying writer in buffers of a fixed size. Write returns once the bytes
// are copied; an error of the underlying writer is returned by a later Write
// or by Close. Close must be called: it flushes, waits for the goroutine and
// returns the first error.
type Writer struct {
	w      io.Writer
	cur    []byte
	full   chan []byte
	free   chan []byte
	done   chan struct{}
	mu     sync.Mutex
	err    error
	closed bool
}

// NewWriter starts the goroutine writing to w. size <= 0 and depth < 2 take
// the defaults.
func NewWriter(w io.Writer, size, depth int) *Writer {
	size, depth = defaults(size, depth)
	pw := &Writer{w: w, full: make(chan []byte, depth), free: make(chan []byte, depth), done: make(chan struct{})}
	for i := 0; i < depth; i++ {
		pw.free <- make([]byte, 0, size)
	}
	pw.cur = <-pw.free
	go pw.run()
	return pw
}

func (pw *Writer) run() {
	defer close(pw.done)
	for b := range pw.full {
		// After an error the rest is drained, never written, so that Write
		// cannot block on a goroutine that stopped.
		if pw.failed() == nil {
			if _, err := pw.w.Write(b); err != nil {
				pw.fail(err)
			}
		}
		pw.free <- b[:0]
	}
}

func (pw *Writer) failed() error {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.err
}

func (pw *Writer) fail(err error) {
	pw.mu.Lock()
	if pw.err == nil {
		pw.err = err
	}
	pw.mu.Unlock()
}

// Write copies p into the pipe.
func (pw *Writer) Write(p []byte) (int, error) {
	if pw.closed {
		return 0, ErrClosed
	}
	if err := pw.failed(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		k := copy(pw.cur[len(pw.cur):cap(pw.cur)], p)
		pw.cur = pw.cur[:len(pw.cur)+k]
		p, n = p[k:], n+k
		if len(pw.cur) == cap(pw.cur) {
			pw.full <- pw.cur
			pw.cur = <-pw.free
		}
	}
	return n, nil
}

// Close writes what is buffered, waits until the goroutine has written
// everything and returns the first error. It does not close the underlying
// writer. A second Close returns the same error.
func (pw *Writer) Close() error {
	if !pw.closed {
		pw.closed = true
		if len(pw.cur) > 0 {
			pw.full <- pw.cur
		}
		close(pw.full)
		<-pw.done
	}
	return pw.failed()
}

// Reader reads ahead of its caller on a goroutine, in buffers of a fixed
// size, so that the underlying reader's work (a read from disk or the
// network, a digest it computes) runs beside the caller's. Once Read has
// returned an error (io.EOF included), or Close has returned, the goroutine
// has finished with the underlying reader, so what that reader computed can
// be inspected. Close must be called when the caller stops before the end.
type Reader struct {
	cur  chunk
	off  int
	full chan chunk
	free chan []byte
	stop chan struct{}
	done chan struct{}
	once sync.Once
	err  error
}

type chunk struct {
	b   []byte
	err error
}

// NewReader starts the goroutine reading r. size <= 0 and depth < 2 take the
// defaults.
func NewReader(r io.Reader, size, depth int) *Reader {
	size, depth = defaults(size, depth)
	pr := &Reader{full: make(chan chunk, depth), free: make(chan []byte, depth), stop: make(chan struct{}), done: make(chan struct{})}
	for i := 0; i < depth; i++ {
		pr.free <- make([]byte, size)
	}
	go pr.run(r)
	return pr
}

func (pr *Reader) run(r io.Reader) {
	defer close(pr.done)
	for {
		var b []byte
		select {
		case b = <-pr.free:
		case <-pr.stop:
			return
		}
		n, err := io.ReadFull(r, b)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		select {
		case pr.full <- chunk{b[:n], err}:
		case <-pr.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Read copies read-ahead bytes into p.
func (pr *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for pr.off == len(pr.cur.b) {
		if pr.err != nil {
			return 0, pr.err
		}
		if pr.cur.b != nil {
			pr.free <- pr.cur.b[:cap(pr.cur.b)]
			pr.cur.b = nil
		}
		select {
		case <-pr.stop:
			return 0, ErrClosed
		default:
		}
		select {
		case c := <-pr.full:
			pr.cur, pr.off = c, 0
			if c.err != nil {
				pr.err = c.err
			}
		case <-pr.stop:
			return 0, ErrClosed
		}
	}
	n := copy(p, pr.cur.b[pr.off:])
	pr.off += n
	return n, nil
}

// Close stops the read-ahead and waits until a read of the underlying
// reader already under way has returned; its bytes are dropped.
func (pr *Reader) Close() error {
	pr.once.Do(func() { close(pr.stop) })
	<-pr.done
	return nil
}
