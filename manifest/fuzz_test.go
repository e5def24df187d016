package manifest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func addVectors(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(extraData(f))
	f.Add(sampleSchema1(f))
}

// errKnown: every failure must be one of the package's error kinds.
func errKnown(err error) bool {
	for _, k := range []error{ErrInvalid, ErrSignature, ErrTooLarge, ErrDigestMismatch, ErrUnsupported} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// FuzzParse: Parse never panics, fails only with typed errors, and what it
// accepts has a digest that is stable and, for non-schema1 kinds, is over
// the raw bytes.
func FuzzParse(f *testing.F) {
	addVectors(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Parse(raw)
		if err != nil {
			if !errKnown(err) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if !bytes.Equal(m.Raw(), raw) {
			t.Fatal("Raw differs from input")
		}
		if m.Kind() != KindSchema1 {
			if d, _ := Compute(SHA256, raw); d != m.Digest() {
				t.Fatal("digest is not over the raw bytes")
			}
		}
		_ = m.References()
		if s, ok := m.(*Schema1); ok {
			_, _ = s.Verify()
			_, _ = s.Layers()
			_, _ = s.RewriteInvalidImageIDs(nil)
		}
		// Re-parsing with the media type it reported must agree.
		if m2, err := Parse(raw, WithMediaType(m.MediaType())); err != nil || m2.Digest() != m.Digest() {
			t.Fatalf("reparse with %s: %v", m.MediaType(), err)
		}
	})
}

// FuzzSchema1Payload: the JWS container parser never panics and a payload
// it returns is within bounds.
func FuzzSchema1Payload(f *testing.F) {
	addVectors(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := Schema1Payload(raw)
		if err != nil {
			if !errKnown(err) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if len(p) > 2*len(raw)+16 && !bytes.Equal(p, raw) {
			// formatTail is bounded by the raw size since it sits inside it.
			t.Fatalf("payload of %d bytes from %d", len(p), len(raw))
		}
	})
}

// FuzzImageConfig: the config parser never panics.
func FuzzImageConfig(f *testing.F) {
	f.Add(readVector(f, "quay-schema2-simple.config.json"))
	f.Add(newTestImage(f, KindDockerV2).config)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if _, err := ParseImageConfig(raw, -1); err != nil && !errKnown(err) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
