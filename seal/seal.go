package seal

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/registry"
)

// Source is one image to seal.
type Source struct {
	// Name is the repository path and tag to load the image under, e.g.
	// "azaion/annotations:1.2" (see NameFor).
	Name string
	// Image is read once, layer by layer, as a stream.
	Image v1.Image
	// Source is recorded in the header for information (e.g. the pulled ref).
	Source string
	// Verified says that Image checks every layer stream against its digest
	// and size itself, failing the read on a mismatch, as
	// go-containerregistry's remote.Image does: Seal then does not hash the
	// layers a second time (SHA-256 is the slowest step of a seal). Leave it
	// false for images read from a layout, a tarball or a daemon, whose
	// layers Seal checks itself. Either way unseal verifies every blob again.
	Verified bool
}

// NameFor returns the load name of a reference: its repository path and tag
// without the registry host ("ghcr.io/azaion/annotations:1.2" gives
// "azaion/annotations:1.2"). References without a tag are refused because an
// image needs a name to be found after loading.
func NameFor(ref name.Reference) (string, error) {
	tag, ok := ref.(name.Tag)
	if !ok {
		if d, isDigest := ref.(name.Digest); isDigest {
			return "", fmt.Errorf("image %s has no tag: seal needs repo:tag (repo:tag@digest pins it)", d)
		}
		return "", fmt.Errorf("image %s has no tag", ref)
	}
	return tag.Context().RepositoryStr() + ":" + tag.TagStr(), nil
}

type sealConfig struct {
	chunkSize int
	archiveID string
	devices   []string
	now       func() time.Time
	replace   bool
	progress  io.Writer
}

// WithProgress draws a progress bar (bytes and rate) on w while sealing,
// when w is a terminal and the images total at least registry.ProgressMin.
func WithProgress(w io.Writer) SealOption { return func(c *sealConfig) { c.progress = w } }

// ErrArchiveExists: SealFile would replace an existing archive, whose key
// shares would then open nothing (WithReplace allows it).
var ErrArchiveExists = errors.New("archive already exists")

// WithReplace lets SealFile replace an existing archive.
func WithReplace(b bool) SealOption { return func(c *sealConfig) { c.replace = b } }

// SealOption configures Seal.
type SealOption func(*sealConfig)

// WithChunkSize sets the plaintext chunk size (1 KiB to 16 MiB; default 1 MiB).
func WithChunkSize(n int) SealOption { return func(c *sealConfig) { c.chunkSize = n } }

// WithArchiveID sets the archive id (default: random). The key server keeps
// fragments under it.
func WithArchiveID(id string) SealOption { return func(c *sealConfig) { c.archiveID = id } }

// WithDevices makes one key share per device (default: one device "default").
func WithDevices(names ...string) SealOption {
	return func(c *sealConfig) { c.devices = append(c.devices, names...) }
}

// defaultDevice names the one share made when WithDevices is not given.
const defaultDevice = "default"

// checkDevices refuses device names that are not ids (they become file
// names and key-server keys) or that repeat.
func checkDevices(devices []string) error {
	seen := map[string]bool{}
	for _, d := range devices {
		if !ValidArchiveID(d) || seen[d] {
			return fmt.Errorf("seal: invalid or duplicate device name %q", d)
		}
		seen[d] = true
	}
	return nil
}

// Sealed is what Seal returns: the header written and the key shares, which
// the caller hands out (device key to the site, fragment to the key server)
// and must not keep together.
type Sealed struct {
	Header *Header
	Shares []Share
	// Bytes is the size of the archive written.
	Bytes int64
}

// NewArchiveID returns a fresh random archive id.
func NewArchiveID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "sealed-" + time.Now().UTC().Format("20060102") + "-" + hex.EncodeToString(b[:])
}

