// Package trainimage is the trainyard/v1 train image: base layers, the
// signed exec config and one state layer holding the creator-signed envelope
// and the sealed code and results. It reads a train bounded and verified
// while it streams (Read, PeekEnvelope) and writes the state layer
// (WriteState, with the sealed blobs read in place); stations and creators
// share it.
package trainimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/internal/pipe"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/train"
)

// The state layer of a trainyard/v1 train holds the envelope at
// hardened.ConfigPath (the PHT config's place, so tools that look for
// /opt/train_config.json find the train's signed description) and the
// sealed blobs at hardened.CodeBlobPath and hardened.ResultsBlobPath.
const (
	CodeBlob    = hardened.CodeBlobPath
	ResultsBlob = hardened.ResultsBlobPath
)

// ErrImage is wrapped when a train image does not have the trainyard/v1
// layout (missing envelope, stray files, unlabelled layers).
var ErrImage = errors.New("not a trainyard/v1 train image")

// BaseID identifies the base filesystem a train's code sits on: a digest
// over the diff ids of every layer below the state layer, in order. The
// creator signs it (Statement.Base) and approvers approve it, so a station
// runs exactly the approved base; "scratch" is the empty base.
func BaseID(diffIDs []v1.Hash) string {
	if len(diffIDs) == 0 {
		return "scratch"
	}
	h := sha256.New()
	io.WriteString(h, "trainyard/v1 base\n")
	for _, d := range diffIDs {
		io.WriteString(h, d.String()+"\n")
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// BaseLayers returns the layers of img below its state layer, with their
// diff ids. It needs a history that names every layer: otherwise the state
// layer cannot be told apart and the image is refused.
func BaseLayers(img v1.Image) ([]v1.Layer, []v1.Hash, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: image config: %w", ErrImage, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: layers: %w", ErrImage, err)
	}
	var hist []v1.History
	for _, h := range cf.History {
		if !h.EmptyLayer {
			hist = append(hist, h)
		}
	}
	if len(hist) != len(layers) || len(cf.RootFS.DiffIDs) != len(layers) {
		return nil, nil, fmt.Errorf("%w: history names %d layers, image has %d", ErrImage, len(hist), len(layers))
	}
	var keep []v1.Layer
	var ids []v1.Hash
	for i, l := range layers {
		if !train.IsStateLayer(hist[i]) {
			keep = append(keep, l)
			ids = append(ids, cf.RootFS.DiffIDs[i])
		}
	}
	return keep, ids, nil
}

// ExecOf returns the exec part of an image config.
func ExecOf(cf *v1.ConfigFile) hardened.ExecConfig {
	return hardened.ExecConfig{Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Env: cf.Config.Env,
		WorkingDir: cf.Config.WorkingDir, User: cf.Config.User}
}

// WithExec sets the image config's exec part to e.
func WithExec(img v1.Image, e hardened.ExecConfig) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	c := cf.Config
	c.Entrypoint, c.Cmd, c.Env, c.WorkingDir, c.User = e.Entrypoint, e.Cmd, e.Env, e.WorkingDir, e.User
	return mutate.Config(img, c)
}

// Sealed is a train read from an image: the envelope and the sealed
// blobs spooled to private temp files.
type Sealed struct {
	Envelope *hardened.Envelope
	Code     string // path of the sealed code blob
	Results  string // path of the sealed results, "" at the first stop
	dir      string
}

// Close removes the spooled blobs.
func (s *Sealed) Close() error { return os.RemoveAll(s.dir) }

// DropResults removes the spooled results blob, once pre-run has read it
// (Close still removes the rest). Freed early, its pages serve the writes
// of the run and of post-run that follow instead of new memory.
func (s *Sealed) DropResults() error {
	if s.Results == "" {
		return nil
	}
	err := os.Remove(s.Results)
	s.Results = ""
	return err
}

