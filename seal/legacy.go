package seal

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/trainyard/trainyard/registry"
)

// FormatAzaionV1 names the azaion seed's archive format: IV(16) ||
// AES-256-CBC(SHA-256(fragment), IV, PKCS7(docker-save tar)). It has no MAC:
// it is read only so that existing archives can still be loaded.
const FormatAzaionV1 = "azaion-v1"

// LegacyKey is the seed's key derivation: SHA-256 of the fragment bytes.
func LegacyKey(fragment []byte) []byte {
	k := sha256.Sum256(fragment)
	return k[:]
}

// cbcReader decrypts IV || AES-256-CBC ciphertext as a stream and removes
// PKCS#7 padding at the end. It reads 1 MiB at a time and decrypts it in
// place with one CryptBlocks call (Go's CBC decrypter costs the same per
// byte at any size, but large calls keep the per-call and copy overhead
// out of the loop), holding back the last block until EOF.
type cbcReader struct {
	r    io.Reader
	mode cipher.BlockMode
	// buf[:aes.BlockSize] takes the held-back block so that it and the
	// next chunk are contiguous; ciphertext is read into the rest.
	buf  []byte
	out  []byte // decrypted, not yet returned (a slice of buf)
	held bool   // buf[:aes.BlockSize] holds the last decrypted block
	eof  bool
	err  error
}

const cbcChunk = 1 << 20

func newCBCReader(r io.Reader, key []byte) (*cbcReader, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(r, iv); err != nil {
		return nil, fmt.Errorf("%w: azaion-v1 archive shorter than its IV", ErrMalformed)
	}
	return &cbcReader{r: r, mode: cipher.NewCBCDecrypter(block, iv), buf: make([]byte, aes.BlockSize+cbcChunk)}, nil
}

func (c *cbcReader) fill() error {
	n, err := io.ReadFull(c.r, c.buf[aes.BlockSize:])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		c.eof = true
	} else if err != nil {
		return err
	}
	if n%aes.BlockSize != 0 {
		return fmt.Errorf("%w: azaion-v1 ciphertext is not a whole number of blocks (truncated?)", ErrTampered)
	}
	ct := c.buf[aes.BlockSize : aes.BlockSize+n]
	c.mode.CryptBlocks(ct, ct)
	all := ct
	if c.held {
		all = c.buf[:aes.BlockSize+n]
	}
	if c.eof {
		if len(all) == 0 {
			return fmt.Errorf("%w: azaion-v1 archive has no data", ErrTampered)
		}
		p := int(all[len(all)-1])
		if p == 0 || p > aes.BlockSize || p > len(all) {
			return fmt.Errorf("%w: azaion-v1 padding invalid (wrong fragment or damaged archive)", ErrWrongKey)
		}
		for _, b := range all[len(all)-p:] {
			if int(b) != p {
				return fmt.Errorf("%w: azaion-v1 padding invalid (wrong fragment or damaged archive)", ErrWrongKey)
			}
		}
		c.out, c.held = all[:len(all)-p], false
		return nil
	}
	// n > 0 here (a full chunk was read), so all has at least one block.
	k := len(all) - aes.BlockSize
	c.out = all[:k]
	// The held block moves to the front only after out has been consumed:
	// fill is called when out is empty, so keep it at the end for now.
	c.held = true
	return nil
}

func (c *cbcReader) Read(b []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.eof {
			return 0, io.EOF
		}
		if c.held {
			copy(c.buf[:aes.BlockSize], c.buf[len(c.buf)-aes.BlockSize:])
		}
		if c.err = c.fill(); c.err != nil {
			return 0, c.err
		}
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	return n, nil
}

// OpenLegacy returns a stream of the plaintext docker-save tar of an
// azaion-v1 archive. The plaintext is NOT authenticated; use UnsealLegacy,
// which checks the tar's own hash chain before loading.
func OpenLegacy(path string, fragment []byte) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := newCBCReader(f, LegacyKey(fragment))
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}

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

type dockerSaveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

