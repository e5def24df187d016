package hardened

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

func sealBytes(t testing.TB, key, plain []byte, chunk int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewSealWriter(&buf, key, chunk)
	if err != nil {
		t.Fatal(err)
	}
	// Write in odd pieces to exercise chunk boundaries.
	for p := plain; len(p) > 0; {
		k := min(len(p), 333)
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openBytes(key, sealed []byte) ([]byte, error) {
	r, err := NewOpenReader(bytes.NewReader(sealed), key)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestStreamRoundTrip(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	const cs = 1024
	for _, n := range []int{0, 1, cs - 1, cs, cs + 1, 3 * cs, 3*cs + 7} {
		plain := make([]byte, n)
		rand.Read(plain)
		sealed := sealBytes(t, key, plain, cs)
		chunks := max(1, (n+cs-1)/cs)
		if want := streamHeaderSize + n + chunks*gcmTagSize; len(sealed) != want {
			t.Errorf("n=%d: sealed %d bytes, want %d", n, len(sealed), want)
		}
		got, err := openBytes(key, sealed)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("n=%d: round trip failed: %v", n, err)
		}
	}
}

func TestStreamRefusesTampering(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	const cs = 512
	plain := bytes.Repeat([]byte("results "), 3*cs/8) // exactly 3 chunks
	sealed := sealBytes(t, key, plain, cs)
	ct := cs + gcmTagSize
	other := bytes.Clone(key)
	other[0] ^= 1
	swapped := bytes.Clone(sealed)
	copy(swapped[streamHeaderSize:], sealed[streamHeaderSize+ct:streamHeaderSize+2*ct])
	copy(swapped[streamHeaderSize+ct:], sealed[streamHeaderSize:streamHeaderSize+ct])
	hdr := bytes.Clone(sealed)
	hdr[20] ^= 1 // salt
	cases := map[string]struct {
		key, data []byte
	}{
		"wrong key":                 {other, sealed},
		"truncated at chunk border": {key, sealed[:streamHeaderSize+2*ct]},
		"truncated mid chunk":       {key, sealed[:len(sealed)-5]},
		"extended":                  {key, append(bytes.Clone(sealed), sealed[streamHeaderSize:streamHeaderSize+ct]...)},
		"chunks swapped":            {key, swapped},
		"header changed":            {key, hdr},
		"bit flipped":               {key, func() []byte { b := bytes.Clone(sealed); b[len(b)-20] ^= 4; return b }()},
		"only header":               {key, sealed[:streamHeaderSize]},
	}
	for name, c := range cases {
		_, err := openBytes(c.key, c.data)
		if !errors.Is(err, ErrTampered) {
			t.Errorf("%s: err = %v, want ErrTampered", name, err)
		}
	}
	if _, err := openBytes(key, []byte("TYSTRM01")); !errors.Is(err, ErrMalformed) {
		t.Errorf("short header: %v", err)
	}
	if _, err := NewSealWriter(io.Discard, key[:16], 0); err == nil {
		t.Error("16-byte key accepted")
	}
	if _, err := NewSealWriter(io.Discard, key, 100); !errors.Is(err, ErrUnsupported) {
		t.Errorf("tiny chunk: %v", err)
	}
}

func TestParseStreamHeader(t *testing.T) {
	h := StreamHeader{Alg: streamAlgAES256GCM, ChunkSize: DefaultChunkSize}
	h.Salt[0], h.Commit[31] = 1, 2
	got, err := ParseStreamHeader(h.marshal())
	if err != nil || got != h {
		t.Fatalf("got %+v, %v", got, err)
	}
	for name, mut := range map[string]func([]byte){
		"magic": func(b []byte) { b[0] = 'X' },
		"alg":   func(b []byte) { b[8] = 9 },
		"chunk": func(b []byte) { b[9] = 0xff },
		"zero":  func(b []byte) { b[9], b[10], b[11], b[12] = 0, 0, 0, 0 },
	} {
		b := h.marshal()
		mut(b)
		if _, err := ParseStreamHeader(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