// Open returns the hardened.Train view; the caller closes the files.
func (s *Sealed) Open() (hardened.Train, func(), error) {
	code, err := os.Open(s.Code)
	if err != nil {
		return hardened.Train{}, nil, err
	}
	// The blobs were checked against their signed digests while they were
	// spooled into these private files: pre-run need not hash them again.
	t := hardened.Train{Envelope: s.Envelope, Code: code, BlobsVerified: true}
	closers := []io.Closer{code}
	if s.Results != "" {
		r, err := os.Open(s.Results)
		if err != nil {
			code.Close()
			return hardened.Train{}, nil, err
		}
		t.Results = r
		closers = append(closers, r)
	}
	return t, func() {
		for _, c := range closers {
			c.Close()
		}
	}, nil
}

// Bounds on what a station reads from a train image, checked from the
// manifest's descriptors before the bytes are fetched. Real manifests and
// image configs are a few KiB; 4 MiB is the size the OCI distribution spec
// asks registries to accept for manifests.
const (
	MaxManifestSize = train.MaxManifestSize
	MaxConfigSize   = 8 << 20
	// maxEnvelopeSize bounds the envelope entry, read before anything is
	// verified (the protocol refuses larger envelopes anyway).
	maxEnvelopeSize = 4 << 20
	// stateSlack covers what the state layer holds besides the envelope and
	// the signed blobs: tar headers, directories, whiteouts, padding.
	stateSlack = 1 << 20
)

// ErrLimit is wrapped when an input is larger than a station bound (a
// manifest, an image config, the state layer or one of its entries).
var ErrLimit = errors.New("over a station size limit")

// ErrTransfer means a registry served a layer whose bytes do not match the
// digest its manifest names: the registry's storage or the transfer is at
// fault, not the train, and a later try may get the right bytes.
var ErrTransfer = errors.New("layer bytes do not match the manifest's digest")

// ReadOption configures Read.
type ReadOption func(*readOptions)

type readOptions struct {
	layerVerified bool
	progress      io.Writer
}

// WithProgress draws a bar for the state layer's download on w when it is
// a terminal (nil or not a terminal: none).
func WithProgress(w io.Writer) ReadOption { return func(o *readOptions) { o.progress = w } }

// LayerVerified says the image's layers check their own digests while they
// are read (go-containerregistry's remote layers do, failing at the end of
// a mismatching body), so Read does not hash the state layer a second time;
// it still holds it to its size. Do not use it for layout or tarball images.
func LayerVerified() ReadOption { return func(o *readOptions) { o.layerVerified = true } }

// VerifyFunc checks an envelope against the trust store (hardened.Verify).
type VerifyFunc func(*hardened.Envelope) (*hardened.Verified, error)

// CheckImage bounds the manifest and the image config from their sizes in
// hand before the config is fetched, and returns the manifest.
func CheckImage(img v1.Image) (*v1.Manifest, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrImage, err)
	}
	if len(raw) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %w: manifest is %d bytes, at most %d", ErrImage, ErrLimit, len(raw), MaxManifestSize)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrImage, err)
	}
	if m.Config.Size < 0 || m.Config.Size > MaxConfigSize {
		return nil, fmt.Errorf("%w: %w: image config is %d bytes, at most %d", ErrImage, ErrLimit, m.Config.Size, MaxConfigSize)
	}
	return m, nil
}

