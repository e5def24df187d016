package demo

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// registryRoundTrip pushes an image and reads it back by digest.
func registryRoundTrip(ctx context.Context, e *env) error {
	img, err := random.Image(1<<16, 2)
	if err != nil {
		return err
	}
	ref := e.host + "/demo/hello:v1"
	dgst, err := e.client.Push(ctx, img, ref)
	if err != nil {
		return err
	}
	e.say("pushed %s as %s", ref, dgst)
	desc, err := e.client.Get(ctx, e.host+"/demo/hello@"+dgst.String())
	if err != nil {
		return err
	}
	if desc.Digest != dgst {
		return fmt.Errorf("registry returned %s for %s", desc.Digest, dgst)
	}
	e.say("pulled it back by digest: %s, %d bytes of manifest, media type %s", desc.Digest, desc.Size, desc.MediaType)
	return nil
}
