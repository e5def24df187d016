package trainrun

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/client"
)

func layerOf(t testing.TB, data []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// rawImage serves a manifest of our choosing over another image's blobs,
// as a registry holding a tampered manifest would.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// pushSwapped pushes img to a fresh in-process registry, then the blob of
// evil, then a copy of img's manifest whose layer 0 points at evil's blob
// (config and diff ids untouched): the attack of a registry writer on an
// approved train. It returns that copy as the registry serves it.
func pushSwapped(t *testing.T, img v1.Image, evil v1.Layer) v1.Image {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	ref, err := name.ParseReference(u.Host + "/trains/approved:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(ref.Context(), evil); err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	if m.Layers[0].Digest, err = evil.Digest(); err != nil {
		t.Fatal(err)
	}
	if m.Layers[0].Size, err = evil.Size(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	copyRef := ref.Context().Tag("copy")
	if err := remote.Put(copyRef, rawManifest{b: b, mt: m.MediaType}); err != nil {
		t.Fatal(err)
	}
	out, err := remote.Image(copyRef)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lyingLayer claims another layer's digests but yields other bytes.
type lyingLayer struct {
	v1.Layer          // the genuine layer: Digest, DiffID, Size, MediaType
	bytes    v1.Layer // what is actually read
}

func (l lyingLayer) Compressed() (io.ReadCloser, error)   { return l.bytes.Compressed() }
func (l lyingLayer) Uncompressed() (io.ReadCloser, error) { return l.bytes.Uncompressed() }

// lyingImage is img with layer 0 replaced by a lyingLayer.
type lyingImage struct {
	v1.Image
	layer0 v1.Layer
}

func (i lyingImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	ls = append([]v1.Layer(nil), ls...)
	ls[0] = lyingLayer{Layer: ls[0], bytes: i.layer0}
	return ls, nil
}

func (i lyingImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	ls, err := i.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		if d, _ := l.Digest(); d == h {
			return l, nil
		}
	}
	return i.Image.LayerByDigest(h)
}

func twoLayerImage(t *testing.T) (v1.Image, v1.Layer) {
	base := layerOf(t, tarOf(t, entry{name: "etc/base.txt", typ: tar.TypeReg, body: "approved"}))
	top := layerOf(t, tarOf(t, entry{name: "opt/top.txt", typ: tar.TypeReg, body: "top"}))
	img, err := mutate.AppendLayers(empty.Image, base, top)
	if err != nil {
		t.Fatal(err)
	}
	evil := layerOf(t, tarOf(t, entry{name: "etc/base.txt", typ: tar.TypeReg, body: "evil"}))
	return img, evil
}

func unpackImageIn(t *testing.T, img v1.Image, opt UnpackOptions) (string, error) {
	t.Helper()
	dir := t.TempDir()
	opt.NoChown = opt.NoChown || os.Geteuid() != 0
	return dir, UnpackImage(context.Background(), img, dir, opt)
}

func TestUnpackImageVerifiesLayers(t *testing.T) {
	img, evil := twoLayerImage(t)
	// The genuine image unpacks: the check below can tell the two apart.
	dir, err := unpackImageIn(t, img, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/base.txt")); string(b) != "approved" {
		t.Fatalf("genuine base = %q", b)
	}
	// A registry copy whose manifest points layer 0 at another blob.
	if _, err := unpackImageIn(t, pushSwapped(t, img, evil), UnpackOptions{}); !errors.Is(err, ErrLayerDigest) || !strings.Contains(err.Error(), "diff id") {
		t.Fatalf("swapped base blob: expected ErrLayerDigest on the diff id, got %v", err)
	}
	// A layer whose Digest and DiffID claim the genuine ones but whose bytes differ.
	if _, err := unpackImageIn(t, lyingImage{Image: img, layer0: evil}, UnpackOptions{}); !errors.Is(err, ErrLayerDigest) {
		t.Fatalf("lying layer: expected ErrLayerDigest, got %v", err)
	}
	// One diff id more than there are layers.
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, cf.RootFS.DiffIDs[0])
	extra, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unpackImageIn(t, extra, UnpackOptions{}); !errors.Is(err, ErrLayerDigest) {
		t.Fatalf("diff id count: expected ErrLayerDigest, got %v", err)
	}
}

// rawLayer serves fixed compressed bytes under digests it is told.
type rawLayer struct {
	v1.Layer
	data []byte
}

func (l rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}

func TestUnpackImageRefusesCorruptAndPaddedLayers(t *testing.T) {
	img, _ := twoLayerImage(t)
	ls, _ := img.Layers()
	c, _ := ls[0].Compressed()
	gz, _ := io.ReadAll(c)
	// Same length, one flipped byte inside the deflate stream.
	bad := append([]byte(nil), gz...)
	bad[len(bad)/2] ^= 0xff
	if _, err := unpackImageIn(t, lyingImage{Image: img, layer0: rawLayer{data: bad}}, UnpackOptions{}); !errors.Is(err, ErrLayerDigest) {
		t.Fatalf("corrupt gzip: expected ErrLayerDigest, got %v", err)
	}
	// A layer with megabytes after its end-of-archive marker (never read by a
	// tar reader, but part of what the diff id must cover) is bounded.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(tarOf(t, entry{name: "etc/base.txt", typ: tar.TypeReg, body: "approved"}))
	zw.Write(make([]byte, 2*maxTrailing))
	zw.Close()
	padded, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	pimg, err := mutate.AppendLayers(empty.Image, padded)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unpackImageIn(t, pimg, UnpackOptions{}); !errors.Is(err, ErrUnsafeImage) {
		t.Fatalf("trailing data: expected ErrUnsafeImage, got %v", err)
	}
}

func TestUnpackImageUncompressedLayer(t *testing.T) {
	// An uncompressed layer (digest == diff id) is read as it is.
	data := tarOf(t, entry{name: "a.txt", typ: tar.TypeReg, body: "plain"})
	d, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, plainLayer{data: data, d: d})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := unpackImageIn(t, img, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.txt")); string(b) != "plain" {
		t.Fatalf("got %q", b)
	}
	// The same bytes under a diff id they do not have.
	other := plainLayer{data: append(append([]byte(nil), data...), make([]byte, 1024)...), d: d}
	if _, err := unpackImageIn(t, lyingImage{Image: img, layer0: other}, UnpackOptions{}); !errors.Is(err, ErrLayerDigest) {
		t.Fatalf("padded plain layer: expected ErrLayerDigest, got %v", err)
	}
}

