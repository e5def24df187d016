package train

import (
	"archive/tar"
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
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/internal/pipe"
)

// LayerWriter streams a layer tarball into a temporary file while hashing
// it, so that a layer of any size costs constant memory and a single pass.
// The media type decides the encoding: an uncompressed type (state layers,
// whose content is ciphertext or stays local) is written as plain tar with
// one SHA-256 that is both digest and diff id; a gzip type is compressed at
// gzip.BestSpeed with both digests taken in the same pass. Close returns the
// finished v1.Layer backed by that file.
type LayerWriter struct {
	f        *os.File
	buf      *pipe.Writer
	gz       *gzip.Writer // nil for an uncompressed layer
	tw       *tar.Writer
	compSum  hash.Hash
	diffSum  hash.Hash // nil for an uncompressed layer: the digest is the diff id
	compSize *countWriter
	copyBuf  []byte
	dirs     map[string]bool
	names    map[string]bool
	mt       types.MediaType
	closed   bool
	splice   *spliceSink // set by NewSpliceWriter: no file, see splice.go
}

// Write sizes: large enough that a 256 MiB layer costs a few hundred write
// syscalls, small enough to stay a constant next to the data.
const layerBufSize = 1 << 20

// IsUncompressed reports whether mt is a plain-tar layer media type.
func IsUncompressed(mt types.MediaType) bool {
	return mt == types.OCIUncompressedLayer || mt == types.DockerUncompressedLayer
}

// NewLayerWriter starts a layer in a new file under dir ("" for the system
// temp directory). mt is the layer media type: Docker or OCI, gzip or
// uncompressed (see IsUncompressed).
func NewLayerWriter(dir string, mt types.MediaType) (*LayerWriter, error) {
	f, err := os.CreateTemp(dir, "trainyard-layer-*.tar")
	if err != nil {
		return nil, err
	}
	w := &LayerWriter{f: f, compSum: sha256.New(), dirs: map[string]bool{}, names: map[string]bool{}, mt: mt}
	// The digest of the stored bytes and the write run beside the producer
	// (encryption, SHA-512, gzip), on the second core when there is one.
	w.buf = pipe.NewWriter(io.MultiWriter(f, w.compSum), layerBufSize, 3)
	w.compSize = &countWriter{w: w.buf}
	if IsUncompressed(mt) {
		w.tw = tar.NewWriter(w.compSize)
		return w, nil
	}
	w.diffSum = sha256.New()
	// Heavy compression buys little on what trainyard writes; speed wins.
	w.gz, _ = gzip.NewWriterLevel(w.compSize, gzip.BestSpeed)
	w.tw = tar.NewWriter(io.MultiWriter(w.gz, w.diffSum))
	return w, nil
}

// Dir adds a directory entry, with its missing parents.
func (w *LayerWriter) Dir(name string, mode int64) error {
	name = cleanName(name)
	if name == "" || w.dirs[name] {
		return nil
	}
	if err := w.Dir(parent(name), 0o755); err != nil {
		return err
	}
	w.dirs[name] = true
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: time.Now(), Format: tar.FormatPAX})
}

// Whiteout hides name of lower layers; Opaque hides a directory's lower content.
func (w *LayerWriter) Whiteout(name string) error {
	name = cleanName(name)
	return w.file(path.Join(parent(name), whiteoutPrefix+path.Base(name)), 0, 0, nil)
}

// Opaque marks dir opaque: lower layers' content under it is hidden.
func (w *LayerWriter) Opaque(dir string) error {
	if err := w.Dir(dir, 0o755); err != nil {
		return err
	}
	return w.file(path.Join(cleanName(dir), whiteoutOpaque), 0, 0, nil)
}

// File adds a regular file of exactly size bytes read from r.
func (w *LayerWriter) File(name string, mode, size int64, r io.Reader) error {
	return w.file(name, mode, size, r)
}

