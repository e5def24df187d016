package trainrun

import (
	"compress/gzip"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// uncompressedFromCompressed gives a verifiedLayer the Uncompressed it
// refuses by design (a station reads layers compressed only), so ggcr's
// check covers the rest: Digest, DiffID and Size agree with what
// Compressed streams through the verification.
type uncompressedFromCompressed struct{ verifiedLayer }

func (l uncompressedFromCompressed) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, rc}, nil
}

func TestVerifiedLayerValidates(t *testing.T) {
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	vimg, err := verifyingImage(img)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := vimg.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		if err := validate.Layer(uncompressedFromCompressed{l.(verifiedLayer)}); err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
	}
	if _, err := layers[0].Uncompressed(); err == nil {
		t.Error("a verified layer read uncompressed")
	}
	var _ v1.Layer = verifiedLayer{}
}
