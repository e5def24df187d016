package seal

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/registry"
)

// LegacyTarget is a Target that can also load a docker-save tar.
type LegacyTarget interface {
	Target
	// LoadDockerArchive loads every image of a docker-save tar; open gives a
	// fresh plaintext stream each time it is called.
	LoadDockerArchive(ctx context.Context, open func() (io.ReadCloser, error), names []string) error
}

// LegacyResult describes a loaded azaion-v1 archive.
type LegacyResult struct {
	// Images are the repo:tag names from the archive's manifest.json.
	Images []string
	// IDs maps each name to its image ID (config digest).
	IDs map[string]string
}

// UnsealLegacy decrypts an azaion-v1 archive and loads it into t. The format
// has no MAC, so a first streaming pass checks what can be checked: the
// PKCS#7 padding, the tar structure, manifest.json, every file named by a
// digest against that digest, and every layer against the diff_ids of its
// image config (whose digest is the image ID, which --expect can pin). Only
// then does a second pass load. Expect digests are compared with image IDs.
//
// The second pass is one streaming read in tar order: registry and OCI
// layout targets get each config and layer as it comes (checked again
// against the digest the first pass found, so a file changed between the
// passes is refused), with its bytes and compression as they are in the
// archive; manifests and tags (index.json) are written last, only once the
// stream has ended with valid padding. A Docker engine gets the plaintext
// tar itself.
func UnsealLegacy(ctx context.Context, path string, fragment []byte, t LegacyTarget, opts ...UnsealOption) (*LegacyResult, error) {
	cfg := unsealConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	// One bar per pass on a terminal, over the archive's bytes (the
	// plaintext is as long as the ciphertext, less CBC padding).
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	openPass := func(pass string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) {
			rc, err := openLegacy(path, fragment)
			if err != nil {
				return nil, err
			}
			bar := registry.NewBar(cfg.progress, size, "unseal "+pass+" "+filepath.Base(path))
			return &barReadCloser{Reader: bar.Reader(rc), rc: rc, bar: bar}, nil
		}
	}
	open := openPass("load")
	res, plan, err := verifyLegacy(ctx, openPass("verify"))
	if err != nil {
		return nil, err
	}
	for _, e := range cfg.expect {
		id, ok := res.IDs[e.Name]
		if !ok {
			return nil, fmt.Errorf("%w: %s is not in the azaion-v1 archive", ErrExpectation, e)
		}
		if e.Digest != "" && e.Digest != id {
			return nil, fmt.Errorf("%w: %s: archive image ID is %s", ErrExpectation, e, id)
		}
	}
	switch t.(type) {
	case *RegistryTarget, *LayoutTarget:
		err = loadLegacy(ctx, open, plan, t)
	default:
		err = t.LoadDockerArchive(ctx, open, res.Images)
	}
	if err != nil {
		return nil, fmt.Errorf("loading images: %w", err)
	}
	// The same check as Unseal's: a target that fails to answer is an
	// error of its own, not a missing image.
	if err := postcheck(ctx, t, plan.inv.Images, cfg.expect); err != nil {
		return nil, err
	}
	return res, nil
}

// legacyPlan is what the verification pass of an azaion-v1 archive learned
// for loading it in one more pass: an image for each RepoTag, and the blob
// each tar entry holds.
type legacyPlan struct {
	inv   *Inventory
	files map[string]v1.Descriptor // clean tar name -> config or layer blob
}

// loadLegacy is the load pass: one read of the plaintext in tar order, each
// config and layer handed to t as a blob (verified against the first pass's
// digest while it streams), then Commit once the whole stream has been read
// and its padding checked.
func loadLegacy(ctx context.Context, open func() (io.ReadCloser, error), plan *legacyPlan, t Target) error {
	if err := t.Prepare(ctx, plan.inv); err != nil {
		return fmt.Errorf("preparing target: %w", err)
	}
	if err := streamLegacy(ctx, open, plan, t); err != nil {
		t.Abort(ctx)
		return err
	}
	if err := t.Commit(ctx); err != nil {
		t.Abort(ctx)
		return err
	}
	return nil
}

func streamLegacy(ctx context.Context, open func() (io.ReadCloser, error), plan *legacyPlan, t Target) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	done := map[v1.Hash]bool{}
	tr := tar.NewReader(rc)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return legacyErr("reading tar", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		d, ok := plan.files[filepath.ToSlash(filepath.Clean(hdr.Name))]
		if !ok || done[d.Digest] {
			continue // a file no image needs, or the same blob under a second name
		}
		if hdr.Size != d.Size {
			return fmt.Errorf("%w: azaion-v1 %s changed between passes", ErrTampered, hdr.Name)
		}
		if err := verifyStream(tr, d.Digest, d.Size, func(r io.Reader) error { return t.WriteBlob(ctx, d, r) }); err != nil {
			if errors.Is(err, ErrTampered) {
				return fmt.Errorf("azaion-v1 %s changed between passes: %w", hdr.Name, err)
			}
			return err
		}
		done[d.Digest] = true
	}
	if _, err := io.Copy(io.Discard, rc); err != nil { // padding check at the very end
		return legacyErr("reading archive", err)
	}
	for h := range plan.inv.Blobs {
		if !plan.inv.IsManifest(h) && !done[h] {
			return fmt.Errorf("%w: azaion-v1 blob %s missing in the load pass", ErrTampered, h)
		}
	}
	return nil
}

// LoadDockerArchive implements LegacyTarget: a verification pass over the
// docker-save tar, then one load pass in tar order (see UnsealLegacy, which
// calls the load pass directly after its own verification).
func (t *RegistryTarget) LoadDockerArchive(ctx context.Context, open func() (io.ReadCloser, error), _ []string) error {
	return verifyAndLoadLegacy(ctx, open, t)
}

// LoadDockerArchive implements LegacyTarget, like RegistryTarget's.
func (t *LayoutTarget) LoadDockerArchive(ctx context.Context, open func() (io.ReadCloser, error), _ []string) error {
	return verifyAndLoadLegacy(ctx, open, t)
}

func verifyAndLoadLegacy(ctx context.Context, open func() (io.ReadCloser, error), t Target) error {
	_, plan, err := verifyLegacy(ctx, open)
	if err != nil {
		return err
	}
	return loadLegacy(ctx, open, plan, t)
}

// LoadDockerArchive implements LegacyTarget: the plaintext goes straight
// into the engine's load request.
func (t *DockerTarget) LoadDockerArchive(ctx context.Context, open func() (io.ReadCloser, error), _ []string) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return dockerLoad(ctx, t.api, rc)
}

// barReadCloser finishes its bar when the pass closes its stream.
type barReadCloser struct {
	io.Reader
	rc  io.Closer
	bar *registry.Bar
}

func (b *barReadCloser) Close() error {
	b.bar.Finish()
	return b.rc.Close()
}
