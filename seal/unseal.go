package seal

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/internal/pipe"
	"github.com/trainyard/trainyard/registry"
)

// Keys are the two shares that open an archive.
type Keys struct {
	DeviceKey []byte
	Fragment  []byte
}

// ArchiveImage is one image of a verified archive.
type ArchiveImage struct {
	Image
	Manifest []byte
	Config   v1.Descriptor
	Layers   []v1.Descriptor
}

// Inventory is what the first (verification) pass learned: every image and
// blob in the archive, all digests checked and the whole stream authenticated.
type Inventory struct {
	Header *Header
	Images []ArchiveImage
	// Blobs holds every blob in the archive by digest (manifests included).
	Blobs map[v1.Hash]v1.Descriptor
	users map[v1.Hash][]int
}

// Users returns the indexes (into Images) of the images that reference blob h.
func (inv *Inventory) Users(h v1.Hash) []int { return inv.users[h] }

// IsManifest reports whether h is the digest of one of the image manifests.
func (inv *Inventory) IsManifest(h v1.Hash) bool {
	for _, im := range inv.Images {
		if im.Digest == h.String() {
			return true
		}
	}
	return false
}

// Target receives verified images. Unseal calls Prepare once the first pass
// has verified the whole archive, WriteBlob for each config and layer of the
// second pass (r returns an error instead of io.EOF if the blob does not
// match its digest: a target must not keep a blob whose read failed), and
// Commit, which makes images visible, only after the second pass too has
// authenticated to the last chunk. Abort is called on any failure after
// Prepare.
//
// RegistryTarget and LayoutTarget, whose blobs are invisible until Commit
// (untagged registry blobs; layout blobs not named by index.json, removed
// again by Abort), are loaded in one pass instead: Prepare once every
// manifest has been read, WriteBlob as each blob's chunks authenticate, and
// Commit after the final chunk. Other targets get the two passes.
type Target interface {
	Prepare(ctx context.Context, inv *Inventory) error
	WriteBlob(ctx context.Context, d v1.Descriptor, r io.Reader) error
	Commit(ctx context.Context) error
	Abort(ctx context.Context)
	// Resolve returns the digests the target holds under name (repo:tag):
	// the manifest digest, or for Docker the image ID (config digest).
	Resolve(ctx context.Context, name string) ([]string, error)
}

// Expect is one image that must be present after loading.
type Expect struct {
	Name   string // repo:tag, canonical (see NameFor)
	Digest string // optional manifest digest
}

func (e Expect) String() string {
	if e.Digest != "" {
		return e.Name + "@" + e.Digest
	}
	return e.Name
}

// ParseExpect parses "repo:tag@sha256:...", "repo:tag" or, with version set,
// a bare "repo" meaning repo:version (the seed's check_images_loaded).
func ParseExpect(s, version string) (Expect, error) {
	base, dg, _ := strings.Cut(s, "@")
	if dg != "" && !digestRe.MatchString(dg) {
		return Expect{}, fmt.Errorf("expect %q: bad digest %q", s, dg)
	}
	ref, err := name.NewTag(base)
	if err != nil {
		return Expect{}, fmt.Errorf("expect %q: %w", s, err)
	}
	if !hasTag(base) {
		if version == "" {
			return Expect{}, fmt.Errorf("expect %q: no tag and no version given", s)
		}
		if ref, err = name.NewTag(base + ":" + version); err != nil {
			return Expect{}, fmt.Errorf("expect %q: %w", s, err)
		}
	}
	// Names carry no registry, so a host-qualified one-part name
	// ("host/busybox") must come out as the header names it matches are
	// compared: canonicalName, idempotent ("library/busybox").
	n, _ := NameFor(ref)
	return Expect{Name: canonicalName(n), Digest: dg}, nil
}

func hasTag(ref string) bool {
	i := strings.LastIndexByte(ref, ':')
	return i > strings.LastIndexByte(ref, '/')
}

// canonicalName normalises a header name the same way ParseExpect does.
func canonicalName(s string) string {
	t, err := name.NewTag(s)
	if err != nil {
		return s
	}
	n, _ := NameFor(t)
	return n
}

type unsealConfig struct {
	expect   []Expect
	progress io.Writer
}

// WithUnsealProgress draws a progress bar (bytes and rate) on w for each
// pass (one for a registry or layout target, verify then load for the
// others) when w is a terminal and the archive is at least
// registry.ProgressMin.
func WithUnsealProgress(w io.Writer) UnsealOption {
	return func(c *unsealConfig) { c.progress = w }
}