// Seal writes a sealed archive of images to w: header, then the chunked AEAD
// stream of a tar holding an OCI image layout (oci-layout, index.json, then
// manifests, configs and layers as blobs/sha256/<hex>, each blob once).
// Layers are streamed from the images; memory stays at about one chunk.
func Seal(ctx context.Context, w io.Writer, images []Source, opts ...SealOption) (*Sealed, error) {
	cfg := sealConfig{chunkSize: DefaultChunkSize, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("seal: no images given")
	}
	if cfg.archiveID == "" {
		cfg.archiveID = NewArchiveID()
	}
	if !ValidArchiveID(cfg.archiveID) {
		return nil, fmt.Errorf("seal: invalid archive id %q (letters, digits, . _ -; up to 128)", cfg.archiveID)
	}
	if len(cfg.devices) == 0 {
		cfg.devices = []string{defaultDevice}
	}
	if err := checkDevices(cfg.devices); err != nil {
		return nil, err
	}

	// The header lists manifest digests, so resolve them before any byte is written.
	entries := make([]Image, 0, len(images))
	for _, src := range images {
		if _, err := name.ParseReference(src.Name); err != nil {
			return nil, fmt.Errorf("seal: image name %q: %w", src.Name, err)
		}
		mt, err := src.Image.MediaType()
		if err != nil {
			return nil, fmt.Errorf("seal %s: %w", src.Name, err)
		}
		if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
			return nil, fmt.Errorf("seal %s: unsupported manifest type %s (single-platform images only)", src.Name, mt)
		}
		raw, err := src.Image.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("seal %s: %w", src.Name, err)
		}
		sum := sha256.Sum256(raw)
		entries = append(entries, Image{Name: src.Name, Digest: "sha256:" + hex.EncodeToString(sum[:]), MediaType: string(mt), Size: int64(len(raw)), Source: src.Source})
	}

	master := make([]byte, keySize)
	h := &Header{Format: FormatV1, ArchiveID: cfg.archiveID, Created: cfg.now().UTC().Truncate(time.Second),
		Cipher: cipherName, KDF: kdfName, ChunkSize: cfg.chunkSize,
		Salt: make([]byte, saltSize), NoncePrefix: make([]byte, noncePrefixSize), Images: entries}
	for _, b := range [][]byte{master, h.Salt, h.NoncePrefix} {
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
	}
	dataKey, check, err := deriveKeys(master, h.Salt, h.ArchiveID)
	if err != nil {
		return nil, err
	}
	h.KeyCheck = check
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	raw, err := encodeHeader(h)
	if err != nil {
		return nil, err
	}
	shares, err := splitMaster(master, cfg.devices)
	if err != nil {
		return nil, err
	}

	cw := &countWriter{w: w}
	if _, err := cw.Write(raw); err != nil {
		return nil, fmt.Errorf("seal: writing header: %w", err)
	}
	aw, err := newChunkWriter(cw, dataKey, h.NoncePrefix, headerHash(raw), h.ChunkSize)
	if err != nil {
		return nil, err
	}
	var tw io.Writer = aw
	bar := registry.NewBar(cfg.progress, sealTotal(cfg.progress, images), "seal "+h.ArchiveID)
	if bar != nil {
		tw = io.MultiWriter(aw, bar)
	}
	err = writeLayoutTar(ctx, tw, images, entries)
	bar.Finish()
	if err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Sealed{Header: h, Shares: shares, Bytes: cw.n}, nil
}

// SealFile seals into path through a temp file, so a failed seal never
// leaves a half archive under the final name. An existing path is refused
// with ErrArchiveExists, checked before any work and again, atomically (a
// hard link does not replace), at the end; WithReplace renames over it.
func SealFile(ctx context.Context, path string, images []Source, opts ...SealOption) (*Sealed, error) {
	var cfg sealConfig
	for _, o := range opts {
		o(&cfg)
	}
	if _, err := os.Lstat(path); err == nil && !cfg.replace {
		return nil, fmt.Errorf("%s: %w", path, ErrArchiveExists)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	res, err := Seal(ctx, f, images, opts...)
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return nil, err
	}
	if cfg.replace {
		return res, os.Rename(f.Name(), path)
	}
	if err := os.Link(f.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%s: %w", path, ErrArchiveExists)
		}
		return nil, err
	}
	return res, nil // the deferred Remove drops the temp name
}

