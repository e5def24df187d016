package train

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func writeLayer(t *testing.T, mt types.MediaType) *FileLayer {
	t.Helper()
	w, err := NewLayerWriter(t.TempDir(), mt)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Dir("opt/pht_results", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.csv", "b.csv"} {
		c := strings.Repeat(n, 5000)
		if err := w.File(ResultsDir+"/"+n, 0o644, int64(len(c)), strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
	}
	l, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Remove() })
	return l
}

// FileLayer's digests, size and streams agree (ggcr's own layer check).
// validate.Layer reads Compressed as gzip, so a plain-tar layer is checked
// by hand: its stored bytes are its tar, digest and diff id are one.
func TestFileLayerValidates(t *testing.T) {
	if err := validate.Layer(writeLayer(t, types.DockerLayer)); err != nil {
		t.Errorf("gzip layer: %v", err)
	}
	l := writeLayer(t, types.OCIUncompressedLayer)
	d, _ := l.Digest()
	id, _ := l.DiffID()
	size, _ := l.Size()
	c, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := io.ReadAll(c)
	c.Close()
	u, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	ub, _ := io.ReadAll(u)
	u.Close()
	if d != id || !bytes.Equal(cb, ub) || int64(len(cb)) != size {
		t.Errorf("plain layer: digest %s diff id %s size %d, %d stored bytes, same streams %v", d, id, size, len(cb), bytes.Equal(cb, ub))
	}
}