// UnsealOption configures Unseal.
type UnsealOption func(*unsealConfig)

// WithExpect requires images (checked in the header before anything is
// loaded, and in the target after).
func WithExpect(e ...Expect) UnsealOption {
	return func(c *unsealConfig) { c.expect = append(c.expect, e...) }
}

// Result describes a successful unseal.
type Result struct {
	Header *Header
	Images []ArchiveImage
	Blobs  int
}

// Inspect reads and validates the header of a sealed archive (no key needed;
// not authenticated until unsealed).
func Inspect(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, _, err := ReadHeader(f)
	return h, err
}

// Unseal opens a sealed archive file with keys and loads its images into t.
//
// Into a registry or an OCI layout it makes one streaming pass: every chunk
// is authenticated before its bytes are used, index.json and the manifests
// (which the archive holds before any other blob) are checked and kept in
// memory, and each config and layer is streamed into the target as it comes,
// checked against its digest before the target keeps it. Those blobs stay
// invisible (untagged; not in index.json) until the final chunk has
// authenticated and every blob was present: only then are the images
// published. On any failure nothing is published and a layout's new blobs
// are removed again.
//
// Into any other target (Docker) it makes two passes: the first verifies
// the whole archive and writes nothing anywhere; only then does the second
// decrypt again and stream blobs into the target, re-verifying everything,
// and the images become visible only after it too has authenticated the
// final chunk. No plaintext is ever written to disk except verified blobs
// inside an OCI layout target.
func Unseal(ctx context.Context, path string, keys Keys, t Target, opts ...UnsealOption) (*Result, error) {
	cfg := unsealConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, raw, err := ReadHeader(f)
	if err != nil {
		return nil, err
	}
	dataKey, err := openKeys(h, keys.DeviceKey, keys.Fragment)
	if err != nil {
		return nil, err
	}
	if err := precheck(h, cfg.expect); err != nil {
		return nil, err
	}
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size() - int64(len(raw))
	}
	switch t.(type) {
	case *RegistryTarget, *LayoutTarget:
		res, err := unsealOnePass(ctx, f, h, raw, dataKey, size, path, t, cfg)
		if !errors.Is(err, errTwoPasses) {
			return res, err
		}
		// Blobs before manifests: nothing was written; verify, then load.
		if _, err := f.Seek(int64(len(raw)), io.SeekStart); err != nil {
			return nil, err
		}
	}
	bar := registry.NewBar(cfg.progress, size, "unseal verify "+filepath.Base(path))
	cr, err := newChunkReader(bar.Reader(f), dataKey, h.NoncePrefix, headerHash(raw), h.ChunkSize)
	if err != nil {
		return nil, err
	}
	inv, err := scanLayout(ctx, cr, h, nil, nil)
	bar.Finish()
	if err != nil {
		return nil, err
	}

	// Second pass: the same bytes again, from the same open file.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	_, raw2, err := ReadHeader(f)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(raw, raw2) {
		return nil, fmt.Errorf("%w: header changed between passes", ErrTampered)
	}
	bar = registry.NewBar(cfg.progress, size, "unseal load "+filepath.Base(path))
	cr, err = newChunkReader(bar.Reader(f), dataKey, h.NoncePrefix, headerHash(raw), h.ChunkSize)
	if err != nil {
		return nil, err
	}
	if err := t.Prepare(ctx, inv); err != nil {
		return nil, fmt.Errorf("preparing target: %w", err)
	}
	_, err = scanLayout(ctx, cr, h, inv, t)
	bar.Finish()
	if err != nil {
		t.Abort(ctx)
		return nil, err
	}
	if err := t.Commit(ctx); err != nil {
		t.Abort(ctx)
		return nil, fmt.Errorf("loading images: %w", err)
	}
	if err := postcheck(ctx, t, inv.Images, cfg.expect); err != nil {
		return nil, err
	}
	return &Result{Header: h, Images: inv.Images, Blobs: len(inv.Blobs)}, nil
}

// errTwoPasses: the archive holds a config or layer before all manifests,
// so a single pass cannot know every blob's users; nothing was written.
var errTwoPasses = errors.New("seal: archive needs two passes")

// onePass is scanLayout's state when it verifies and loads in one pass.
type onePass struct {
	t        Target
	prepared bool
}

