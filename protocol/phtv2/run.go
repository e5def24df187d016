package phtv2

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/train"
)

// ErrDecryptedPush is returned by Run when a step's output holds plaintext
// (pre-run) and would go to a registry: the PHT protocol container only
// ever kept that image in the station's local engine.
var ErrDecryptedPush = errors.New("decrypted train image must not be written to a registry")

// Step is one protocol step on a stored image.
type Step func(ctx context.Context, img v1.Image, st Station, opts ...Option) (*Output, error)

// Run loads the image at in (registry ref, oci:DIR, docker tarball,
// docker-daemon:REF, or a plain REF the local Docker Engine holds, which is
// then used in place: train.ResolveLocal), runs step and saves the result
// to out (in when empty). On refusal nothing is
// written, so the stored image stays exactly as it was. Decrypted output
// (pre-run) is refused for a registry destination with ErrDecryptedPush,
// before anything is written. It returns the output config and the new
// image's digest.
func Run(ctx context.Context, step Step, in, out string, st Station, c *registry.Client, opts ...Option) (*train.Config, v1.Hash, error) {
	in = train.ResolveLocal(ctx, in)
	if out == "" {
		out = in
	}
	img, err := train.Load(ctx, in, c)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	res, err := step(ctx, img, st, opts...)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	defer res.Close()
	if kind, _ := train.ParseLocation(out); res.Decrypted && kind == "registry" {
		return nil, v1.Hash{}, fmt.Errorf("%w: %s (write it to the local engine docker-daemon:REF, oci:DIR or a tarball)", ErrDecryptedPush, out)
	}
	if err := train.Save(ctx, res.Image, out, c); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("save %s: %w", out, err)
	}
	d, err := res.Image.Digest()
	return res.Config, d, err
}
