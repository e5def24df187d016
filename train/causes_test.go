package train

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
)

// layersFail is an image whose layers cannot be listed (a registry outage
// while the manifest is fetched).
type layersFail struct {
	v1.Image
	err error
}

func (i layersFail) Layers() ([]v1.Layer, error) { return nil, i.err }

// Walk keeps the cause of a layer listing failure (%w), beside ErrLayout.
func TestWalkKeepsTheCause(t *testing.T) {
	cause := errors.New("registry down")
	err := Walk(context.Background(), layersFail{empty.Image, cause}, func(string, string, *tar.Header, io.Reader) error { return nil }, TrainDir)
	if !errors.Is(err, ErrLayout) || !errors.Is(err, cause) {
		t.Fatalf("Walk = %v, want ErrLayout and the cause", err)
	}
}