// sealTotal estimates the bytes Seal will stream (configs and layers, as
// their manifests give them); 0 when no bar could be drawn anyway.
func sealTotal(w io.Writer, images []Source) int64 {
	if !registry.IsTerminal(w) {
		return 0
	}
	var n int64
	for _, src := range images {
		m, err := src.Image.Manifest()
		if err != nil {
			return 0
		}
		n += m.Config.Size
		for _, l := range m.Layers {
			n += l.Size
		}
	}
	return n
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// Names used inside the layout tar.
const (
	ociLayoutFile  = "oci-layout"
	indexFile      = "index.json"
	ociLayoutBytes = `{"imageLayoutVersion":"1.0.0"}`
	// AnnotationRefName is the OCI annotation that names an image in index.json.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

var epoch = time.Unix(0, 0)

func writeLayoutTar(ctx context.Context, w io.Writer, images []Source, entries []Image) error {
	tw := tar.NewWriter(w)
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := put(ociLayoutFile, []byte(ociLayoutBytes)); err != nil {
		return err
	}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for i, e := range entries {
		d, _ := v1.NewHash(e.Digest)
		idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: types.MediaType(e.MediaType), Size: e.Size, Digest: d,
			Annotations: map[string]string{AnnotationRefName: images[i].Name}})
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := put(indexFile, ib); err != nil {
		return err
	}
	// Order matters to unseal, which keeps only index.json and manifests in
	// memory: every manifest is written before the blobs it references.
	written := map[v1.Hash]bool{}
	for i, src := range images {
		raw, err := src.Image.RawManifest()
		if err != nil {
			return err
		}
		d, _ := v1.NewHash(entries[i].Digest)
		if !written[d] {
			written[d] = true
			if err := put(blobPath(d), raw); err != nil {
				return err
			}
		}
	}
	for _, src := range images {
		if err := ctx.Err(); err != nil {
			return err
		}
		cfgName, err := src.Image.ConfigName()
		if err != nil {
			return fmt.Errorf("seal %s: config: %w", src.Name, err)
		}
		if !written[cfgName] {
			cb, err := src.Image.RawConfigFile()
			if err != nil {
				return fmt.Errorf("seal %s: config: %w", src.Name, err)
			}
			if err := checkDigest(cfgName, cb); err != nil {
				return fmt.Errorf("seal %s: config: %w", src.Name, err)
			}
			written[cfgName] = true
			if err := put(blobPath(cfgName), cb); err != nil {
				return err
			}
		}
		m, err := src.Image.Manifest()
		if err != nil {
			return err
		}
		for _, ld := range m.Layers {
			if written[ld.Digest] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			l, err := src.Image.LayerByDigest(ld.Digest)
			if err != nil {
				return fmt.Errorf("seal %s: layer %s: %w", src.Name, ld.Digest, err)
			}
			if err := putLayer(tw, ld, l, src.Verified); err != nil {
				return fmt.Errorf("seal %s: layer %s: %w", src.Name, ld.Digest, err)
			}
			written[ld.Digest] = true
		}
	}
	return tw.Close()
}

// putLayer copies one layer into the tar. With verified, l's own stream
// has already checked the digest (its read fails on a mismatch), so the
// bytes are hashed only there.
func putLayer(tw *tar.Writer, d v1.Descriptor, l v1.Layer, verified bool) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := tw.WriteHeader(&tar.Header{Name: blobPath(d.Digest), Mode: 0o644, Size: d.Size, ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	var src io.Reader = io.LimitReader(rc, d.Size+1)
	var hw *verifier
	if !verified {
		hw = newVerifier(d.Digest, d.Size)
		src = io.TeeReader(src, hw)
	}
	// 1 MiB reads: one per AEAD chunk instead of 32 per chunk.
	n, err := io.CopyBuffer(tw, src, make([]byte, 1<<20))
	if err != nil {
		return err // a verifying source's digest failure surfaces here
	}
	if n != d.Size {
		return fmt.Errorf("%w: layer is %d bytes, manifest says %d", ErrTampered, n, d.Size)
	}
	if verified {
		// n == d.Size, one short of the limit: rc itself returned EOF, and a
		// verifying source checks its digest right there.
		return nil
	}
	return hw.check()
}

// verifier hashes what is written to it and compares with the expected digest.
type verifier struct {
	want v1.Hash
	size int64
	h    hash.Hash
	n    int64
}

func newVerifier(want v1.Hash, size int64) *verifier {
	return &verifier{want: want, size: size, h: sha256.New()}
}

func (v *verifier) Write(b []byte) (int, error) {
	v.n += int64(len(b))
	return v.h.Write(b)
}

func (v *verifier) check() error {
	if v.want.Algorithm != "sha256" {
		return fmt.Errorf("%w: unsupported digest algorithm %s", ErrMalformed, v.want.Algorithm)
	}
	if v.size >= 0 && v.n != v.size {
		return fmt.Errorf("%w: blob %s is %d bytes, want %d", ErrTampered, v.want, v.n, v.size)
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
		return fmt.Errorf("%w: blob %s has digest sha256:%s", ErrTampered, v.want, got)
	}
	return nil
}

func checkDigest(want v1.Hash, b []byte) error {
	v := newVerifier(want, int64(len(b)))
	_, _ = v.Write(b)
	return v.check()
}
