package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/trainyard/trainyard/errdefs"
)

// ErrExists means a tag already names other content: replacing it would
// lose what another run, another admin or another train put there.
var ErrExists = errdefs.New("tag already holds other content", errdefs.ErrExists)

// PushIfAbsent pushes img to ref unless ref's tag already names a different
// manifest. Pushing the same image again succeeds without writing (so a
// retried push is idempotent). The check is a HEAD before the write: two
// writers racing inside that window can still both write, which only a
// registry with conditional tag updates could prevent.
func (c *Client) PushIfAbsent(ctx context.Context, img v1.Image, ref string) (v1.Hash, error) {
	want, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	have, err := c.Head(ctx, ref)
	switch {
	case err == nil && have == want:
		return want, nil
	case err == nil:
		return v1.Hash{}, fmt.Errorf("push %s: %w (%s, not %s)", ref, ErrExists, have, want)
	case !errors.Is(err, ErrNotFound):
		return v1.Hash{}, err
	}
	return c.Push(ctx, img, ref)
}

// ErrNotFound means the registry has no manifest under the reference.
var ErrNotFound = errdefs.New("manifest not found", errdefs.ErrNotFound)

// Head returns the digest ref names, or an error matching ErrNotFound.
func (c *Client) Head(ctx context.Context, ref string) (v1.Hash, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	d, err := remote.Head(r, c.RemoteOptions(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return v1.Hash{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
		}
		return v1.Hash{}, fmt.Errorf("head %s: %w", ref, err)
	}
	if dr, ok := r.(name.Digest); ok && dr.DigestStr() != d.Digest.String() {
		return v1.Hash{}, fmt.Errorf("head %s: registry answered %s", ref, d.Digest)
	}
	return d.Digest, nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}