// unsealOnePass verifies and loads in one read of the chunk stream (f is
// positioned just after the header): blobs go to t as they authenticate,
// images are published by Commit only after the final chunk.
func unsealOnePass(ctx context.Context, f io.Reader, h *Header, raw, dataKey []byte, size int64, path string, t Target, cfg unsealConfig) (*Result, error) {
	bar := registry.NewBar(cfg.progress, size, "unseal "+filepath.Base(path))
	cr, err := newChunkReader(bar.Reader(f), dataKey, h.NoncePrefix, headerHash(raw), h.ChunkSize)
	if err != nil {
		return nil, err
	}
	// The next chunks are read and decrypted on a second goroutine while
	// this one hashes and stores the current blob (GCM beside SHA-256).
	// Only authenticated plaintext crosses; errors arrive in stream order.
	ra := pipe.NewReader(cr, 0, 0)
	one := &onePass{t: t}
	inv, err := scan(ctx, ra, h, nil, nil, one)
	ra.Close()
	bar.Finish()
	if err != nil {
		if one.prepared {
			t.Abort(ctx)
		}
		return nil, err
	}
	if !one.prepared {
		if err := t.Prepare(ctx, inv); err != nil {
			return nil, fmt.Errorf("preparing target: %w", err)
		}
	}
	if err := t.Commit(ctx); err != nil {
		t.Abort(ctx)
		return nil, fmt.Errorf("loading images: %w", err)
	}
	if err := postcheck(ctx, t, inv.Images, cfg.expect); err != nil {
		return nil, err
	}
	return &Result{Header: h, Images: inv.Images, Blobs: len(inv.Blobs)}, nil
}

// precheck fails before anything is loaded if an expected image is not in
// the (authenticated on first chunk) header.
func precheck(h *Header, expect []Expect) error {
	for _, e := range expect {
		found := false
		for _, im := range h.Images {
			if canonicalName(im.Name) == e.Name {
				found = true
				if e.Digest != "" && e.Digest != im.Digest {
					return fmt.Errorf("%w: %s: archive holds %s", ErrExpectation, e, im.Digest)
				}
			}
		}
		if !found {
			return fmt.Errorf("%w: %s is not in archive %s", ErrExpectation, e, h.ArchiveID)
		}
	}
	return nil
}

// postcheck asks the target for every expected image (all images when none
// were named) and compares digests.
func postcheck(ctx context.Context, t Target, images []ArchiveImage, expect []Expect) error {
	if len(expect) == 0 {
		for _, im := range images {
			expect = append(expect, Expect{Name: canonicalName(im.Name), Digest: im.Digest})
		}
	}
	for _, e := range expect {
		// Resolve answers "not there" with no ids; an error is the target
		// failing (registry down, engine gone), not a missing image.
		ids, err := t.Resolve(ctx, e.Name)
		if err != nil {
			return fmt.Errorf("checking %s after loading: %w", e, err)
		}
		if len(ids) == 0 {
			return fmt.Errorf("%w: %s not found after loading", ErrExpectation, e)
		}
		if e.Digest == "" {
			continue
		}
		if !matchDigest(ids, e.Digest, images) {
			return fmt.Errorf("%w: %s: target holds %s", ErrExpectation, e, strings.Join(ids, ","))
		}
	}
	return nil
}

// matchDigest accepts the manifest digest itself or, for a Docker engine
// that names images by config digest, the config of that manifest; and for
// an azaion-v1 expectation, which is an image ID (config digest), the
// manifest made for that config. (A trainyard-sealed-v1 expectation of a
// config digest never gets here: precheck compares it with the header's
// manifest digests.)
func matchDigest(ids []string, want string, images []ArchiveImage) bool {
	for _, id := range ids {
		if id == want {
			return true
		}
		for _, im := range images {
			cfg := im.Config.Digest.String()
			if (im.Digest == want && cfg == id) || (cfg == want && im.Digest == id) {
				return true
			}
		}
	}
	return false
}

var blobNameRe = regexp.MustCompile(`^blobs/sha256/([a-f0-9]{64})$`)

const maxManifestSize = 4 << 20