func (w *LayerWriter) file(name string, mode, size int64, r io.Reader) error {
	name = cleanName(name)
	if w.names[name] {
		return fmt.Errorf("layer: duplicate entry %s", name)
	}
	if err := w.Dir(parent(name), 0o755); err != nil {
		return err
	}
	w.names[name] = true
	if mode == 0 {
		mode = 0o644
	}
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size, ModTime: time.Now(), Format: tar.FormatPAX}); err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	if w.copyBuf == nil {
		w.copyBuf = make([]byte, layerBufSize)
	}
	n, err := io.CopyBuffer(w.tw, io.LimitReader(r, size), w.copyBuf)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("layer: %s: wrote %d of %d bytes", name, n, size)
	}
	return nil
}

// Header adds a non-regular entry (symlink, hard link) as it was.
func (w *LayerWriter) Header(hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeDir {
		return errors.New("layer: use File or Dir")
	}
	h := *hdr
	h.Name = cleanName(h.Name)
	h.Size = 0
	if err := w.Dir(parent(h.Name), 0o755); err != nil {
		return err
	}
	w.names[h.Name] = true
	return w.tw.WriteHeader(&h)
}

// Abort discards the layer.
func (w *LayerWriter) Abort() {
	if w.splice != nil {
		w.closed = true
		return
	}
	if !w.closed {
		w.closed = true
		w.buf.Close()
		w.f.Close()
	}
	os.Remove(w.f.Name())
}

// Close finishes the layer. The returned layer reads the temporary file,
// which the caller removes with Remove once the image has been written.
// The file is not fsynced: it only backs the image until that image is
// pushed or saved, and the store it is saved to (registry, OCI layout)
// makes it durable; a crash before that loses nothing that was promised.
func (w *LayerWriter) Close() (*FileLayer, error) {
	if w.splice != nil {
		return nil, errors.New("layer: a spliced layer is finished by Splice")
	}
	if w.closed {
		return nil, errors.New("layer: already closed")
	}
	w.closed = true
	err := w.tw.Close()
	if err == nil && w.gz != nil {
		err = w.gz.Close()
	}
	if err == nil {
		err = w.buf.Close()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(w.f.Name())
		return nil, err
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.compSum.Sum(nil))}
	diffID := digest
	if w.diffSum != nil {
		diffID = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.diffSum.Sum(nil))}
	}
	return &FileLayer{path: w.f.Name(), digest: digest, diffID: diffID, size: w.compSize.n, mt: w.mt, gzip: w.gz != nil}, nil
}

// FileLayer is a layer in a local file with precomputed digests, gzip or
// plain tar.
type FileLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
	mt             types.MediaType
	gzip           bool
}

var _ v1.Layer = (*FileLayer)(nil)