// Read reads the state layer of a train image in one streaming pass.
// The envelope must be its first file: it is parsed and verified (verify)
// before any other byte is kept, and then each sealed blob is read through a
// limit of its signed size and its signed digest checked while it is
// spooled. The layer's compressed and uncompressed reads are bounded by its
// descriptor and by the signed sizes, so a gzip or sparse bomb costs
// neither disk nor much time. Anything but the expected entries is refused.
// The blobs are spooled under tmp ("" for the system temp directory).
func Read(ctx context.Context, img v1.Image, tmp string, verify VerifyFunc, opts ...ReadOption) (_ *Sealed, _ *hardened.Verified, err error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	m, err := CheckImage(img)
	if err != nil {
		return nil, nil, err
	}
	layer, desc, err := stateLayer(img, m)
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(tmp, "train-")
	if err != nil {
		return nil, nil, err
	}
	st := &Sealed{dir: dir}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	rc, err := layer.Compressed()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: state layer: %w", ErrImage, err)
	}
	defer rc.Close()
	// A bar on a terminal (progress nil or not a terminal: none): the state
	// layer holds the sealed code and results, a train's bulk.
	bar := registry.NewBar(o.progress, desc.Size, "pull train")
	defer bar.Finish()
	comp := newDigestReader(bar.Reader(rc), desc.Size)
	if o.layerVerified {
		comp.h = nil // the layer's own reader checks the digest
	}
	// The download and the layer's digest run on a second goroutine,
	// beside the spooling and the blobs' signed digests on this one. comp
	// is inspected only through check(ra), after ra returned an error or EOF.
	ra := pipe.NewReader(comp, 0, 0)
	defer ra.Close()
	var body io.Reader = ra
	var gz *gzip.Reader
	switch desc.MediaType {
	case types.DockerLayer, types.OCILayer:
		if gz, err = gzip.NewReader(ra); err != nil {
			return nil, nil, fmt.Errorf("%w: state layer: %w", ErrImage, err)
		}
		body = gz
	case types.DockerUncompressedLayer, types.OCIUncompressedLayer:
	default:
		return nil, nil, fmt.Errorf("%w: state layer media type %q", ErrImage, desc.MediaType)
	}
	// Until the envelope is verified, only room for it is granted.
	plain := &boundedReader{r: body, limit: maxEnvelopeSize + stateSlack}
	v, err := readState(ctx, tar.NewReader(plain), plain, st, verify)
	if err != nil {
		// Bytes that fail a check may be the registry's fault, not the
		// train's: a layer whose bytes do not match the digest its manifest
		// names was damaged in storage or transit, and refusing it would
		// refuse the genuine train under the same manifest for good. So the
		// rest of the layer is read (when it is no larger than the signed
		// sizes allow) and its digest decides.
		if desc.Size <= plain.limit+stateSlack && ctx.Err() == nil {
			if cerr := comp.check(ra, desc.Digest); cerr != nil {
				return nil, nil, fmt.Errorf("%w: state layer %s: %v (found while reading it: %v)", ErrTransfer, desc.Digest, cerr, err)
			}
		}
		return nil, nil, err
	}
	// Read to the end (still bounded) so the layer's digest can be checked:
	// what was pulled is what the manifest named.
	if _, err := io.Copy(io.Discard, plain); err != nil {
		return nil, nil, fmt.Errorf("%w: state layer: %w", ErrImage, err)
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return nil, nil, fmt.Errorf("%w: state layer: %w", ErrImage, err)
		}
	}
	if err := comp.check(ra, desc.Digest); err != nil {
		return nil, nil, fmt.Errorf("state layer: %w", err)
	}
	return st, v, nil
}

// stateLayer returns the top layer of img, which must be its one state
// layer, with its manifest descriptor.
func stateLayer(img v1.Image, m *v1.Manifest) (v1.Layer, v1.Descriptor, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%w: image config: %w", ErrImage, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%w: layers: %w", ErrImage, err)
	}
	var hist []v1.History
	for _, h := range cf.History {
		if !h.EmptyLayer {
			hist = append(hist, h)
		}
	}
	n := len(layers)
	if n == 0 || len(hist) != n || len(m.Layers) != n {
		return nil, v1.Descriptor{}, fmt.Errorf("%w: history names %d layers, image has %d", ErrImage, len(hist), n)
	}
	for i, h := range hist {
		if train.IsStateLayer(h) != (i == n-1) {
			return nil, v1.Descriptor{}, fmt.Errorf("%w: the state layer must be the one top layer (layer %d of %d)", ErrImage, i, n)
		}
	}
	return layers[n-1], m.Layers[n-1], nil
}