var hexNameRe = regexp.MustCompile(`(?:^|/)(?:sha256:)?([a-f0-9]{64})(?:\.json)?$`)

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
			rc, err := OpenLegacy(path, fragment)
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
	expect := cfg.expect
	if len(expect) == 0 {
		for _, n := range res.Images {
			expect = append(expect, Expect{Name: n, Digest: res.IDs[n]})
		}
	}
	for _, e := range expect {
		ids, err := t.Resolve(ctx, e.Name)
		if err != nil || len(ids) == 0 {
			return nil, fmt.Errorf("%w: %s not found after loading: %v", ErrExpectation, e, err)
		}
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

func verifyLegacy(ctx context.Context, open func() (io.ReadCloser, error)) (*LegacyResult, *legacyPlan, error) {
	rc, err := open()
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	sums := map[string]string{}  // file name -> sha256 of its bytes
	usums := map[string]string{} // file name -> sha256 of its gunzipped bytes (layers may be gzip)
	sizes := map[string]int64{}
	jsons := map[string][]byte{}
	var jsonTotal int
	var manifest []byte
	tr := tar.NewReader(rc)
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, legacyErr("reading tar", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		keep, sum, usum, err := hashEntry(tr, hdr.Size)
		if err != nil {
			return nil, nil, legacyErr("reading tar", err)
		}
		name := filepath.ToSlash(filepath.Clean(hdr.Name))
		sums[name], usums[name], sizes[name] = sum, usum, hdr.Size
		if m := hexNameRe.FindStringSubmatch(name); m != nil && !strings.HasSuffix(name, "/layer.tar") && "sha256:"+m[1] != sum {
			return nil, nil, fmt.Errorf("%w: %s does not match its name (%s)", ErrTampered, name, sum)
		}
		if name == "manifest.json" {
			manifest = keep
		} else if len(keep) > 0 && keep[0] == '{' && jsonTotal+len(keep) <= 32<<20 {
			jsons[name] = keep
			jsonTotal += len(keep)
		}
	}
	if _, err := io.Copy(io.Discard, rc); err != nil { // padding check at the very end
		return nil, nil, legacyErr("reading archive", err)
	}
	if manifest == nil {
		return nil, nil, fmt.Errorf("%w: azaion-v1 archive has no manifest.json (not a docker-save tar)", ErrMalformed)
	}
	var entries []dockerSaveEntry
	if err := json.Unmarshal(manifest, &entries); err != nil || len(entries) == 0 {
		return nil, nil, fmt.Errorf("%w: azaion-v1 manifest.json: %v", ErrMalformed, err)
	}
	res := &LegacyResult{IDs: map[string]string{}}
	plan := &legacyPlan{
		inv:   &Inventory{Blobs: map[v1.Hash]v1.Descriptor{}, users: map[v1.Hash][]int{}},
		files: map[string]v1.Descriptor{},
	}
	for _, e := range entries {
		cfgName := filepath.ToSlash(filepath.Clean(e.Config))
		cb, ok := jsons[cfgName]
		if !ok {
			return nil, nil, fmt.Errorf("%w: config %s missing", ErrMalformed, e.Config)
		}
		var cf v1.ConfigFile
		if err := json.Unmarshal(cb, &cf); err != nil {
			return nil, nil, fmt.Errorf("%w: config %s: %v", ErrMalformed, e.Config, err)
		}
		if len(cf.RootFS.DiffIDs) != len(e.Layers) {
			return nil, nil, fmt.Errorf("%w: config %s lists %d layers, manifest.json %d", ErrTampered, e.Config, len(cf.RootFS.DiffIDs), len(e.Layers))
		}
		cfgDesc, err := legacyBlob(cfgName, sums, sizes, types.DockerConfigJSON)
		if err != nil {
			return nil, nil, err
		}
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2, Config: cfgDesc}
		files := map[string]v1.Descriptor{cfgName: cfgDesc}
		for i, l := range e.Layers {
			ln := filepath.ToSlash(filepath.Clean(l))
			got, ok := usums[ln]
			if !ok {
				return nil, nil, fmt.Errorf("%w: layer %s missing", ErrMalformed, l)
			}
			if got != cf.RootFS.DiffIDs[i].String() {
				return nil, nil, fmt.Errorf("%w: layer %s does not match diff_id %s of its config", ErrTampered, l, cf.RootFS.DiffIDs[i])
			}
			// The layer keeps its bytes: uncompressed stays uncompressed.
			mt := types.DockerUncompressedLayer
			if got != sums[ln] {
				mt = types.DockerLayer
			}
			d, err := legacyBlob(ln, sums, sizes, mt)
			if err != nil {
				return nil, nil, err
			}
			m.Layers = append(m.Layers, d)
			files[ln] = d
		}
		mb, err := json.Marshal(m)
		if err != nil {
			return nil, nil, err
		}
		md := v1.Descriptor{MediaType: m.MediaType, Size: int64(len(mb)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sha256Sum(mb))}}
		for _, tag := range e.RepoTags {
			t, err := name.NewTag(tag)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: RepoTag %q: %v", ErrMalformed, tag, err)
			}
			n, _ := NameFor(t)
			res.Images = append(res.Images, n)
			res.IDs[n] = sums[cfgName]
			plan.add(n, mb, md, m, files)
		}
	}
	return res, plan, nil
}

