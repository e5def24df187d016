package creator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

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

// ErrOptions reports Options that Create cannot build a train from.
var ErrOptions = errors.New("creator: incomplete options")

// Options is what Create builds a train from.
type Options struct {
	// Trust is the creator's view of the trust directory: the route's
	// station keys and the train's approval (required).
	Trust hardened.TrustStore
	// Spec names the train (ID, Creator, Route, Exec; hardened.Create checks
	// it). Spec.Base is set from Base.
	Spec hardened.Spec
	// Key is Spec.Creator's private key, which signs the train (required).
	Key *hardened.PrivateKey
	// CodeDir is the train's code tree, sealed into the image (required).
	CodeDir string
	// Base is the image the train runs on (required; train.ScratchImage()
	// for none). It is part of what approvers sign.
	Base v1.Image
	// TempDir holds the temp files behind the image's state layer until
	// Built.Release; default os.TempDir().
	TempDir string
}

// missing names the required fields o leaves unset.
func (o Options) missing() []string {
	var m []string
	for _, f := range []struct {
		name  string
		unset bool
	}{{"Trust", o.Trust == nil}, {"Key", o.Key == nil}, {"CodeDir", o.CodeDir == ""}, {"Base", o.Base == nil}} {
		if f.unset {
			m = append(m, f.name)
		}
	}
	return m
}

// Create builds a trainyard/v1 train: the base image's layers, the exec
// config, and a state layer with the creator-signed envelope and the sealed
// code (wrapped to the route's stations, keys from o.Trust). The new train is
// verified as its first station will before it is returned.
func Create(ctx context.Context, o Options) (*Built, error) {
	if m := o.missing(); len(m) > 0 {
		return nil, fmt.Errorf("%w: %s not set", ErrOptions, strings.Join(m, ", "))
	}
	trust, spec, tmp := o.Trust, o.Spec, o.TempDir
	if tmp == "" {
		tmp = os.TempDir()
	}
	id, err := trainimage.BaseIDOf(o.Base)
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
	env, err := hardened.Create(ctx, trust, spec, o.Key, os.DirFS(o.CodeDir), f)
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
	img, err := trainimage.WithHistory(o.Base)
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
