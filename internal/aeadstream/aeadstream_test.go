package aeadstream_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/trainyard/trainyard/internal/aeadstream"
	"github.com/trainyard/trainyard/internal/testutil"
)

type layout struct{}

func (layout) Nonce(dst []byte, i uint64, final bool) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[:8], i)
	if final {
		n[11] = 1
	}
	return append(dst, n[:]...)
}

func (layout) AD(dst []byte, _ bool) []byte { return append(dst, "header"...) }

var errTampered = errors.New("tampered")

func aead(t testing.TB) cipher.AEAD {
	b, _ := aes.NewCipher(bytes.Repeat([]byte{1}, 32))
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func seal(t testing.TB, plain []byte, size int) []byte {
	var out bytes.Buffer
	w := aeadstream.NewWriter(&out, aead(t), layout{}, size)
	// Odd write sizes cross chunk boundaries.
	for len(plain) > 0 {
		k := min(len(plain), 333)
		if _, err := w.Write(plain[:k]); err != nil {
			t.Fatal(err)
		}
		plain = plain[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, aeadstream.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	return out.Bytes()
}

func open(t testing.TB, sealed []byte, size int) ([]byte, error) {
	r := aeadstream.NewReader(bytes.NewReader(sealed), aead(t), layout{}, size, 4096,
		func(f aeadstream.Failure, i uint64) error {
			return fmt.Errorf("%w: failure %d at chunk %d", errTampered, f, i)
		})
	return io.ReadAll(r)
}

// TestRoundTripAndTampering: every length around chunk boundaries opens to
// itself; reordered, dropped, duplicated, truncated, extended or flipped
// chunks fail.
func TestRoundTripAndTampering(t *testing.T) {
	const size = 64
	for _, n := range []int{0, 1, size - 1, size, size + 1, 3 * size, 3*size + 7} {
		plain := bytes.Repeat([]byte{byte(n)}, n)
		s := seal(t, plain, size)
		got, err := open(t, s, size)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: %d back, %v", n, len(got), err)
		}
		if n < 2*size {
			continue
		}
		c := size + 16
		cases := map[string][]byte{
			"swapped":    append(append(append([]byte{}, s[c:2*c]...), s[:c]...), s[2*c:]...),
			"dropped":    append(append([]byte{}, s[:c]...), s[2*c:]...),
			"duplicated": append(append([]byte{}, s[:c]...), s...),
			"truncated":  s[:2*c],
			"extended":   append(bytes.Clone(s), 0),
			"flipped":    func() []byte { b := bytes.Clone(s); b[c+3] ^= 1; return b }(),
			"empty":      {},
		}
		for name, b := range cases {
			if _, err := open(t, b, size); !errors.Is(err, errTampered) {
				t.Errorf("%d bytes, %s: %v", n, name, err)
			}
		}
	}
}

func TestDependencies(t *testing.T) {
	testutil.ForbidDeps(t, "github.com/trainyard/trainyard/internal/aeadstream")
}

// FuzzOpen: no input panics the reader, and only a genuine stream opens.
func FuzzOpen(f *testing.F) {
	genuine := seal(f, []byte("the plaintext of a small stream, longer than one chunk"), 16)
	f.Add(genuine)
	f.Add(genuine[:20])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := open(t, b, 16)
		if err == nil && !bytes.Equal(b, genuine) && len(got) > 0 {
			t.Fatalf("a forged stream opened to %q", got)
		}
	})
}
