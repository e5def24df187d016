package manifest

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

// EmptyLayer hands out copies: a caller that scribbles on its bytes does
// not change what the next caller (or a conversion) gets.
func TestEmptyLayerIsACopy(t *testing.T) {
	b := EmptyLayer()
	for i := range b {
		b[i] = 0
	}
	if got := digest.FromBytes(EmptyLayer()); got != EmptyLayerDigest {
		t.Fatalf("EmptyLayer changed by a caller: %s", got)
	}
}
