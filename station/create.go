package station

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/trainyard/trainyard/protocol/hardened"
)

// BaseIDOf returns the BaseID of a base image: all of its layers.
func BaseIDOf(base v1.Image) (string, error) {
	cf, err := base.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("base image config: %w", err)
	}
	return BaseID(cf.RootFS.DiffIDs), nil
}

// ApprovalDigest is what approvers sign for a train: its code tree, exec
// config and base image (see hardened.ApprovalDigest).
func ApprovalDigest(ctx context.Context, codeDir string, exec hardened.ExecConfig, base v1.Image) (string, error) {
	id, err := BaseIDOf(base)
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
	id, err := BaseIDOf(base)
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
	img, err := withHistory(base)
	if err == nil {
		img, err = withExec(img, spec.Exec)
	}
	if err != nil {
		return nil, err
	}
	// The state layer copies the sealed code into its own temp file, so the
	// create dir can go.
	out, release, err := writeState(img, tmp, env, codePath, "")
	if err != nil {
		return nil, err
	}
	return &Built{Image: out, Envelope: env, Verified: v, Release: release}, nil
}

// withHistory gives every layer of img a history entry when the image has
// none (images built by tools that skip history), so the state layer can be
// told apart from base layers later. Diff ids, and so the BaseID, stay.
func withHistory(img v1.Image) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	n := 0
	for _, h := range cf.History {
		if !h.EmptyLayer {
			n++
		}
	}
	if n == len(cf.RootFS.DiffIDs) {
		return img, nil
	}
	c := cf.DeepCopy()
	c.History = nil
	for range cf.RootFS.DiffIDs {
		c.History = append(c.History, v1.History{CreatedBy: "trainyard: base layer"})
	}
	return mutate.ConfigFile(img, c)
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
	sealed, _, err := readTrain(ctx, img, tmp, o.progress, func(env *hardened.Envelope) (*hardened.Verified, error) {
		return hardened.Verify(ctx, trust, env)
	})
	if err != nil {
		return nil, err
	}
	defer sealed.Close()
	if sealed.results == "" {
		return nil, fmt.Errorf("%w: the train carries no results yet", ErrImage)
	}
	f, err := os.Open(sealed.results)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hardened.OpenResults(ctx, trust, userID, key, sealed.env, f, dir)
}