// scanLayout walks the decrypted layout tar. With inv == nil it is the
// verification pass and builds the inventory; otherwise it is the load pass
// and streams blobs to t. With one set it is both: it builds the inventory,
// prepares one.t once every manifest is in, and streams blobs to it. Either
// way every blob is checked against its name, and the stream is read to its
// authenticated end.
func scanLayout(ctx context.Context, r io.Reader, h *Header, inv *Inventory, t Target) (*Inventory, error) {
	return scan(ctx, r, h, inv, t, nil)
}

func scan(ctx context.Context, r io.Reader, h *Header, inv *Inventory, t Target, one *onePass) (*Inventory, error) {
	first := inv == nil
	if first {
		inv = &Inventory{Header: h, Blobs: map[v1.Hash]v1.Descriptor{}, users: map[v1.Hash][]int{}}
	}
	// expected: blobs that may still come, from index.json and manifests.
	expected := map[v1.Hash]v1.Descriptor{}
	seen := map[v1.Hash]bool{}
	manifestIdx := map[v1.Hash][]int{}
	tr := tar.NewReader(r)
	step := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, wrapStreamErr("reading archive tar", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: tar entry %q is not a regular file", ErrMalformed, hdr.Name)
		}
		switch {
		case hdr.Name == ociLayoutFile && step == 0:
			b, err := readSmall(tr, hdr.Size, 4096)
			if err != nil {
				return nil, err
			}
			if !strings.Contains(string(b), `"imageLayoutVersion"`) {
				return nil, fmt.Errorf("%w: bad oci-layout file", ErrMalformed)
			}
			step = 1
		case hdr.Name == indexFile && step == 1:
			b, err := readSmall(tr, hdr.Size, maxManifestSize)
			if err != nil {
				return nil, err
			}
			idxDescs, err := checkIndex(b, h)
			if err != nil {
				return nil, err
			}
			for i, d := range idxDescs {
				expected[d.Digest] = d
				manifestIdx[d.Digest] = append(manifestIdx[d.Digest], i)
			}
			if first {
				inv.Images = make([]ArchiveImage, len(h.Images))
				for i := range h.Images {
					inv.Images[i].Image = h.Images[i]
				}
			}
			step = 2
		case step == 2 && blobNameRe.MatchString(hdr.Name):
			d, _ := v1.NewHash("sha256:" + blobNameRe.FindStringSubmatch(hdr.Name)[1])
			desc, ok := expected[d]
			if !ok || seen[d] {
				return nil, fmt.Errorf("%w: unexpected, duplicate or out-of-order blob %s", ErrMalformed, d)
			}
			if hdr.Size != desc.Size {
				return nil, fmt.Errorf("%w: blob %s is %d bytes, manifest says %d", ErrTampered, d, hdr.Size, desc.Size)
			}
			seen[d] = true
			if idxs, isManifest := manifestIdx[d]; isManifest {
				b, err := readSmall(tr, hdr.Size, maxManifestSize)
				if err != nil {
					return nil, err
				}
				if err := checkDigest(d, b); err != nil {
					return nil, err
				}
				m, err := v1.ParseManifest(bytes.NewReader(b))
				if err != nil {
					return nil, fmt.Errorf("%w: manifest %s: %w", ErrMalformed, d, err)
				}
				for _, c := range append([]v1.Descriptor{m.Config}, m.Layers...) {
					if c.Size < 0 || c.Digest.Algorithm != "sha256" {
						return nil, fmt.Errorf("%w: manifest %s references a bad descriptor", ErrMalformed, d)
					}
					if prev, dup := expected[c.Digest]; dup && prev.Size != c.Size {
						return nil, fmt.Errorf("%w: blob %s listed with two sizes", ErrMalformed, c.Digest)
					}
					if !seen[c.Digest] {
						expected[c.Digest] = c
					}
				}
				if first {
					for _, i := range idxs {
						im := &inv.Images[i]
						im.Manifest, im.Config, im.Layers = b, m.Config, m.Layers
						for _, c := range append([]v1.Descriptor{m.Config}, m.Layers...) {
							if !containsInt(inv.users[c.Digest], i) {
								inv.users[c.Digest] = append(inv.users[c.Digest], i)
							}
						}
					}
					inv.Blobs[d] = desc
				}
				continue
			}
			if first && one != nil {
				inv.Blobs[d] = desc
				if !one.prepared {
					for md := range manifestIdx {
						if !seen[md] {
							return nil, errTwoPasses
						}
					}
					if err := one.t.Prepare(ctx, inv); err != nil {
						return nil, fmt.Errorf("preparing target: %w", err)
					}
					one.prepared = true
				}
				if err := verifyStream(tr, d, hdr.Size, func(vr io.Reader) error { return one.t.WriteBlob(ctx, desc, vr) }); err != nil {
					return nil, err
				}
				continue
			}
			if first {
				inv.Blobs[d] = desc
				if err := verifyStream(tr, d, hdr.Size, nil); err != nil {
					return nil, err
				}
				continue
			}
			if _, known := inv.Blobs[d]; !known {
				return nil, fmt.Errorf("%w: blob %s not seen in the verification pass", ErrTampered, d)
			}
			if err := verifyStream(tr, d, hdr.Size, func(vr io.Reader) error { return t.WriteBlob(ctx, desc, vr) }); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: unexpected tar entry %q", ErrMalformed, hdr.Name)
		}
	}
	if step != 2 {
		return nil, fmt.Errorf("%w: archive has no index.json", ErrMalformed)
	}
	for d := range expected {
		if !seen[d] {
			return nil, fmt.Errorf("%w: blob %s is missing from the archive", ErrMalformed, d)
		}
	}
	// The tar ends before the stream does; read to the authenticated end so
	// that a truncated or extended archive is refused.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, wrapStreamErr("reading archive", err)
	}
	if first {
		for i := range inv.Images {
			if inv.Images[i].Manifest == nil {
				return nil, fmt.Errorf("%w: manifest of %s missing", ErrMalformed, inv.Images[i].Name)
			}
		}
	}
	return inv, nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// wrapStreamErr keeps sentinel errors from the chunk reader, passes reading
