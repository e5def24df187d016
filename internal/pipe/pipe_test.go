package pipe

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriterRoundTrip(t *testing.T) {
	data := randomBytes(t, 5<<20+123)
	for _, size := range []int{1, 7, 4096, DefaultSize} {
		var out bytes.Buffer
		w := NewWriter(&out, size, 2)
		// Odd write sizes, so writes straddle buffers.
		for p := data; len(p) > 0; {
			k := min(len(p), 99991)
			if n, err := w.Write(p[:k]); err != nil || n != k {
				t.Fatalf("size %d: write %d, %v", size, n, err)
			}
			p = p[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("size %d: %d bytes out, want %d equal bytes", size, out.Len(), len(data))
		}
		if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("write after close: %v", err)
		}
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		return 0, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterError(t *testing.T) {
	boom := errors.New("disk full")
	w := NewWriter(&failAfter{n: 3 << 20, err: boom}, 1<<20, 2)
	data := randomBytes(t, 1<<20)
	var err error
	// The error surfaces on a later Write or on Close; either way no
	// deadlock and the cause is kept.
	for i := 0; i < 20 && err == nil; i++ {
		_, err = w.Write(data)
	}
	if cerr := w.Close(); !errors.Is(cerr, boom) {
		t.Fatalf("Close = %v, want %v", cerr, boom)
	}
	if err != nil && !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want %v", err, boom)
	}
	if err := w.Close(); !errors.Is(err, boom) {
		t.Fatalf("second Close = %v", err)
	}
}

func TestReaderRoundTrip(t *testing.T) {
	data := randomBytes(t, 300<<10+17)
	for _, size := range []int{1, 5, 4096, DefaultSize} {
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"plain":    func(r io.Reader) io.Reader { return r },
			"onebyte":  iotest.OneByteReader,
			"halfread": iotest.HalfReader,
		} {
			r := NewReader(bytes.NewReader(data), size, 3)
			got, err := io.ReadAll(wrap(r))
			if err != nil {
				t.Fatalf("%s/%d: %v", name, size, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s/%d: %d bytes, want %d equal bytes", name, size, len(got), len(data))
			}
			r.Close()
		}
	}
}

// The underlying reader's error arrives after the bytes read before it,
// and once Read has returned it the goroutine no longer touches the
// underlying reader (the race detector checks the digest read below).
func TestReaderErrorAfterData(t *testing.T) {
	boom := errors.New("connection reset")
	data := randomBytes(t, 2<<20+5)
	h := sha256.New()
	src := io.TeeReader(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)), h)
	r := NewReader(src, 1<<20, 2)
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%d bytes before the error, want %d", len(got), len(data))
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("the underlying reader saw other bytes")
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, boom) {
		t.Fatalf("read after error = %v", err)
	}
}

// Closing in the middle stops the read-ahead; nothing blocks.
func TestReaderCloseEarly(t *testing.T) {
	r := NewReader(io.LimitReader(rand.Reader, 64<<20), 1<<16, 2)
	if _, err := io.ReadFull(r, make([]byte, 100000)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r.Close()
	for {
		if _, err := r.Read(make([]byte, 1<<16)); err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("read after close = %v", err)
			}
			break
		}
	}
}

func BenchmarkWriterSHA256(b *testing.B) {
	data := randomBytes(b, 64<<20)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		w := NewWriter(sha256.New(), 0, 0)
		for p := data; len(p) > 0; p = p[1<<20:] {
			w.Write(p[:1<<20])
		}
		w.Close()
	}
}
