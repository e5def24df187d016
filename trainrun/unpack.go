package trainrun

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"

	"github.com/trainyard/trainyard/errdefs"
)

// Unpack limits applied unless overridden with UnpackOptions.
const (
	DefaultMaxUnpackBytes   int64 = 8 << 30
	DefaultMaxUnpackEntries       = 1 << 20
)

// UnpackOptions bounds and adjusts an unpack. The zero value uses the defaults.
type UnpackOptions struct {
	// MaxBytes bounds the sum of regular file sizes; 0 = DefaultMaxUnpackBytes.
	MaxBytes int64
	// MaxEntries bounds the number of tar entries; 0 = DefaultMaxUnpackEntries.
	MaxEntries int
	// IDShift is added to every uid and gid (for a user-namespaced container).
	IDShift uint32
	// StripComponents drops that many leading path elements of each entry
	// (entries with fewer are skipped), as tar --strip-components does.
	StripComponents int
	// NoChown keeps files owned by the caller (tests run without root).
	NoChown bool
}

// UnpackImage writes the filesystem of img into dir, streaming, one layer
// after the other (whiteouts and opaque directories applied as the OCI
// image spec says). Every layer is verified while it streams: its
// compressed bytes against the manifest's digest and size, its uncompressed
// bytes against the config's rootfs.diff_ids entry; a mismatch, or layer and
// diff-id counts that differ, fails with ErrLayerDigest. (go-containerregistry's
// Uncompressed and mutate.Extract trust a blob to be what the manifest says.)
// The caller must discard dir on any error: a refused layer may have been
// partly written before its digest could be checked at its end.
//
// Every entry is written through an os.Root, so neither "..", absolute names
// nor symlinks planted by an earlier entry can place a file outside dir; such
// entries fail with ErrUnsafeImage. Device nodes and FIFOs are skipped (the
// runtime provides /dev); setuid and setgid bits are dropped.
func UnpackImage(ctx context.Context, img v1.Image, dir string, opt UnpackOptions) error {
	layers, checks, err := layerChecks(img)
	if err != nil {
		return err
	}
	u, err := newUnpacker(dir, opt)
	if err != nil {
		return err
	}
	defer u.root.Close()
	for i, l := range layers {
		r, err := openVerified(l, checks[i])
		if err != nil {
			return err
		}
		err = u.layer(ctx, r, true)
		if err == nil {
			err = drainTrailing(r, checks[i])
		} else if !errors.Is(err, ErrLayerDigest) && ctx.Err() == nil {
			// Bytes that are not a tar stream are most likely not the
			// approved layer: say so when the rest of it shows it.
			if derr := drainTrailing(r, checks[i]); errors.Is(derr, ErrLayerDigest) {
				err = fmt.Errorf("%w (%v)", derr, err)
			}
		}
		r.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// UnpackTar writes the tar stream r into dir with the same checks as UnpackImage.
func UnpackTar(ctx context.Context, r io.Reader, dir string, opt UnpackOptions) error {
	u, err := newUnpacker(dir, opt)
	if err != nil {
		return err
	}
	defer u.root.Close()
	return u.layer(ctx, r, false)
}

func newUnpacker(dir string, opt UnpackOptions) (*unpacker, error) {
	if opt.MaxBytes == 0 {
		opt.MaxBytes = DefaultMaxUnpackBytes
	}
	if opt.MaxEntries == 0 {
		opt.MaxEntries = DefaultMaxUnpackEntries
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("unpack: %w", err)
	}
	return &unpacker{root: root, opt: opt, budget: opt.MaxBytes}, nil
}

type unpacker struct {
	root    *os.Root
	opt     UnpackOptions
	budget  int64
	entries int // across all layers, bounded by opt.MaxEntries
	// written holds what the current layer wrote, so that an opaque
	// whiteout removes only what lower layers left in its directory. Its
	// size is bounded by MaxEntries.
	written map[string]bool
}

// layer applies one tar stream. With whiteouts, ".wh.NAME" removes NAME and
// ".wh..wh..opq" empties its directory of lower layers' entries; without,
// such names are ordinary files (a results tree is not a layer).
func (u *unpacker) layer(ctx context.Context, r io.Reader, whiteouts bool) error {
	u.written = nil
	if whiteouts {
		u.written = map[string]bool{}
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unpack: reading image: %w", err)
		}
		if u.entries >= u.opt.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeImage, u.opt.MaxEntries)
		}
		u.entries++
		if whiteouts {
			done, err := u.whiteout(hdr.Name)
			if err != nil {
				return err
			}
			if done {
				continue
			}
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
}

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// whiteout applies name if it is a whiteout entry and reports whether it was.
func (u *unpacker) whiteout(name string) (bool, error) {
	base := path.Base(name)
	if !strings.HasPrefix(base, whiteoutPrefix) {
		return false, nil
	}
	p, ok, err := u.cleanName(name)
	if err != nil || !ok {
		return true, err
	}
	dir := path.Dir(p)
	if base == whiteoutOpaque {
		if err := u.prune(dir); err != nil {
			return true, fmt.Errorf("unpack %q: %w", name, err)
		}
		return true, nil
	}
	// The whited-out name must be one plain element: ".wh." or ".wh.."
	// would otherwise remove the directory itself or its parent.
	hidden := strings.TrimPrefix(base, whiteoutPrefix)
	target := path.Join(dir, hidden)
	if hidden == "" || hidden == "." || hidden == ".." || !filepath.IsLocal(target) {
		return true, fmt.Errorf("%w: whiteout %q", ErrUnsafeImage, name)
	}
	if err := u.root.RemoveAll(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return true, fmt.Errorf("unpack %q: %w", name, err)
	}
	return true, nil
}

// cleanName turns a tar name into a local path, reports it unsafe, or says
// to skip it (the root itself, or too short for StripComponents).
func (u *unpacker) cleanName(name string) (string, bool, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == "." {
		return "", false, nil
	}
	if !filepath.IsLocal(p) {
		return "", false, fmt.Errorf("%w: entry %q leaves the root filesystem", ErrUnsafeImage, name)
	}
	if u.opt.StripComponents > 0 {
		parts := strings.Split(p, "/")
		if len(parts) <= u.opt.StripComponents {
			return "", false, nil
		}
		p = strings.Join(parts[u.opt.StripComponents:], "/")
	}
	return p, true, nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, ok, err := u.cleanName(hdr.Name)
	if err != nil || !ok {
		return err
	}
	// The entry and its parents (made by MkdirAll if the layer has no
	// entries of their own) belong to this layer; stop at the first parent
	// already recorded, so the set grows with distinct paths only.
	for p := name; u.written != nil && p != "." && !u.written[p]; p = path.Dir(p) {
		u.written[p] = true
	}
	fail := func(err error) error {
		if errors.Is(err, ErrUnsafeImage) {
			return err
		}
		// os.Root refuses paths that escape through symlinks; report them as unsafe.
		if strings.Contains(err.Error(), "path escapes from parent") {
			return fmt.Errorf("%w: entry %q: %w", ErrUnsafeImage, hdr.Name, err)
		}
		return fmt.Errorf("unpack %q: %w", hdr.Name, err)
	}
	if dir := path.Dir(name); dir != "." {
		if err := u.mkParents(dir); err != nil {
			return fail(err)
		}
	}
	mode := fs.FileMode(hdr.Mode) & (fs.ModePerm | fs.ModeSticky)
	if hdr.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := u.root.Lstat(name); err == nil && !fi.IsDir() {
			if err := u.root.Remove(name); err != nil {
				return fail(err)
			}
		}
		if err := u.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fail(err)
		}
	//lint:ignore SA1019 old archives may still mark regular files with TypeRegA ('\x00')
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size < 0 || hdr.Size > u.budget {
			return fmt.Errorf("%w: file contents exceed %d bytes", ErrUnsafeImage, u.opt.MaxBytes)
		}
		u.budget -= hdr.Size
		if err := u.replace(name); err != nil {
			return fail(err)
		}
		f, err := u.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fail(err)
		}
		_, err = io.CopyN(f, r, hdr.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fail(err)
		}
	case tar.TypeSymlink:
		if err := u.replace(name); err != nil {
			return fail(err)
		}
		// The target is resolved inside the container's root by the kernel.
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return fail(err)
		}
	case tar.TypeLink:
		target, ok, err := u.cleanName(hdr.Linkname)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: hard link %q to the root", ErrUnsafeImage, hdr.Name)
		}
		if err := u.replace(name); err != nil {
			return fail(err)
		}
		if err := u.root.Link(target, name); err != nil {
			return fail(err)
		}
		return nil // a hard link shares its target's owner and mode
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("%w: entry %q has unsupported type %q", ErrUnsafeImage, hdr.Name, hdr.Typeflag)
	}
	if !u.opt.NoChown {
		uid, gid := hdr.Uid+int(u.opt.IDShift), hdr.Gid+int(u.opt.IDShift)
		if hdr.Uid < 0 || hdr.Gid < 0 || uid > 1<<31 || gid > 1<<31 {
			return fmt.Errorf("%w: entry %q has owner %d:%d", ErrUnsafeImage, hdr.Name, hdr.Uid, hdr.Gid)
		}
		if err := u.root.Lchown(name, uid, gid); err != nil {
			return fail(err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := u.root.Chmod(name, mode); err != nil {
			return fail(err)
		}
		if !hdr.ModTime.IsZero() && hdr.Typeflag != tar.TypeDir {
			_ = u.root.Chtimes(name, hdr.ModTime, hdr.ModTime)
		}
	}
	return nil
}

// mkParents makes the missing directories of dir 0755, set explicitly: a
// layer that names a file but not its parents must not get parents only
// the station's user can enter because of the station's umask.
func (u *unpacker) mkParents(dir string) error {
	p := ""
	for _, part := range strings.Split(dir, "/") {
		p = path.Join(p, part)
		err := u.root.Mkdir(p, 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := u.root.Chmod(p, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// prune removes from dir everything lower layers left there, descending
// into the directories this layer wrote to as well.
func (u *unpacker) prune(dir string) error {
	entries, err := fs.ReadDir(u.root.FS(), dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		child := path.Join(dir, e.Name())
		switch {
		case !u.written[child]:
			if err := u.root.RemoveAll(child); err != nil {
				return err
			}
		case e.IsDir(): // e is from Lstat: a symlink is not followed
			if err := u.prune(child); err != nil {
				return err
			}
		}
	}
	return nil
}

// replace removes whatever is at name so a later layer's entry wins, a
// lower layer's directory with everything in it included.
func (u *unpacker) replace(name string) error {
	err := u.root.RemoveAll(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// ErrLayerDigest: a layer's bytes are not the ones the image names for it
// (the manifest's digest and size, the config's diff id), or the image's
// layer and diff-id counts disagree. What a station approves are diff ids,
// so a layer that does not hash to its diff id must never reach a container.
var ErrLayerDigest = errdefs.New("layer content does not match its digest", errdefs.ErrTampered)

// ErrBlobMismatch, with ErrLayerDigest: the bytes a registry served for a
// layer are not the blob (size and digest) its manifest names. The damage
// is the registry's (storage or transfer): a genuine image behind that
// manifest may come whole on another try, unlike a layer whose right blob
// does not hash to the config's diff id, which the image itself gets wrong.
var ErrBlobMismatch = errors.New("layer blob differs from the manifest's digest")

// maxTrailing bounds what may follow a layer's end-of-archive marker (tar
// writers pad to a 10 KiB record); it must still be read to hash the layer.
const maxTrailing = 1 << 20

// maxLayerStream bounds a layer's uncompressed stream where no unpack budget
// applies (hashing a layer on its way to the Docker daemon).
const maxLayerStream = DefaultMaxUnpackBytes + 1<<30

// layerCheck is what one layer must hash to.
type layerCheck struct {
	index  int
	digest v1.Hash // compressed blob, from the manifest
	size   int64   // compressed size, from the manifest
	diffID v1.Hash // uncompressed tar, from the config's rootfs.diff_ids
}

// layerChecks pairs img's layers with the manifest's descriptors and the
// config's diff ids, taken from the image's own documents rather than from
// the layers (a v1.Layer may claim any digest).
func layerChecks(img v1.Image) ([]v1.Layer, []layerCheck, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, fmt.Errorf("reading image manifest: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("reading image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("reading image layers: %w", err)
	}
	if len(layers) != len(cf.RootFS.DiffIDs) || len(layers) != len(m.Layers) {
		return nil, nil, fmt.Errorf("%w: the image has %d layers, its manifest %d, its config %d diff ids",
			ErrLayerDigest, len(layers), len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	checks := make([]layerCheck, len(layers))
	for i := range layers {
		c := layerCheck{index: i, digest: m.Layers[i].Digest, size: m.Layers[i].Size, diffID: cf.RootFS.DiffIDs[i]}
		for _, h := range []v1.Hash{c.digest, c.diffID} {
			if _, err := newHash(h); err != nil {
				// %v, not %w: a truncated layer's io.ErrUnexpectedEOF must stay a
				// refusal, not read as a network failure (station.Classify).
				return nil, nil, fmt.Errorf("%w: layer %d: %v", ErrLayerDigest, i, err)
			}
		}
		if c.size <= 0 {
			return nil, nil, fmt.Errorf("%w: layer %d: manifest size %d", ErrLayerDigest, i, c.size)
		}
		checks[i] = c
	}
	return layers, checks, nil
}

func newHash(h v1.Hash) (hash.Hash, error) {
	var f func() hash.Hash
	switch h.Algorithm {
	case "sha256":
		f = sha256.New
	case "sha512":
		f = sha512.New
	default:
		return nil, fmt.Errorf("unsupported digest algorithm %q", h.Algorithm)
	}
	if len(h.Hex) != 2*f().Size() {
		return nil, fmt.Errorf("malformed digest %q", h)
	}
	return f(), nil
}

// hashingReader hashes and counts what passes and refuses more than max bytes.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	max  int64
	what string
	idx  int
	// readErr is the underlying reader's own failure (a registry or disk
	// error): that is not evidence of tampering and is reported as it is.
	readErr error
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		h.readErr = err
	}
	h.h.Write(p[:n])
	h.n += int64(n)
	if h.n > h.max {
		return n, fmt.Errorf("%w: layer %d: %s is larger than %d bytes", ErrLayerDigest, h.idx, h.what, h.max)
	}
	return n, err
}

func (h *hashingReader) matches(want v1.Hash) bool {
	return hex.EncodeToString(h.h.Sum(nil)) == want.Hex
}

// verifiedReader yields a layer's uncompressed tar from its compressed blob
// and, in place of io.EOF, ErrLayerDigest when either hash is wrong.
type verifiedReader struct {
	src   io.ReadCloser
	comp  *hashingReader // compressed bytes
	dec   io.Reader
	close func()
	un    *hashingReader // uncompressed bytes
	chk   layerCheck
	err   error // sticky end-of-stream verdict
}

// openVerified decompresses l.Compressed() itself (gzip, zstd or plain tar,
// told by magic bytes as containerd does) so that one read of the blob
// checks both the manifest digest and the diff id.
func openVerified(l v1.Layer, chk layerCheck) (*verifiedReader, error) {
	src, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", chk.index, err)
	}
	return verifyStream(src, chk)
}

// verifyStream is openVerified over a compressed stream src.
func verifyStream(src io.ReadCloser, chk layerCheck) (*verifiedReader, error) {
	ch, _ := newHash(chk.digest)
	uh, _ := newHash(chk.diffID)
	v := &verifiedReader{src: src, chk: chk, close: func() {}}
	v.comp = &hashingReader{r: src, h: ch, max: chk.size, what: "the compressed blob", idx: chk.index}
	br := bufio.NewReader(v.comp)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("%w: layer %d: %v", ErrLayerDigest, chk.index, err)
		}
		v.dec = zr
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("%w: layer %d: %v", ErrLayerDigest, chk.index, err)
		}
		v.dec, v.close = zr, zr.Close
	default:
		v.dec = br
	}
	v.un = &hashingReader{r: v.dec, h: uh, max: maxLayerStream, what: "the uncompressed layer", idx: chk.index}
	return v, nil
}

func (v *verifiedReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.un.Read(p)
	if v.comp.readErr != nil {
		err = fmt.Errorf("layer %d: reading the blob: %w", v.chk.index, v.comp.readErr)
	} else if errors.Is(err, io.EOF) {
		err = v.finish()
	} else if err != nil && !errors.Is(err, ErrLayerDigest) {
		// A corrupt compressed stream is not the blob the manifest names.
		err = fmt.Errorf("%w: layer %d: %v", ErrLayerDigest, v.chk.index, err)
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

// finish reads what the decompressor left of the blob and checks both hashes.
func (v *verifiedReader) finish() error {
	if _, err := io.Copy(io.Discard, v.comp); err != nil {
		if v.comp.readErr != nil {
			return fmt.Errorf("layer %d: reading the blob: %w", v.chk.index, v.comp.readErr)
		}
		return err
	}
	switch {
	case v.comp.n != v.chk.size:
		return fmt.Errorf("%w: %w: layer %d: blob is %d bytes, the manifest says %d", ErrLayerDigest, ErrBlobMismatch, v.chk.index, v.comp.n, v.chk.size)
	case !v.comp.matches(v.chk.digest):
		return fmt.Errorf("%w: %w: layer %d: blob is not %s", ErrLayerDigest, ErrBlobMismatch, v.chk.index, v.chk.digest)
	case !v.un.matches(v.chk.diffID):
		return fmt.Errorf("%w: layer %d: content does not hash to diff id %s", ErrLayerDigest, v.chk.index, v.chk.diffID)
	}
	return io.EOF
}

func (v *verifiedReader) Close() error {
	v.close()
	return v.src.Close()
}

// drainTrailing reads a layer past its end-of-archive marker to the end, so
// that the whole stream is hashed and its verdict seen.
func drainTrailing(r io.Reader, chk layerCheck) error {
	n, err := io.Copy(io.Discard, io.LimitReader(r, maxTrailing+1))
	if err != nil {
		return err
	}
	if n > maxTrailing {
		return fmt.Errorf("%w: layer %d: more than %d bytes after its end-of-archive marker", ErrUnsafeImage, chk.index, maxTrailing)
	}
	return nil
}

// verifiedBlob passes a layer's compressed bytes on unchanged (to the Docker
// daemon) while a goroutine decompresses a copy and checks both digests; in
// place of io.EOF it returns the verdict, so a consumer never sees the clean
// end of a blob that is not the approved one.
type verifiedBlob struct {
	src  io.ReadCloser
	pw   *io.PipeWriter
	done chan error
	err  error
}

func openVerifiedBlob(l v1.Layer, chk layerCheck) (io.ReadCloser, error) {
	src, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", chk.index, err)
	}
	pr, pw := io.Pipe()
	b := &verifiedBlob{src: src, pw: pw, done: make(chan error, 1)}
	go func() {
		v, err := verifyStream(pr, chk)
		if err == nil {
			_, err = io.Copy(io.Discard, v)
		}
		// Unblock the writer side whatever happened.
		pr.CloseWithError(err)
		b.done <- err
	}()
	return b, nil
}

func (b *verifiedBlob) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.src.Read(p)
	if n > 0 {
		if _, werr := b.pw.Write(p[:n]); werr != nil {
			b.err = werr
			return 0, werr
		}
	}
	if errors.Is(err, io.EOF) {
		b.pw.Close()
		if verdict := <-b.done; verdict != nil {
			b.err = verdict
			return n, verdict
		}
		b.err = io.EOF
	} else if err != nil {
		b.err = err
	}
	return n, err
}

func (b *verifiedBlob) Close() error {
	b.pw.CloseWithError(errors.New("layer reader closed"))
	return b.src.Close()
}

// verifiedImage is an image whose layers are read through verifiedBlob and
// named by the manifest's digests and the config's diff ids.
type verifiedImage struct {
	v1.Image
	layers []v1.Layer
}

func verifyingImage(img v1.Image) (v1.Image, error) {
	layers, checks, err := layerChecks(img)
	if err != nil {
		return nil, err
	}
	out := &verifiedImage{Image: img, layers: make([]v1.Layer, len(layers))}
	for i, l := range layers {
		out.layers[i] = verifiedLayer{Layer: l, chk: checks[i]}
	}
	return out, nil
}

func (v *verifiedImage) Layers() ([]v1.Layer, error) { return v.layers, nil }

func (v *verifiedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for _, l := range v.layers {
		if l.(verifiedLayer).chk.digest == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: no layer %s", ErrLayerDigest, h)
}

type verifiedLayer struct {
	v1.Layer
	chk layerCheck
}

func (l verifiedLayer) Digest() (v1.Hash, error)           { return l.chk.digest, nil }
func (l verifiedLayer) DiffID() (v1.Hash, error)           { return l.chk.diffID, nil }
func (l verifiedLayer) Size() (int64, error)               { return l.chk.size, nil }
func (l verifiedLayer) Compressed() (io.ReadCloser, error) { return openVerifiedBlob(l.Layer, l.chk) }
func (l verifiedLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("trainrun: a verified layer is only read compressed")
}
