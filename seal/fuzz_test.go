package seal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
)

// FuzzReadHeader: any input is refused with a sentinel error or parsed into
// a header that validates and re-encodes.
func FuzzReadHeader(f *testing.F) {
	fx := sealFixture(f)
	orig, err := os.ReadFile(fx.path)
	if err != nil {
		f.Fatal(err)
	}
	_, raw, err := ReadHeader(bytes.NewReader(orig))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(raw[:20])
	f.Add([]byte("TYSEAL\x00\x01\x00\x00\x00\x02{}"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, got, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		if err := h.validate(); err != nil {
			t.Fatalf("accepted header does not validate: %v", err)
		}
		if !bytes.Equal(got, b[:len(got)]) {
			t.Fatal("raw header bytes differ from input")
		}
	})
}

// FuzzChunkReader: arbitrary bodies under a fixed key never panic, and
// everything that is not the genuine stream is refused with ErrTampered.
func FuzzChunkReader(f *testing.F) {
	key := bytes.Repeat([]byte{3}, 32)
	prefix := []byte{9, 9, 9, 9}
	var hh [32]byte
	var genuine bytes.Buffer
	w, _ := newChunkWriter(&genuine, key, prefix, hh, minChunkSize)
	payload := bytes.Repeat([]byte("trainyard"), 300)
	_, _ = w.Write(payload)
	_ = w.Close()
	f.Add(genuine.Bytes())
	f.Add(genuine.Bytes()[:minChunkSize+tagSize])
	f.Add([]byte{})
	f.Add(make([]byte, 17))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := newChunkReader(bytes.NewReader(b), key, prefix, hh, minChunkSize)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if bytes.Equal(b, genuine.Bytes()) {
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("genuine stream: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("forged stream of %d bytes accepted", len(b))
		}
		if !errors.Is(err, ErrTampered) {
			t.Fatalf("error without sentinel: %v", err)
		}
	})
}

// FuzzScanLayout: the tar walker over authenticated plaintext refuses any
// malformed layout with a sentinel error and never panics.
func FuzzScanLayout(f *testing.F) {
	fx := sealFixture(f)
	h, err := Inspect(fx.path)
	if err != nil {
		f.Fatal(err)
	}
	rc, err := decryptForTest(fx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rc)
	f.Add(rc[:1024])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := scanLayout(context.Background(), bytes.NewReader(b), h, nil, nil)
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTampered) {
			t.Fatalf("error without sentinel: %v", err)
		}
	})
}

// FuzzLegacyCBC: the azaion-v1 decryptor never panics on any input.
func FuzzLegacyCBC(f *testing.F) {
	f.Add([]byte{}, []byte("k"))
	f.Add(make([]byte, 48), []byte("fragment"))
	f.Fuzz(func(t *testing.T, b, frag []byte) {
		r, err := newCBCReader(bytes.NewReader(b), legacyKey(frag))
		if err != nil {
			return
		}
		_, _ = io.ReadAll(r)
	})
}

func decryptForTest(fx *sealedFixture) ([]byte, error) {
	orig, err := os.ReadFile(fx.path)
	if err != nil {
		return nil, err
	}
	br := bytes.NewReader(orig)
	h, raw, err := ReadHeader(br)
	if err != nil {
		return nil, err
	}
	key, err := openKeys(h, fx.keys.DeviceKey, fx.keys.Fragment)
	if err != nil {
		return nil, err
	}
	cr, err := newChunkReader(br, key, h.NoncePrefix, headerHash(raw), h.ChunkSize)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(cr)
}

// FuzzParseExpect: expectations parse or fail cleanly, and a parsed one has
// a canonical name with a tag.
func FuzzParseExpect(f *testing.F) {
	f.Add("azaion/annotations:1.2@sha256:"+string(bytes.Repeat([]byte("a"), 64)), "")
	f.Add("azaion/annotations", "1.2")
	f.Add("busybox", "")
	f.Add("a:b:c@@", "x")
	f.Fuzz(func(t *testing.T, s, v string) {
		e, err := ParseExpect(s, v)
		if err != nil {
			return
		}
		if !hasTag(e.Name) || canonicalName(e.Name) != e.Name {
			t.Fatalf("%q,%q gave non-canonical %q", s, v, e.Name)
		}
	})
}
