package ocistore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// checkLayer is go-containerregistry's layer check (validate.Layer) for a
// blob that is not a tar: validate.Layer reads Compressed as gzip, so the
// same promises are checked by hand: the digest and the size describe the
// stored bytes, and the two streams are the same bytes (digest = diff id).
func checkLayer(t *testing.T, name string, l v1.Layer) {
	t.Helper()
	read := func(open func() (io.ReadCloser, error)) []byte {
		rc, err := open()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return b
	}
	c, u := read(l.Compressed), read(l.Uncompressed)
	d, _ := l.Digest()
	id, _ := l.DiffID()
	size, _ := l.Size()
	sum := sha256.Sum256(c)
	if got := (v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}); got != d || d != id || int64(len(c)) != size || !bytes.Equal(c, u) {
		t.Errorf("%s: digest %s (bytes hash to %s), diff id %s, size %d for %d bytes, same streams %v", name, d, got, id, size, len(c), bytes.Equal(c, u))
	}
	if _, err := l.MediaType(); err != nil {
		t.Errorf("%s: media type: %v", name, err)
	}
}

func TestCustomLayersValidate(t *testing.T) {
	checkLayer(t, "bytesLayer", bytesLayer{data: []byte(`{"signed":{}}`), mt: MetadataMediaType})
	checkLayer(t, "empty bytesLayer", bytesLayer{data: nil, mt: EmptyMediaType})
	data := bytes.Repeat([]byte("target "), 1000)
	p := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	checkLayer(t, "fileLayer", fileLayer{path: p, size: int64(len(data)), hash: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}})
}