// readState walks the state layer's entries: the envelope first, then the
// sealed blobs, each checked against the verified envelope.
func readState(ctx context.Context, tr *tar.Reader, plain *boundedReader, st *Sealed, verify VerifyFunc) (*hardened.Verified, error) {
	var v *hardened.Verified
	var results *hardened.BlobRef
	allowed := map[string]bool{"opt": true, train.TrainDir: true, train.ResultsDir: true,
		train.TrainDir + "/.wh..wh..opq": true, train.ResultsDir + "/.wh..wh..opq": true}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: state layer: %w", ErrImage, err)
		}
		name := path.Clean("/" + hdr.Name)[1:]
		if train.IsSparse(hdr) {
			return nil, fmt.Errorf("%w: sparse entry %q (%d bytes) in the state layer", ErrImage, "/"+name, hdr.Size)
		}
		reg := hdr.Typeflag == tar.TypeReg
		switch {
		case allowed[name] && (hdr.Typeflag == tar.TypeDir || (reg && hdr.Size == 0)):
			delete(allowed, name) // each once
			continue
		case name == train.ConfigPath && reg && v == nil:
			if hdr.Size > maxEnvelopeSize {
				return nil, fmt.Errorf("%w: %w: envelope is %d bytes, at most %d", ErrImage, ErrLimit, hdr.Size, maxEnvelopeSize)
			}
			data, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
			if err != nil {
				return nil, fmt.Errorf("%w: envelope: %w", ErrImage, err)
			}
			if st.Envelope, err = hardened.ParseEnvelope(data); err != nil {
				return nil, err
			}
			if v, err = verify(st.Envelope); err != nil {
				return nil, err
			}
			// Now the signed sizes say how much more may come.
			more := v.Statement.Code.Blob.Size + stateSlack
			if n := len(v.Stops); n > 0 {
				results = &v.Stops[n-1].Output.Blob
				more += results.Size
			}
			plain.limit = plain.n + more
			continue
		case v == nil:
			return nil, fmt.Errorf("%w: %q before the envelope in the state layer", ErrImage, "/"+name)
		case name == CodeBlob && reg && st.Code == "":
			st.Code = filepath.Join(st.dir, "code.sealed")
			if err := spoolSigned(st.Code, tr, hdr, v.Statement.Code.Blob, "code"); err != nil {
				return nil, err
			}
			continue
		case name == ResultsBlob && reg && st.Results == "" && results != nil:
			st.Results = filepath.Join(st.dir, "results.sealed")
			if err := spoolSigned(st.Results, tr, hdr, *results, "results"); err != nil {
				return nil, err
			}
			continue
		}
		return nil, fmt.Errorf("%w: unexpected entry %q (type %q, %d bytes) in the state layer", ErrImage, "/"+name, hdr.Typeflag, hdr.Size)
	}
	switch {
	case v == nil:
		return nil, fmt.Errorf("%w: no /%s", ErrImage, train.ConfigPath)
	case st.Code == "":
		return nil, fmt.Errorf("%w: no /%s", ErrImage, CodeBlob)
	case results != nil && st.Results == "":
		return nil, fmt.Errorf("%w: no /%s after %d stops", ErrImage, ResultsBlob, len(v.Stops))
	}
	return v, nil
}

// spoolSigned copies one sealed blob to a new private file at p: its header
// must announce the signed size, and its digest is checked as it streams.
// A blob that does not match leaves no file behind.
func spoolSigned(p string, r io.Reader, hdr *tar.Header, ref hardened.BlobRef, what string) (err error) {
	if hdr.Size != ref.Size {
		return fmt.Errorf("%w: %s blob is %d bytes, signed %d", hardened.ErrTampered, what, hdr.Size, ref.Size)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(p)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, ref.Size))
	if err != nil {
		return fmt.Errorf("%w: %s blob: %w", ErrImage, what, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != ref.Size || got != ref.Digest {
		return fmt.Errorf("%w: %s blob is %s (%d bytes), signed %s (%d bytes)", hardened.ErrTampered, what, got, n, ref.Digest, ref.Size)
	}
	return nil
}

// boundedReader fails once more than limit bytes have been read.
type boundedReader struct {
	r        io.Reader
	n, limit int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n >= b.limit {
		// Probe one byte: exactly limit bytes followed by EOF is fine.
		var one [1]byte
		if n, err := b.r.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%w: state layer is larger than %d bytes uncompressed", ErrLimit, b.limit)
		} else if err != nil {
			return 0, err
		}
		return 0, nil
	}
	if rem := b.limit - b.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// digestReader reads at most size bytes and hashes them.
type digestReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	size int64
}

