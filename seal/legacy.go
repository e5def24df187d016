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
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
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
// PKCS#7 padding at the end. It holds back the last block until EOF.
type cbcReader struct {
	r    *bufio.Reader
	mode cipher.BlockMode
	in   []byte
	out  []byte // decrypted, not yet returned
	held []byte // last decrypted block, returned once we know it is not the last
	eof  bool
	err  error
}

func newCBCReader(r io.Reader, key []byte) (*cbcReader, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(br, iv); err != nil {
		return nil, fmt.Errorf("%w: azaion-v1 archive shorter than its IV", ErrMalformed)
	}
	return &cbcReader{r: br, mode: cipher.NewCBCDecrypter(block, iv), in: make([]byte, 64<<10)}, nil
}

func (c *cbcReader) fill() error {
	n, err := io.ReadFull(c.r, c.in)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		c.eof = true
	} else if err != nil {
		return err
	}
	if n%aes.BlockSize != 0 {
		return fmt.Errorf("%w: azaion-v1 ciphertext is not a whole number of blocks (truncated?)", ErrTampered)
	}
	buf := c.in[:n]
	c.mode.CryptBlocks(buf, buf)
	all := append(c.held, buf...)
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
		c.out, c.held = all[:len(all)-p], nil
		return nil
	}
	k := len(all) - aes.BlockSize
	c.out = append(c.out[:0], all[:k]...)
	c.held = append([]byte(nil), all[k:]...)
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
func UnsealLegacy(ctx context.Context, path string, fragment []byte, t LegacyTarget, opts ...UnsealOption) (*LegacyResult, error) {
	cfg := unsealConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	open := func() (io.ReadCloser, error) { return OpenLegacy(path, fragment) }
	res, err := verifyLegacy(ctx, open)
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
	if err := t.LoadDockerArchive(ctx, open, res.Images); err != nil {
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

func verifyLegacy(ctx context.Context, open func() (io.ReadCloser, error)) (*LegacyResult, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	sums := map[string]string{}  // file name -> sha256 of its bytes
	usums := map[string]string{} // file name -> sha256 of its gunzipped bytes (layers may be gzip)
	jsons := map[string][]byte{}
	var jsonTotal int
	var manifest []byte
	tr := tar.NewReader(rc)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, legacyErr("reading tar", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		keep, sum, usum, err := hashEntry(tr, hdr.Size)
		if err != nil {
			return nil, legacyErr("reading tar", err)
		}
		name := filepath.ToSlash(filepath.Clean(hdr.Name))
		sums[name], usums[name] = sum, usum
		if m := hexNameRe.FindStringSubmatch(name); m != nil && !strings.HasSuffix(name, "/layer.tar") && "sha256:"+m[1] != sum {
			return nil, fmt.Errorf("%w: %s does not match its name (%s)", ErrTampered, name, sum)
		}
		if name == "manifest.json" {
			manifest = keep
		} else if len(keep) > 0 && keep[0] == '{' && jsonTotal+len(keep) <= 32<<20 {
			jsons[name] = keep
			jsonTotal += len(keep)
		}
	}
	if _, err := io.Copy(io.Discard, rc); err != nil { // padding check at the very end
		return nil, legacyErr("reading archive", err)
	}
	if manifest == nil {
		return nil, fmt.Errorf("%w: azaion-v1 archive has no manifest.json (not a docker-save tar)", ErrMalformed)
	}
	var entries []dockerSaveEntry
	if err := json.Unmarshal(manifest, &entries); err != nil || len(entries) == 0 {
		return nil, fmt.Errorf("%w: azaion-v1 manifest.json: %v", ErrMalformed, err)
	}
	res := &LegacyResult{IDs: map[string]string{}}
	for _, e := range entries {
		cfgName := filepath.ToSlash(filepath.Clean(e.Config))
		cb, ok := jsons[cfgName]
		if !ok {
			return nil, fmt.Errorf("%w: config %s missing", ErrMalformed, e.Config)
		}
		var cf v1.ConfigFile
		if err := json.Unmarshal(cb, &cf); err != nil {
			return nil, fmt.Errorf("%w: config %s: %v", ErrMalformed, e.Config, err)
		}
		if len(cf.RootFS.DiffIDs) != len(e.Layers) {
			return nil, fmt.Errorf("%w: config %s lists %d layers, manifest.json %d", ErrTampered, e.Config, len(cf.RootFS.DiffIDs), len(e.Layers))
		}
		for i, l := range e.Layers {
			got, ok := usums[filepath.ToSlash(filepath.Clean(l))]
			if !ok {
				return nil, fmt.Errorf("%w: layer %s missing", ErrMalformed, l)
			}
			if got != cf.RootFS.DiffIDs[i].String() {
				return nil, fmt.Errorf("%w: layer %s does not match diff_id %s of its config", ErrTampered, l, cf.RootFS.DiffIDs[i])
			}
		}
		for _, tag := range e.RepoTags {
			t, err := name.NewTag(tag)
			if err != nil {
				return nil, fmt.Errorf("%w: RepoTag %q: %v", ErrMalformed, tag, err)
			}
			n, _ := NameFor(t)
			res.Images = append(res.Images, n)
			res.IDs[n] = sums[cfgName]
		}
	}
	return res, nil
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

// LoadDockerArchive implements LegacyTarget: each image is read with
// go-containerregistry's tarball package (which re-opens the decrypting
// stream for every file it needs, trading CPU for no plaintext on disk)
// and pushed.
func (t *RegistryTarget) LoadDockerArchive(ctx context.Context, open func() (io.ReadCloser, error), names []string) error {
	opener := tarball.Opener(open)
	for _, n := range names {
		src, err := name.NewTag(n)
		if err != nil {
			return err
		}
		img, err := legacyImage(opener, n)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		dst, err := t.ref(n)
		if err != nil {
			return err
		}
		if err := remote.Write(dst, img, t.opts(ctx)...); err != nil {
			return fmt.Errorf("push %s: %w", dst, err)
		}
	}
	return nil
}

// legacyImage finds an image in a docker-save tar by its load name, which
// may have lost Docker's implicit "library/" prefix or "docker.io/" host.
func legacyImage(opener tarball.Opener, n string) (v1.Image, error) {
	rc, err := opener()
	if err != nil {
		return nil, err
	}
	m, err := tarball.LoadManifest(opener)
	rc.Close()
	if err != nil {
		return nil, err
	}
	for _, e := range m {
		for _, rt := range e.RepoTags {
			t, err := name.NewTag(rt)
			if err != nil {
				continue
			}
			if got, _ := NameFor(t); got == n {
				return tarball.Image(opener, &t)
			}
		}
	}
	return nil, fmt.Errorf("image %s not in manifest.json", n)
}

// LoadDockerArchive implements LegacyTarget.
func (t *LayoutTarget) LoadDockerArchive(_ context.Context, open func() (io.ReadCloser, error), names []string) error {
	if err := t.Prepare(context.Background(), &Inventory{}); err != nil {
		return err
	}
	p, err := layout.FromPath(t.dir)
	if err != nil {
		if p, err = layout.Write(t.dir, emptyIndex()); err != nil {
			return err
		}
	}
	for _, n := range names {
		img, err := legacyImage(tarball.Opener(open), n)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if err := p.ReplaceImage(img, refNameMatcher(n), layout.WithAnnotations(map[string]string{AnnotationRefName: n})); err != nil {
			return err
		}
	}
	return nil
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

func emptyIndex() v1.ImageIndex { return empty.Index }

func refNameMatcher(n string) match.Matcher { return match.Annotation(AnnotationRefName, n) }