// add records one image (a RepoTag) of the archive in the plan.
func (p *legacyPlan) add(n string, mb []byte, md v1.Descriptor, m v1.Manifest, files map[string]v1.Descriptor) {
	i := len(p.inv.Images)
	p.inv.Images = append(p.inv.Images, ArchiveImage{
		Image:    Image{Name: n, Digest: md.Digest.String(), MediaType: string(md.MediaType), Size: md.Size},
		Manifest: mb, Config: m.Config, Layers: m.Layers,
	})
	p.inv.Blobs[md.Digest] = md
	for fn, d := range files {
		p.files[fn] = d
		p.inv.Blobs[d.Digest] = d
		if !containsInt(p.inv.users[d.Digest], i) {
			p.inv.users[d.Digest] = append(p.inv.users[d.Digest], i)
		}
	}
}

// legacyBlob describes tar entry fn as a blob of media type mt.
func legacyBlob(fn string, sums map[string]string, sizes map[string]int64, mt types.MediaType) (v1.Descriptor, error) {
	h, err := v1.NewHash(sums[fn])
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("%w: %s: %v", ErrMalformed, fn, err)
	}
	return v1.Descriptor{MediaType: mt, Size: sizes[fn], Digest: h}, nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// hashEntry hashes one tar entry, and also its gunzipped content when it is
// gzip; entries up to 1 MiB are returned whole (configs, manifest.json).
func hashEntry(r io.Reader, size int64) (keep []byte, sum, usum string, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	raw := sha256.New()
	if size <= 1<<20 {
		keep = make([]byte, size)
		if _, err := io.ReadFull(br, keep); err != nil {
			return nil, "", "", err
		}
		raw.Write(keep)
		sum = "sha256:" + hex.EncodeToString(raw.Sum(nil))
		usum = sum
		if len(keep) > 2 && keep[0] == 0x1f && keep[1] == 0x8b {
			if u, err := gunzipSum(bytes.NewReader(keep)); err == nil {
				usum = u
			}
		}
		return keep, sum, usum, nil
	}
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		u, err := gunzipSum(io.TeeReader(br, raw))
		if err != nil {
			return nil, "", "", fmt.Errorf("%w: bad gzip layer: %v", ErrTampered, err)
		}
		if _, err := io.Copy(raw, br); err != nil {
			return nil, "", "", err
		}
		return nil, "sha256:" + hex.EncodeToString(raw.Sum(nil)), u, nil
	}
	if _, err := io.Copy(raw, br); err != nil {
		return nil, "", "", err
	}
	sum = "sha256:" + hex.EncodeToString(raw.Sum(nil))
	return nil, sum, sum, nil
}

func gunzipSum(r io.Reader) (string, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return "", err
	}
	zr.Multistream(false)
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func legacyErr(what string, err error) error {
	if errors.Is(err, ErrTampered) || errors.Is(err, ErrWrongKey) || errors.Is(err, ErrMalformed) {
		return fmt.Errorf("azaion-v1 %s: %w", what, err)
	}
	return fmt.Errorf("%w: azaion-v1 %s: %v (wrong fragment or damaged archive)", ErrMalformed, what, err)
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