// plainLayer is an uncompressed layer: its blob is its content.
type plainLayer struct {
	data []byte
	d    v1.Hash
}

func (p plainLayer) Digest() (v1.Hash, error)            { return p.d, nil }
func (p plainLayer) DiffID() (v1.Hash, error)            { return p.d, nil }
func (p plainLayer) Size() (int64, error)                { return int64(len(p.data)), nil }
func (p plainLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }
func (p plainLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(p.data)), nil
}
func (p plainLayer) Uncompressed() (io.ReadCloser, error) { return p.Compressed() }

func FuzzVerifiedLayer(f *testing.F) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOf(f, entry{name: "a", typ: tar.TypeReg, body: "x"}))
	zw.Close()
	f.Add(gz.Bytes(), []byte("x"))
	f.Add(tarOf(f, entry{name: "a", typ: tar.TypeReg, body: "x"}), []byte{})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, blob, content []byte) {
		if len(blob) == 0 {
			return
		}
		// The blob is what it claims; the diff id is either the blob's own
		// hash or that of other content.
		d, _, _ := v1.SHA256(bytes.NewReader(blob))
		diffID, _, _ := v1.SHA256(bytes.NewReader(content))
		chk := layerCheck{digest: d, size: int64(len(blob)), diffID: diffID}
		r, err := openVerified(plainLayer{data: blob, d: d}, chk)
		if err != nil {
			return
		}
		defer r.Close()
		const limit = 4 << 20
		_, err = io.Copy(io.Discard, io.LimitReader(r, limit))
		if err == nil && r.un.n < limit && (!r.un.matches(diffID) || !r.comp.matches(d)) {
			t.Fatalf("accepted a layer that does not hash to its digests")
		}
	})
}

