package phtv2

import (
	"bytes"
	"context"
	"crypto/rsa"
	"fmt"
	"io"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/train"
)

// DecryptResults is the creator's side (the desktop app): unwrap
// creator.encrypted_key with the creator's key, decrypt every result file
// into dir (created if needed; names can never escape it), and check the
// results hash against config.result_hash and the last station's result
// signature. It returns the config.
func DecryptResults(ctx context.Context, img v1.Image, creatorKey *rsa.PrivateKey, dir string, opts ...Option) (*train.Config, error) {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	state, err := train.ReadState(ctx, img, o.tmpDir)
	if err != nil {
		return nil, err
	}
	defer state.Close()
	if state.Config == nil {
		return nil, fmt.Errorf("%w: /%s is missing from the image", train.ErrConfig, train.ConfigPath)
	}
	cfg, err := train.ParseConfig(state.Config)
	if err != nil {
		return nil, err
	}
	if cfg.Creator.EncryptedKey == nil || cfg.ResultHash == nil {
		return nil, fmt.Errorf("%w: the train carries no results for the creator yet", ErrStation)
	}
	wrapped, _ := cfg.Creator.EncryptedKey.Bytes()
	key, err := UnwrapKey(creatorKey, wrapped)
	if err != nil {
		return nil, fmt.Errorf("creator: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	sid, _ := cfg.SessionID.Bytes()
	rh := NewResultHasher(sid)
	for _, e := range state.Results.Entries {
		if e.Name == "" {
			continue
		}
		switch {
		case e.Type == '5':
			if err := root.MkdirAll(e.Name, 0o700); err != nil {
				return nil, err
			}
		case e.IsRegular():
			if d := path.Dir(e.Name); d != "." {
				if err := root.MkdirAll(d, 0o700); err != nil {
					return nil, err
				}
			}
			if err := decryptTo(root, state.Results, e, key, rh); err != nil {
				return nil, fmt.Errorf("result file %s: %w", e.Name, err)
			}
		}
		// Symlinks and other entries are not written out: a result tree
		// must not plant links on the creator's disk.
	}
	got := rh.Sum()
	want, _ := cfg.ResultHash.Bytes()
	if !bytes.Equal(got, want) {
		return nil, fmt.Errorf("%w: results hash differs from config.result_hash", ErrTampered)
	}
	// The result signature belongs to the last stop that signed the chain.
	var last *train.RouteEntry
	for i := range cfg.Route {
		if r := &cfg.Route[i]; r.Signature != nil && (last == nil || r.Index > last.Index) {
			last = r
		}
	}
	if last == nil {
		return nil, fmt.Errorf("%w: results without any station signature", ErrSignature)
	}
	pub, err := ParsePublicKey(last.RSAPublicKey)
	if err != nil {
		return nil, err
	}
	sig, _ := cfg.ResultSignature.Bytes()
	if err := VerifyPSS(pub, got, sig); err != nil {
		return nil, fmt.Errorf("%w: result signature of stop %d does not verify", ErrSignature, last.Index)
	}
	return cfg, nil
}

func decryptTo(root *os.Root, t *train.Tree, e *train.Entry, key []byte, h io.Writer) error {
	src, err := t.Open(e)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := root.OpenFile(e.Name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = rawCBCDecrypt(io.MultiWriter(f, h), src, key)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