// failures of the archive file and cancellation through as they are (an I/O
// error is not evidence of tampering), and reports any other tar damage as
// malformed: the plaintext was authenticated, so a broken tar inside means
// the archive was made wrong.
func wrapStreamErr(what string, err error) error {
	var re *readError
	if errors.Is(err, ErrTampered) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrWrongKey) ||
		errors.As(err, &re) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
}

// readError marks a failure to read the archive file itself.
type readError struct{ err error }

func (e *readError) Error() string { return "reading sealed archive: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

func readSmall(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, fmt.Errorf("%w: entry of %d bytes exceeds %d", ErrMalformed, size, limit)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, wrapStreamErr("reading archive entry", err)
	}
	return b, nil
}

// checkIndex parses index.json and checks it lists exactly the header's images.
func checkIndex(b []byte, h *Header) ([]v1.Descriptor, error) {
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%w: index.json: %w", ErrMalformed, err)
	}
	if len(idx.Manifests) != len(h.Images) {
		return nil, fmt.Errorf("%w: index.json lists %d images, header %d", ErrTampered, len(idx.Manifests), len(h.Images))
	}
	for i, d := range idx.Manifests {
		im := h.Images[i]
		if d.Digest.String() != im.Digest || d.Size != im.Size || string(d.MediaType) != im.MediaType || d.Annotations[AnnotationRefName] != im.Name {
			return nil, fmt.Errorf("%w: index.json entry %d does not match the header (%s)", ErrTampered, i, im.Name)
		}
		if d.MediaType != types.OCIManifestSchema1 && d.MediaType != types.DockerManifestSchema2 {
			return nil, fmt.Errorf("%w: unsupported manifest type %s", ErrMalformed, d.MediaType)
		}
	}
	return idx.Manifests, nil
}

// verifyReader passes bytes through and, at the end, returns ErrTampered
// instead of io.EOF when the content does not match the digest.
type verifyReader struct {
	r io.Reader
	v *verifier
}

func (v *verifyReader) Read(b []byte) (int, error) {
	n, err := v.r.Read(b)
	_, _ = v.v.Write(b[:n])
	if err == io.EOF {
		if cerr := v.v.check(); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

// verifyStream feeds a tar entry through a verifier (and to use, if given),
// then drains what use left unread and checks the digest.
func verifyStream(r io.Reader, d v1.Hash, size int64, use func(io.Reader) error) error {
	vr := &verifyReader{r: r, v: newVerifier(d, size)}
	if use != nil {
		if err := use(vr); err != nil {
			return wrapUseErr(err)
		}
	}
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return wrapStreamErr("reading blob", err)
	}
	return vr.v.check()
}

func wrapUseErr(err error) error {
	if errors.Is(err, ErrTampered) || errors.Is(err, ErrMalformed) {
		return err
	}
	return fmt.Errorf("loading blob: %w", err)
}
