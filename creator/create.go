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
	// Creator signs the train: the user id, its private key, and its view
	// of the trust directory (the route's station keys and the train's
	// approval). Required.
	Creator hardened.Party
	// Spec names the train (ID, Route, Exec; hardened.Create checks it).
	// Spec.Base is set from Base and Spec.Code from CodeDir.
	Spec hardened.Spec
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
	}{{"Creator.ID", o.Creator.ID == ""}, {"Creator.Key", o.Creator.Key == nil}, {"Creator.Trust", o.Creator.Trust == nil},
		{"CodeDir", o.CodeDir == ""}, {"Base", o.Base == nil}} {
		if f.unset {
			m = append(m, f.name)
		}
	}
	return m
}

// Create builds a trainyard/v1 train: the base image's layers, the exec
// config, and a state layer with the creator-signed envelope and the sealed
// code (wrapped to the route's stations, keys from o.Creator.Trust). The new train is
// verified as its first station will before it is returned.
func Create(ctx context.Context, o Options) (b *Built, err error) {
	if m := o.missing(); len(m) > 0 {
		return nil, fmt.Errorf("%w: %s not set", ErrOptions, strings.Join(m, ", "))
	}
	trust, spec, tmp := o.Creator.Trust, o.Spec, o.TempDir
	if tmp == "" {
		tmp = os.TempDir()
	}
	id, err := trainimage.BaseIDOf(o.Base)
	if err != nil {
		return nil, err
	}
	spec.Base, spec.Code = id, os.DirFS(o.CodeDir)
	// The sealed code stays in dir, behind the image's state layer, until
	// Release.
	dir, err := os.MkdirTemp(tmp, "create-")
	if err != nil {
		return nil, err
	}
	release := func() { os.RemoveAll(dir) }
	defer func() {
		if b == nil {
			release()
		}
	}()
	codePath := filepath.Join(dir, "code.sealed")
	f, err := os.OpenFile(codePath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	env, err := hardened.Create(ctx, o.Creator, spec, f)
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
	out, err := trainimage.WriteState(img, env, codePath, "")
	if err != nil {
		return nil, err
	}
	return &Built{Image: out, Envelope: env, Verified: v, Release: release}, nil
}

// OpenOption configures OpenResults.
type OpenOption func(*openOptions)

type openOptions struct {
	progress io.Writer
	tmp      string
}

// WithOpenProgress draws a download bar on w when it is a terminal.
func WithOpenProgress(w io.Writer) OpenOption { return func(o *openOptions) { o.progress = w } }

// WithOpenTempDir spools the sealed blobs under dir (default os.TempDir()).
func WithOpenTempDir(dir string) OpenOption { return func(o *openOptions) { o.tmp = dir } }

// OpenResults is the creator's last step: it verifies the finished train in
// img (every stop, from the first) against user's trust view and decrypts
// the final results into dir with user's key.
func OpenResults(ctx context.Context, user hardened.Party, img v1.Image, dir string, opts ...OpenOption) (*hardened.Verified, error) {
	var o openOptions
	for _, opt := range opts {
		opt(&o)
	}
	if user.Trust == nil {
		return nil, errors.New("creator: OpenResults needs the user's trust store")
	}
	sealed, _, err := trainimage.Read(ctx, img, o.tmp, func(env *hardened.Envelope) (*hardened.Verified, error) {
		return hardened.Verify(ctx, user.Trust, env)
	}, trainimage.WithProgress(o.progress))
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
	return hardened.OpenResults(ctx, user, hardened.Train{Envelope: sealed.Envelope, Results: f}, dir)
}
