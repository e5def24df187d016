// Package registry is trainyard's window on OCI registries: a client on
// go-containerregistry (Docker config and credential-helper auth, plain HTTP
// for local registries, progress on a terminal) and the embedded registry
// server on distribution/v3.
package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Client holds the settings shared by every registry call. The zero value is
// usable: anonymous or Docker-config auth, HTTPS except for localhost.
type Client struct {
	insecure  bool
	keychain  authn.Keychain
	progress  io.Writer
	transport http.RoundTripper
	timeouts  *Timeouts

	once sync.Once
	rt   http.RoundTripper // built once so connections are reused across calls
}

// Option configures a Client.
type Option func(*Client)

// WithInsecure allows plain HTTP (and unverified TLS) for every registry, not
// only the loopback ones go-containerregistry already treats that way.
func WithInsecure(b bool) Option { return func(c *Client) { c.insecure = b } }

// WithKeychain replaces the default keychain (Docker config + credential helpers).
func WithKeychain(k authn.Keychain) Option { return func(c *Client) { c.keychain = k } }

// WithProgress draws a progress bar on w for uploads when w is a terminal.
func WithProgress(w io.Writer) Option { return func(c *Client) { c.progress = w } }

// WithTransport sets the HTTP transport (tests, proxies, custom TLS). Stall
// detection is still added on top; its dial/TLS/header timeouts are its own.
func WithTransport(t http.RoundTripper) Option { return func(c *Client) { c.transport = t } }

// WithTimeouts sets the network timeouts (default: TimeoutsFromEnv).
func WithTimeouts(t Timeouts) Option { return func(c *Client) { c.timeouts = &t } }

// NewClient returns a client with the given options.
func NewClient(opts ...Option) *Client {
	c := &Client{keychain: authn.DefaultKeychain}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Insecure reports whether plain HTTP is allowed for every registry.
func (c *Client) Insecure() bool { return c.insecure }

// ParseReference parses a tag or digest reference with the client's settings.
func (c *Client) ParseReference(ref string) (name.Reference, error) {
	var nopts []name.Option
	if c.insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return r, nil
}

// ParseRepository parses a repository name (no tag) with the client's settings.
func (c *Client) ParseRepository(repo string) (name.Repository, error) {
	var nopts []name.Option
	if c.insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRepository(repo, nopts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("invalid repository %q: %w", repo, err)
	}
	return r, nil
}

// RemoteOptions returns the go-containerregistry options for one call.
func (c *Client) RemoteOptions(ctx context.Context) []remote.Option {
	kc := c.keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(c.Transport())}
}

// Transport is the client's HTTP transport: every dial, TLS handshake,
// header wait and body transfer bounded by the client's Timeouts. Code that
// talks HTTP to a registry outside go-containerregistry should use it too.
func (c *Client) Transport() http.RoundTripper {
	c.once.Do(func() {
		var t Timeouts
		if c.timeouts != nil {
			t = *c.timeouts
		} else if et, err := TimeoutsFromEnv(); err != nil {
			c.rt = errTransport{err: err}
			return
		} else {
			t = et
		}
		if c.transport != nil {
			c.rt = WrapTransport(c.transport, t)
			return
		}
		c.rt = NewTransport(c.insecure, t)
	})
	return c.rt
}

// HTTPClient is an http.Client over Transport.
func (c *Client) HTTPClient() *http.Client { return &http.Client{Transport: c.Transport()} }

// Push writes an image to ref, showing progress on a terminal.
func (c *Client) Push(ctx context.Context, img v1.Image, ref string) (v1.Hash, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	opts := c.RemoteOptions(ctx)
	done := c.startProgress(&opts, "push "+ref)
	err = remote.Write(r, img, opts...)
	done()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return img.Digest()
}

// PushIndex writes an image index (manifest list) to ref.
func (c *Client) PushIndex(ctx context.Context, idx v1.ImageIndex, ref string) (v1.Hash, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.WriteIndex(r, idx, c.RemoteOptions(ctx)...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return idx.Digest()
}

// Pull returns a lazily fetched image; layers stream when read.
func (c *Client) Pull(ctx context.Context, ref string) (v1.Image, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, nil
}

// Get fetches the manifest descriptor (and raw manifest) of ref.
func (c *Client) Get(ctx context.Context, ref string) (*remote.Descriptor, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	d, err := remote.Get(r, c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", ref, err)
	}
	return d, nil
}

// Tag points tag at the manifest that ref names.
func (c *Client) Tag(ctx context.Context, ref, tag string) error {
	r, err := c.ParseReference(ref)
	if err != nil {
		return err
	}
	d, err := remote.Get(r, c.RemoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("get %s: %w", ref, err)
	}
	t := r.Context().Tag(tag)
	if err := remote.Tag(t, d, c.RemoteOptions(ctx)...); err != nil {
		return fmt.Errorf("tag %s: %w", t, err)
	}
	return nil
}

// ListTags lists the tags of a repository.
func (c *Client) ListTags(ctx context.Context, repo string) ([]string, error) {
	r, err := c.ParseRepository(repo)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(r, c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", repo, err)
	}
	return tags, nil
}