func TestUnpackImageWhiteoutOrder(t *testing.T) {
	img := imageOf(t,
		tarOf(t, entry{name: "d/old", typ: tar.TypeReg, body: "old"}, entry{name: "d/sub/x", typ: tar.TypeReg, body: "x"},
			entry{name: "d/keep/lower", typ: tar.TypeReg, body: "lower"},
			entry{name: "f/inner", typ: tar.TypeReg, body: "in"}),
		// The opaque marker after an entry of the same layer, and a file
		// where a lower layer had a non-empty directory.
		tarOf(t, entry{name: "d/new", typ: tar.TypeReg, body: "new"}, entry{name: "d/implicit/deep", typ: tar.TypeReg, body: "deep"},
			entry{name: "d/keep/upper", typ: tar.TypeReg, body: "upper"},
			entry{name: "d/.wh..wh..opq", typ: tar.TypeReg},
			entry{name: "f", typ: tar.TypeReg, body: "file now"}),
	)
	dir, err := unpackImageIn(t, img, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "d/new")); string(b) != "new" {
		t.Fatalf("d/new = %q", b)
	}
	// A directory this layer made implicitly (no entry of its own) is this layer's.
	if b, _ := os.ReadFile(filepath.Join(dir, "d/implicit/deep")); string(b) != "deep" {
		t.Fatalf("d/implicit/deep = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "d/keep/upper")); string(b) != "upper" {
		t.Fatalf("d/keep/upper = %q", b)
	}
	for _, p := range []string{"d/old", "d/sub", "d/.wh..wh..opq", "d/keep/lower"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s survived the opaque whiteout", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "file now" {
		t.Fatalf("f = %q", b)
	}
	// A whiteout cannot reach outside the root, nor its own directory.
	for _, name := range []string{"a/../../.wh.canary", "d/.wh.", "d/sub/.wh..."} {
		bad := imageOf(t, tarOf(t, entry{name: "d/sub/x", typ: tar.TypeReg, body: "x"}), tarOf(t, entry{name: name, typ: tar.TypeReg}))
		dir, err := unpackImageIn(t, bad, UnpackOptions{})
		if !errors.Is(err, ErrUnsafeImage) {
			t.Fatalf("whiteout %q: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "d/sub/x")); err != nil {
			t.Fatalf("whiteout %q removed more than its name: %v", name, err)
		}
	}
}

// baseProbeImage is the probe train on a base layer holding
// /etc/base.txt = "approved", and a look-alike base layer saying "evil".
func baseProbeImage(t *testing.T) (v1.Image, v1.Layer) {
	t.Helper()
	p := probeImage(t)
	pl, err := p.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := p.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	base := layerOf(t, tarOf(t, entry{name: "etc/", typ: tar.TypeDir, mode: 0o755}, entry{name: "etc/base.txt", typ: tar.TypeReg, body: "approved"}))
	img, err := mutate.AppendLayers(empty.Image, base, pl[0])
	if err == nil {
		img, err = mutate.Config(img, cf.Config)
	}
	if err != nil {
		t.Fatal(err)
	}
	evil := layerOf(t, tarOf(t, entry{name: "etc/", typ: tar.TypeDir, mode: 0o755}, entry{name: "etc/base.txt", typ: tar.TypeReg, body: "evil"}))
	return img, evil
}

// runImage runs the probe op in img and returns what it printed.
func runImage(t *testing.T, r Runner, img v1.Image, results string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := r.Run(ctx, img, RunSpec{ResultsDir: results, Stdout: &stdout, Stderr: &stderr,
		Args: append([]string{"/opt/pht_train/probe"}, args...)})
	if err != nil && stderr.Len() > 0 {
		t.Logf("train stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

func TestRuncRefusesSwappedBaseLayer(t *testing.T) {
	needRunc(t)
	state, bundles := t.TempDir(), t.TempDir()
	r := NewRunc(WithStateDir(state), WithBundleDir(bundles))
	img, evil := baseProbeImage(t)
	if out, err := runImage(t, r, img, t.TempDir(), "read", "/etc/base.txt"); err != nil || out != "approved" {
		t.Fatalf("genuine train: %q %v", out, err)
	}
	for what, bad := range map[string]v1.Image{
		"registry copy with layer 0 repointed": pushSwapped(t, img, evil),
		"layer claiming the genuine digests":   lyingImage{Image: img, layer0: evil},
	} {
		t.Run(what, func(t *testing.T) {
			results := t.TempDir()
			out, err := runImage(t, r, bad, results, "write", "/opt/pht_results/ran", "x")
			if !errors.Is(err, ErrLayerDigest) {
				t.Fatalf("expected ErrLayerDigest, got %v (stdout %q)", err, out)
			}
			if _, err := os.Stat(filepath.Join(results, "ran")); err == nil {
				t.Fatal("the train ran")
			}
			for _, d := range []string{state, bundles} {
				if entries, _ := os.ReadDir(d); len(entries) != 0 {
					t.Errorf("%s holds %d entries after the refusal", d, len(entries))
				}
			}
		})
	}
}

func TestDockerRefusesSwappedBaseLayer(t *testing.T) {
	d := needDocker(t)
	img, evil := baseProbeImage(t)
	if out, err := runImage(t, d, img, t.TempDir(), "read", "/etc/base.txt"); err != nil || out != "approved" {
		t.Fatalf("genuine train: %q %v", out, err)
	}
	for what, bad := range map[string]v1.Image{
		"registry copy with layer 0 repointed": pushSwapped(t, img, evil),
		"layer claiming the genuine digests":   lyingImage{Image: img, layer0: evil},
	} {
		t.Run(what, func(t *testing.T) {
			results := t.TempDir()
			out, err := runImage(t, d, bad, results, "write", "/opt/pht_results/ran", "x")
			if !errors.Is(err, ErrLayerDigest) {
				t.Fatalf("expected ErrLayerDigest, got %v (stdout %q)", err, out)
			}
			if _, err := os.Stat(filepath.Join(results, "ran")); err == nil {
				t.Fatal("the train ran")
			}
			cs, err := d.cli.ContainerList(context.Background(), client.ContainerListOptions{All: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(cs.Items) != 0 {
				t.Fatalf("the daemon holds %d containers after the refusal", len(cs.Items))
			}
		})
	}
}

// The engine itself refuses a layer that does not hash to its diff id, even
// when handed the tampered image without trainyard's own check.
func TestDockerEngineRefusesSwappedLayer(t *testing.T) {
	d := needDocker(t)
	img, evil := twoLayerImage(t)
	// What the daemon receives is exactly the registry's tampered copy (a
	// lying v1.Layer would already fail in ggcr's tarball writer on size).
	for what, bad := range map[string]v1.Image{"registry copy with layer 0 repointed": pushSwapped(t, img, evil)} {
		t.Run(what, func(t *testing.T) {
			ref, _ := name.NewTag("trainyard.local/tampered:" + randomHex(4))
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(tarball.Write(ref, bad, pw)) }()
			defer pr.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resp, err := d.cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp, 1<<20))
				resp.Close()
				if !bytes.Contains(body, []byte(`"error"`)) {
					t.Fatalf("the engine loaded a tampered image: %s", body)
				}
				t.Logf("engine refused: %s", bytes.TrimSpace(body))
			} else {
				t.Fatalf("the upload itself failed, the engine did not get to refuse: %v", err)
			}
			if _, err := d.cli.ImageInspect(ctx, ref.String()); err == nil {
				t.Fatal("the tampered image is in the engine")
			}
		})
	}
}

// failingLayer's blob breaks off with a read error, as a registry does.
type failingLayer struct{ plainLayer }

var errRegistryGone = errors.New("connection reset by registry")

func (f failingLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(bytes.NewReader(f.data[:len(f.data)/2]), iotestErr{errRegistryGone})), nil
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// A registry failure mid-layer is reported as what it is, not as tampering.
func TestUnpackImageReadErrorIsNotTampering(t *testing.T) {
	data := tarOf(t, entry{name: "a.txt", typ: tar.TypeReg, body: strings.Repeat("x", 4096)})
	d, _, _ := v1.SHA256(bytes.NewReader(data))
	img, err := mutate.AppendLayers(empty.Image, failingLayer{plainLayer{data: data, d: d}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = unpackImageIn(t, img, UnpackOptions{})
	if !errors.Is(err, errRegistryGone) || errors.Is(err, ErrLayerDigest) {
		t.Fatalf("expected the registry's error, not ErrLayerDigest: %v", err)
	}
}

// FuzzUnpackLayers applies a fuzzed layer, whiteouts and all, over a fixed
// one: never a panic, never a file outside the root.
func FuzzUnpackLayers(f *testing.F) {
	f.Add(tarOf(f, entry{name: ".wh.a", typ: tar.TypeReg}))
	f.Add(tarOf(f, entry{name: "d/.wh..wh..opq", typ: tar.TypeReg}, entry{name: "d/n", typ: tar.TypeReg, body: "n"}))
	f.Add(tarOf(f, entry{name: "../.wh.x", typ: tar.TypeReg}))
	f.Add(tarOf(f, entry{name: "d", typ: tar.TypeReg, body: "file over dir"}))
	base := tarOf(f, entry{name: "a", typ: tar.TypeReg, body: "a"}, entry{name: "d/x", typ: tar.TypeReg, body: "x"})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir, err := os.MkdirTemp("", "trainrun-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		root := filepath.Join(dir, "root")
		os.Mkdir(root, 0o755)
		d0, _, _ := v1.SHA256(bytes.NewReader(base))
		d1, _, _ := v1.SHA256(bytes.NewReader(data))
		img, err := mutate.AppendLayers(empty.Image, plainLayer{data: base, d: d0}, plainLayer{data: data, d: d1})
		if err != nil {
			return
		}
		UnpackImage(context.Background(), img, root, UnpackOptions{MaxBytes: 1 << 20, MaxEntries: 64, NoChown: true})
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("unpack wrote beside its root: %v", entries)
		}
	})
}