// Digest is the sha256 of the stored (possibly compressed) layer.
func (l *FileLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID is the sha256 of the uncompressed tar.
func (l *FileLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Compressed opens the layer as stored.
func (l *FileLayer) Compressed() (io.ReadCloser, error) { return os.Open(l.path) }

// Uncompressed opens the tar stream.
func (l *FileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil || !l.gzip {
		return f, err
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &gzipFile{Reader: gz, f: f}, nil
}

// Size is the compressed size.
func (l *FileLayer) Size() (int64, error) { return l.size, nil }

// MediaType is the layer's media type.
func (l *FileLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// Remove deletes the backing file.
func (l *FileLayer) Remove() error { return os.Remove(l.path) }

type gzipFile struct {
	*gzip.Reader
	f *os.File
}

func (g *gzipFile) Close() error {
	err := g.Reader.Close()
	if ferr := g.f.Close(); err == nil {
		err = ferr
	}
	return err
}

// LayerMediaType picks the gzip layer media type that matches img's manifest.
func LayerMediaType(img v1.Image) types.MediaType {
	if mt, err := img.MediaType(); err == nil && mt == types.DockerManifestSchema2 {
		return types.DockerLayer
	}
	return types.OCILayer
}

// StateLayerMediaType picks the uncompressed layer media type that matches
// img's manifest. State layers hold ciphertext (sealed code and results)
// or, after a pre-run, plaintext that never leaves the station: gzip would
// cost most of a stop's CPU and save nothing on random bytes.
func StateLayerMediaType(img v1.Image) types.MediaType {
	if mt, err := img.MediaType(); err == nil && mt == types.DockerManifestSchema2 {
		return types.DockerUncompressedLayer
	}
	return types.OCIUncompressedLayer
}

// IsStateLayer reports whether a history entry marks the train state layer.
func IsStateLayer(h v1.History) bool { return strings.HasPrefix(h.Comment, StateComment) }

// WithState returns img with every previous state layer removed and layer
// appended as the new one (marked by StateComment in its history). Base
// layers, config, CMD and everything else are kept as they were. If img has
// no usable history (layers and non-empty history entries disagree), no layer
// can be identified: all are kept, the history is rebuilt one entry per
// layer, and the state layer is appended.
func WithState(img v1.Image, layer v1.Layer) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	cfg := cf.DeepCopy()
	nonEmpty := 0
	for _, h := range cf.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	var keptLayers []v1.Layer
	var keptDiffs []v1.Hash
	var keptHistory []v1.History
	if nonEmpty == len(layers) && len(cf.RootFS.DiffIDs) == len(layers) {
		li := 0
		for _, h := range cf.History {
			if h.EmptyLayer {
				keptHistory = append(keptHistory, h)
				continue
			}
			if !IsStateLayer(h) {
				keptHistory = append(keptHistory, h)
				keptLayers = append(keptLayers, layers[li])
				keptDiffs = append(keptDiffs, cf.RootFS.DiffIDs[li])
			}
			li++
		}
	} else {
		// No usable history: keep every layer and give each a plain history
		// entry so that the marker of the new state layer can be found later.
		keptLayers = layers
		for _, l := range layers {
			d, err := l.DiffID()
			if err != nil {
				return nil, err
			}
			keptDiffs = append(keptDiffs, d)
			keptHistory = append(keptHistory, v1.History{Created: cf.Created})
		}
	}
	diffID, err := layer.DiffID()
	if err != nil {
		return nil, err
	}
	now := v1.Time{Time: time.Now().UTC().Truncate(time.Second)}
	keptHistory = append(keptHistory, v1.History{Created: now, CreatedBy: "trainyard", Comment: StateComment})
	cfg.History = keptHistory
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = append(append([]v1.Hash{}, keptDiffs...), diffID)
	cfg.Created = now

	base := mutate.MediaType(empty.Image, mt)
	if cmt, err := configMediaType(img); err == nil {
		base = mutate.ConfigMediaType(base, cmt)
	}
	adds := make([]mutate.Addendum, 0, len(keptLayers)+1)
	for _, l := range keptLayers {
		adds = append(adds, mutate.Addendum{Layer: l})
	}
	adds = append(adds, mutate.Addendum{Layer: layer})
	out, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, err
	}
	// Replace the config wholesale: Append invents history entries we do not want.
	return mutate.ConfigFile(out, cfg)
}

func configMediaType(img v1.Image) (types.MediaType, error) {
	m, err := img.Manifest()
	if err != nil {
		return "", err
	}
	return m.Config.MediaType, nil
}

// Transform rewrites file contents while a tree is written into a layer,
// for example an encryption. Size must give the exact output size for an
// input of n bytes (tar headers precede the data).
type Transform interface {
	Size(n int64) int64
	Apply(dst io.Writer, src io.Reader) error
}

// NewStateWriter starts a train state layer for img: TrainDir and ResultsDir
// are marked opaque so the layer alone defines their content. The layer is
// uncompressed (StateLayerMediaType).
func NewStateWriter(dir string, img v1.Image) (*LayerWriter, error) {
	w, err := NewLayerWriter(dir, StateLayerMediaType(img))
	if err != nil {
		return nil, err
	}
	if err := w.opaqueStateDirs(); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

// opaqueStateDirs marks TrainDir and ResultsDir opaque, the start of every
// state layer.
func (w *LayerWriter) opaqueStateDirs() error {
	for _, d := range []string{TrainDir, ResultsDir} {
		if err := w.Opaque(d); err != nil {
			return err
		}
	}
	return nil
}

// Tree writes every entry of t under t.Root, regular files through tf (nil
// copies them), other entries as they were.
func (w *LayerWriter) Tree(t *Tree, tf Transform) error {
	for _, e := range t.Entries {
		full := path.Join(t.Root, e.Name)
		switch {
		case e.Type == tar.TypeDir:
			if err := w.Dir(full, e.Mode); err != nil {
				return err
			}
		case e.IsRegular():
			if err := w.treeFile(t, e, full, tf); err != nil {
				return fmt.Errorf("%q: %w", "/"+full, err)
			}
		default:
			if err := w.Header(&tar.Header{Typeflag: e.Type, Name: full, Linkname: e.Linkname, Mode: e.Mode, ModTime: e.ModTime, Uid: e.Uid, Gid: e.Gid, Format: tar.FormatPAX}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *LayerWriter) treeFile(t *Tree, e *Entry, full string, tf Transform) error {
	src, err := t.Open(e)
	if err != nil {
		return err
	}
	defer src.Close()
	if tf == nil {
		return w.File(full, e.Mode, e.Size, src)
	}
	size := tf.Size(e.Size)
	if st, ok := tf.(SizedTransform); ok {
		ra, ok := src.(io.ReaderAt)
		if !ok {
			return errors.New("layer: spooled file is not seekable")
		}
		if size, err = st.SizeOf(ra, e.Size); err != nil {
			return err
		}
	}
	return w.FileFunc(full, e.Mode, size, func(dst io.Writer) error { return tf.Apply(dst, src) })
}

// SizedTransform is a Transform whose output size depends on the content,
// such as a CBC decryption whose padding is in the last block: SizeOf reads
// what it needs of the n input bytes (random access, usually the end) so
// that the tar header can precede the data and the output streams straight
// into the layer.
type SizedTransform interface {
	Transform
	SizeOf(src io.ReaderAt, n int64) (int64, error)
}

// FileFunc adds a regular file of exactly size bytes that fn writes, with
// no copy in between (fn writes into the tar stream). Writing more or fewer
// bytes is an error.
func (w *LayerWriter) FileFunc(name string, mode, size int64, fn func(dst io.Writer) error) error {
	if err := w.file(name, mode, size, nil); err != nil {
		return err
	}
	cw := &countWriter{w: w.tw}
	if err := fn(cw); err != nil {
		if errors.Is(err, tar.ErrWriteTooLong) {
			return fmt.Errorf("layer: %s: wrote more than its announced %d bytes", name, size)
		}
		return err
	}
	if cw.n != size {
		return fmt.Errorf("layer: %s: wrote %d of %d bytes", name, cw.n, size)
	}
	return nil
}

// ErrPlaintext is wrapped when a sealed image would still carry plaintext
// train files or results in some layer and no clean base is known.
var ErrPlaintext = errors.New("plaintext train files or results would remain in a layer")

// layerScan is what one layer touches: train paths (TrainDir, ResultsDir,
// ConfigPath, UserKeyPath, with /opt) and whether it holds regular files or
// links under TrainDir or ResultsDir, which may be plaintext.
type layerScan struct {
	trainFiles bool // non-directory, non-whiteout entries under TrainDir/ResultsDir
	other      bool // entries outside the train paths
}

func isTrainPath(n string) bool {
	switch n {
	case "", "opt", ConfigPath, UserKeyPath, TrainDir, ResultsDir:
		return true
	}
	return strings.HasPrefix(n, TrainDir+"/") || strings.HasPrefix(n, ResultsDir+"/")
}

// scanLayer reads only the tar headers of l (contents are skipped).
func scanLayer(ctx context.Context, l v1.Layer) (layerScan, error) {
	var s layerScan
	rc, err := l.Uncompressed()
	if err != nil {
		return s, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for n := 0; ; n++ {
		if n&0xff == 0 {
			if err := ctx.Err(); err != nil {
				return s, err
			}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return s, nil
		}
		if err != nil {
			return s, fmt.Errorf("%w: read layer: %v", ErrLayout, err)
		}
		name := cleanName(hdr.Name)
		base := path.Base(name)
		if strings.HasPrefix(base, whiteoutPrefix) {
			// A whiteout of a train path removes, it holds nothing.
			if !isTrainPath(parent(name)) && !isTrainPath(path.Join(parent(name), strings.TrimPrefix(base, whiteoutPrefix))) {
				s.other = true
			}
			continue
		}
		if !isTrainPath(name) {
			s.other = true
			continue
		}
		if hdr.Typeflag != tar.TypeDir && (strings.HasPrefix(name, TrainDir+"/") || strings.HasPrefix(name, ResultsDir+"/")) {
			s.trainFiles = true
		}
	}
}

// layerEntry is one layer with its history entry (nil: none usable).
type layerEntry struct {
	layer v1.Layer
	diff  v1.Hash
	hist  *v1.History
}

// splitLayers pairs img's layers with their history entries; empty-layer
// history entries are returned separately in their position (before the
// layer they precede). ok is false when history and layers disagree.
func splitLayers(img v1.Image) (cf *v1.ConfigFile, ls []layerEntry, ok bool, err error) {
	cf, err = img.ConfigFile()
	if err != nil {
		return nil, nil, false, fmt.Errorf("read image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, false, fmt.Errorf("list layers: %w", err)
	}
	nonEmpty := 0
	for _, h := range cf.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	ok = nonEmpty == len(layers) && len(cf.RootFS.DiffIDs) == len(layers)
	li := 0
	for i := range cf.History {
		if !ok {
			break
		}
		if cf.History[i].EmptyLayer {
			continue
		}
		ls = append(ls, layerEntry{layer: layers[li], diff: cf.RootFS.DiffIDs[li], hist: &cf.History[i]})
		li++
	}
	if !ok {
		for _, l := range layers {
			d, err := l.DiffID()
			if err != nil {
				return nil, nil, false, err
			}
			ls = append(ls, layerEntry{layer: l, diff: d})
		}
	}
	return cf, ls, ok, nil
}

// WithSealedState returns img with layer as the only place where train
// files and results live, for a post-run whose output leaves the station:
//
//   - layers above the last state layer (a run committed by a Docker
//     engine, or anything else stacked on top) are dropped: the new state
//     was read from the merged view, so it already holds what they changed
//     under the train paths, and whatever else the run wrote stays behind;
//   - from the first lower layer holding files under TrainDir or ResultsDir
//     (a PHT image post-run without --rebase keeps its decrypted train files
//     and results there) every layer is dropped too, which rebases the
//     image onto the layers below, the base it was built on;
//   - with base != nil the image is rebased onto base's layers instead
//     (the PHT library's --rebase onto the train's ":base" image); base must
//     hold no files under the train paths.
//
// The image config (CMD, ENV, ...) of img is kept. When the first layer
// with train files also holds other content (a squashed image), dropping it
// would drop part of the base, so it refuses with ErrPlaintext unless base
// is given. Only tar headers of the lower layers are read.
func WithSealedState(ctx context.Context, img v1.Image, layer v1.Layer, base v1.Image) (v1.Image, error) {
	cf, ls, ok, err := splitLayers(img)
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	cfg := cf.DeepCopy()
	var keep []layerEntry
	var hist []v1.History
	if base != nil {
		bcf, bls, bok, err := splitLayers(base)
		if err != nil {
			return nil, fmt.Errorf("base image: %w", err)
		}
		for i, e := range bls {
			s, err := scanLayer(ctx, e.layer)
			if err != nil {
				return nil, fmt.Errorf("base image layer %d: %w", i, err)
			}
			if s.trainFiles {
				return nil, fmt.Errorf("%w: base image layer %d holds files under /%s or /%s", ErrPlaintext, i, TrainDir, ResultsDir)
			}
		}
		keep = bls
		if bok {
			hist = keptHistory(bcf.History, len(bls))
		}
	} else {
		limit := len(ls)
		if ok {
			for i := range ls {
				if IsStateLayer(*ls[i].hist) {
					limit = i
				}
			}
		}
		cut := limit
		for i := 0; i < limit; i++ {
			s, err := scanLayer(ctx, ls[i].layer)
			if err != nil {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
			if s.trainFiles {
				if s.other {
					return nil, fmt.Errorf("%w: layer %d holds train files or results mixed with other content; rebase onto the train's base image (--rebase / --base)", ErrPlaintext, i)
				}
				cut = i
				break
			}
		}
		keep = ls[:cut]
		if ok {
			hist = keptHistory(cf.History, cut)
		}
	}
	if hist == nil {
		for range keep {
			hist = append(hist, v1.History{Created: cf.Created})
		}
	}
	diffID, err := layer.DiffID()
	if err != nil {
		return nil, err
	}
	now := v1.Time{Time: time.Now().UTC().Truncate(time.Second)}
	cfg.History = append(hist, v1.History{Created: now, CreatedBy: "trainyard", Comment: StateComment})
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = nil
	adds := make([]mutate.Addendum, 0, len(keep)+1)
	for _, e := range keep {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, e.diff)
		adds = append(adds, mutate.Addendum{Layer: e.layer})
	}
	cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
	adds = append(adds, mutate.Addendum{Layer: layer})
	cfg.Created = now
	out := mutate.MediaType(empty.Image, mt)
	if cmt, err := configMediaType(img); err == nil {
		out = mutate.ConfigMediaType(out, cmt)
	}
	if out, err = mutate.Append(out, adds...); err != nil {
		return nil, err
	}
	return mutate.ConfigFile(out, cfg)
}

// keptHistory returns the history entries up to (not including) the
// history entry of layer number n, empty-layer entries included.
func keptHistory(h []v1.History, n int) []v1.History {
	out := []v1.History{}
	li := 0
	for _, e := range h {
		if !e.EmptyLayer {
			if li == n {
				break
			}
			li++
		}
		out = append(out, e)
	}
	return out
}

// BaseOf returns img without its state layer and anything above it: the
// base the train runs on, what a PHT station pulls as REPO:base for its
// post-run --rebase. The image config is img's.
func BaseOf(img v1.Image) (v1.Image, error) {
	cf, ls, ok, err := splitLayers(img)
	if err != nil {
		return nil, err
	}
	state := -1
	for i := range ls {
		if ok && IsStateLayer(*ls[i].hist) {
			state = i
		}
	}
	if state < 0 {
		return nil, fmt.Errorf("%w: no train state layer marks where the base ends", ErrNotFound)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	cfg := cf.DeepCopy()
	cfg.History = keptHistory(cf.History, state)
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = nil
	var adds []mutate.Addendum
	for _, e := range ls[:state] {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, e.diff)
		adds = append(adds, mutate.Addendum{Layer: e.layer})
	}
	out := mutate.MediaType(empty.Image, mt)
	if cmt, err := configMediaType(img); err == nil {
		out = mutate.ConfigMediaType(out, cmt)
	}
	if out, err = mutate.Append(out, adds...); err != nil {
		return nil, err
	}
	return mutate.ConfigFile(out, cfg)
}