func newDigestReader(r io.Reader, size int64) *digestReader {
	return &digestReader{r: r, h: sha256.New(), size: size}
}

func (d *digestReader) Read(p []byte) (int, error) {
	if d.n >= d.size {
		var one [1]byte
		if n, _ := d.r.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%w: %w: layer is longer than its %d bytes", ErrImage, ErrLimit, d.size)
		}
		return 0, io.EOF
	}
	if rem := d.size - d.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := d.r.Read(p)
	if d.h != nil {
		d.h.Write(p[:n])
	}
	d.n += int64(n)
	return n, err
}

// check drains what is left of d through rest (d itself, or a read-ahead
// of it: at most the descriptor's size) and compares the digest.
func (d *digestReader) check(rest io.Reader, want v1.Hash) error {
	if _, err := io.Copy(io.Discard, rest); err != nil {
		return err
	}
	if d.h == nil {
		if d.n != d.size {
			return fmt.Errorf("%w: layer is %d bytes, the manifest names %d", hardened.ErrTampered, d.n, d.size)
		}
		return nil
	}
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(d.h.Sum(nil))}
	if d.n != d.size || got != want {
		return fmt.Errorf("%w: layer is %s (%d bytes), the manifest names %s (%d bytes)", hardened.ErrTampered, got, d.n, want, d.size)
	}
	return nil
}

// WriteState returns img with a fresh state layer holding the envelope and
// the sealed blobs (results may be ""). The layer is spliced: it reads code
// and results in place (hashed once now, streamed again when the image is
// pushed or stored) instead of copying them, so those files must stay
// unchanged while the image is used. A station's sealed results are then
// written once, by the sealing itself.
func WriteState(img v1.Image, env *hardened.Envelope, code, results string) (v1.Image, error) {
	cfg, err := env.Marshal()
	if err != nil {
		return nil, err
	}
	w, err := train.NewSplicedStateWriter(img)
	if err != nil {
		return nil, err
	}
	if err := writeStateBody(w, cfg, code, results); err != nil {
		return nil, err
	}
	l, err := w.Splice()
	if err != nil {
		return nil, err
	}
	return train.WithState(img, l)
}

func writeStateBody(w *train.LayerWriter, cfg []byte, code, results string) error {
	if err := w.File(train.ConfigPath, 0o644, int64(len(cfg)), bytes.NewReader(cfg)); err != nil {
		return err
	}
	if err := w.FileAt(CodeBlob, 0o644, code); err != nil {
		return err
	}
	if results == "" {
		return nil
	}
	return w.FileAt(ResultsBlob, 0o644, results)
}

// Pull fetches the train image at ref. The manifest's size is checked
// with a HEAD request before it is downloaded, and the image is then pulled
// by the digest that HEAD named, so a registry cannot swap a larger or
// different manifest in between.
func Pull(ctx context.Context, c *registry.Client, ref string) (v1.Image, error) {
	r, desc, err := Head(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	return c.Pull(ctx, r.Context().Name()+"@"+desc.Digest.String())
}

// Head is train.HeadManifest with this package's errors: a manifest over
// the bound wraps ErrLimit.
func Head(ctx context.Context, c *registry.Client, ref string) (name.Reference, *v1.Descriptor, error) {
	r, desc, err := train.HeadManifest(ctx, c, ref)
	if errors.Is(err, train.ErrTooLarge) {
		return nil, nil, fmt.Errorf("%w: %w: %w", ErrImage, ErrLimit, err)
	}
	return r, desc, err
}

// BaseIDOf returns the BaseID of a base image: all of its layers.
func BaseIDOf(base v1.Image) (string, error) {
	cf, err := base.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("base image config: %w", err)
	}
	return BaseID(cf.RootFS.DiffIDs), nil
}

// WithHistory gives every layer of img a history entry when the image has
// none (images built by tools that skip history), so the state layer can be
// told apart from base layers later. Diff ids, and so the BaseID, stay.
func WithHistory(img v1.Image) (v1.Image, error) {
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
