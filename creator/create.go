package creator

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/trainimage"
)

// ApprovalDigest is what approvers sign for a train: its code tree, exec
// config and base image (see hardened.ApprovalDigest).
func ApprovalDigest(ctx context.Context, codeDir string, exec hardened.ExecConfig, base v1.Image) (string, error) {
	id, err := trainimage.BaseIDOf(base)
	if err != nil {
		return "", err
	}
	return hardened.ApprovalDigestFS(ctx, os.DirFS(codeDir), exec, id)
}

// Built is a newly created train image. Release removes the temp files that
// back its layers; call it after the image has been pushed or saved.
type Built struct {
	Image    v1.Image
	Envelope *hardened.Envelope
	Verified *hardened.Verified // the envelope as a station will check it
	Release  func()
}

// Create builds a trainyard/v1 train: the base image's layers, the exec
// config, and a state layer with the creator-signed envelope and the sealed
// code (wrapped to the route's stations, keys from trust). spec.Base is set
// from the base image.
func Create(ctx context.Context, trust hardened.TrustStore, spec hardened.Spec, creator *hardened.PrivateKey, codeDir string, base v1.Image, tmp string) (*Built, error) {
	id, err := trainimage.BaseIDOf(base)
	if err != nil {
		return nil, err
	}
	spec.Base = id
	dir, err := os.MkdirTemp(tmp, "create-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	codePath := filepath.Join(dir, "code.sealed")
	f, err := os.OpenFile(codePath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	env, err := hardened.Create(ctx, trust, spec, creator, os.DirFS(codeDir), f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	// Check the new train as its first station will, before it leaves.
	v, err := hardened.Verify(ctx, trust, env)
	if err != nil {
		return nil, err
	}
	img, err := trainimage.WithHistory(base)
	if err == nil {
		img, err = trainimage.WithExec(img, spec.Exec)
	}
	if err != nil {
		return nil, err
	}
	// The state layer copies the sealed code into its own temp file, so the
	// create dir can go.
	out, release, err := trainimage.WriteState(img, tmp, env, codePath, "")
	if err != nil {
		return nil, err
	}
	return &Built{Image: out, Envelope: env, Verified: v, Release: release}, nil
}

// OpenOption configures OpenResults.
type OpenOption func(*openOptions)

type openOptions struct{ progress io.Writer }

// WithOpenProgress draws a download bar on w when it is a terminal.
func WithOpenProgress(w io.Writer) OpenOption { return func(o *openOptions) { o.progress = w } }

// OpenResults is the creator's last step: it verifies the finished train in
// img (every stop, from the first) and decrypts the final results into dir.
func OpenResults(ctx context.Context, trust hardened.TrustStore, userID string, key *hardened.PrivateKey, img v1.Image, dir, tmp string, opts ...OpenOption) (*hardened.Verified, error) {
	var o openOptions
	for _, opt := range opts {
		opt(&o)
	}
	sealed, _, err := trainimage.Read(ctx, img, tmp, o.progress, func(env *hardened.Envelope) (*hardened.Verified, error) {
		return hardened.Verify(ctx, trust, env)
	})
	if err != nil {
		return nil, err
	}
	defer sealed.Close()
	if sealed.Results == "" {
		return nil, fmt.Errorf("%w: the train carries no results yet", trainimage.ErrImage)
	}
	f, err := os.Open(sealed.Results)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hardened.OpenResults(ctx, trust, userID, key, sealed.Envelope, f, dir)
}
