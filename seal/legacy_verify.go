package seal

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The verification pass of an azaion-v1 archive: what the unauthenticated
// plaintext must hash to before anything of it is loaded.

// dockerSaveEntry is one image of a docker-save manifest.json.
type dockerSaveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

var hexNameRe = regexp.MustCompile(`(?:^|/)(?:sha256:)?([a-f0-9]{64})(?:\.json)?$`)

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
		return nil, nil, fmt.Errorf("%w: azaion-v1 manifest.json: %w", ErrMalformed, err)
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
			return nil, nil, fmt.Errorf("%w: config %s: %w", ErrMalformed, e.Config, err)
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
				return nil, nil, fmt.Errorf("%w: RepoTag %q: %w", ErrMalformed, tag, err)
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
		return v1.Descriptor{}, fmt.Errorf("%w: %s: %w", ErrMalformed, fn, err)
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
			var re *readError
			if errors.As(err, &re) {
				return nil, "", "", err
			}
			return nil, "", "", fmt.Errorf("%w: bad gzip layer: %w", ErrTampered, err)
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

// legacyErr keeps the sentinels, passes failures to read the file and
// cancellation through (they say nothing about the archive), and calls
// any other damage malformed, as wrapStreamErr does for the sealed format.
func legacyErr(what string, err error) error {
	var re *readError
	if errors.Is(err, ErrTampered) || errors.Is(err, ErrWrongKey) || errors.Is(err, ErrMalformed) ||
		errors.As(err, &re) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("azaion-v1 %s: %w", what, err)
	}
	return fmt.Errorf("%w: azaion-v1 %s: %w (wrong fragment or damaged archive)", ErrMalformed, what, err)
}
