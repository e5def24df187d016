package seal

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// legacyPlain is a docker-save tar of imgs plus one image whose layer is
// stored uncompressed (as Docker 25+ saves them).
func legacyPlain(t *testing.T) ([]byte, []Source) {
	t.Helper()
	imgs := testImages(t)
	var lt bytes.Buffer
	tw := tar.NewWriter(&lt)
	body := make([]byte, 40000)
	_, _ = rand.Read(body)
	_ = tw.WriteHeader(&tar.Header{Name: "data.bin", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(body)
	_ = tw.Close()
	raw, err := mutate.AppendLayers(mustEmpty(t), static.NewLayer(lt.Bytes(), types.DockerUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	imgs = append(imgs, Source{Name: "azaion/raw:1.2", Image: raw})
	refs := map[name.Reference]v1.Image{}
	for _, s := range imgs {
		tag, _ := name.NewTag(s.Name)
		refs[tag] = s.Image
	}
	var b bytes.Buffer
	if err := tarball.MultiRefWrite(refs, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), imgs
}

func mustEmpty(t *testing.T) v1.Image {
	img, err := random.Image(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestLegacyOnePassKeepsBytes: the load pass reads the archive exactly once
// more (not once per file as tarball.Opener did), and every layer reaches
// the registry and the layout with its archive bytes and matching media type
// (gzip stays gzip, an uncompressed layer is not recompressed).
func TestLegacyOnePassKeepsBytes(t *testing.T) {
	ctx := context.Background()
	plain, imgs := legacyPlain(t)
	opens := 0
	open := func() (io.ReadCloser, error) {
		opens++
		return io.NopCloser(bytes.NewReader(plain)), nil
	}
	host := newRegistry(t)
	rt := NewRegistryTarget(host, nil)
	dir := t.TempDir()
	for _, tg := range []LegacyTarget{rt, NewLayoutTarget(dir)} {
		opens = 0
		if err := tg.LoadDockerArchive(ctx, open, nil); err != nil {
			t.Fatal(err)
		}
		if opens != 2 {
			t.Fatalf("%T: archive opened %d times, want 2 (verify + load)", tg, opens)
		}
	}
	for _, s := range imgs {
		ref, _ := name.ParseReference(host + "/" + s.Name)
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		wantCfg, _ := s.Image.ConfigName()
		if got, _ := img.ConfigName(); got != wantCfg {
			t.Fatalf("%s: config %s, want %s", s.Name, got, wantCfg)
		}
		m, _ := img.Manifest()
		wantLayers, _ := s.Image.Layers()
		if len(m.Layers) != len(wantLayers) {
			t.Fatalf("%s: %d layers, want %d", s.Name, len(m.Layers), len(wantLayers))
		}
		for i, l := range wantLayers {
			d, _ := l.Digest()
			diff, _ := l.DiffID()
			mt := types.DockerLayer
			if d == diff {
				mt = types.DockerUncompressedLayer
			}
			if m.Layers[i].Digest != d || m.Layers[i].MediaType != mt {
				t.Fatalf("%s layer %d: %s %s, want %s %s", s.Name, i, m.Layers[i].Digest, m.Layers[i].MediaType, d, mt)
			}
			rl, _ := img.LayerByDigest(d)
			rc, err := rl.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			_, err = io.Copy(h, rc)
			rc.Close()
			if err != nil || "sha256:"+hex.EncodeToString(h.Sum(nil)) != d.String() {
				t.Fatalf("%s layer %d: registry bytes differ: %v", s.Name, i, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", d.Hex)); err != nil {
				t.Fatalf("layout lacks layer %s: %v", d, err)
			}
		}
		if ids, err := NewLayoutTarget(dir).Resolve(ctx, s.Name); err != nil || len(ids) != 1 {
			t.Fatalf("layout %s: %v %v", s.Name, ids, err)
		}
	}
}

// TestLegacyChangedBetweenPasses: a file swapped after the verification pass
// (same names and sizes, one layer byte different) is refused in the load
// pass, and no tag or index.json entry appears.
func TestLegacyChangedBetweenPasses(t *testing.T) {
	ctx := context.Background()
	plain, imgs := legacyPlain(t)
	changed := flipLayerByte(t, plain)
	n := 0
	open := func() (io.ReadCloser, error) {
		n++
		if n == 1 {
			return io.NopCloser(bytes.NewReader(plain)), nil
		}
		return io.NopCloser(bytes.NewReader(changed)), nil
	}
	host := newRegistry(t)
	err := NewRegistryTarget(host, nil).LoadDockerArchive(ctx, open, nil)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "changed between passes") {
		t.Fatalf("registry: %v", err)
	}
	assertEmptyRegistry(t, host)
	n = 0
	dir := t.TempDir()
	err = NewLayoutTarget(dir).LoadDockerArchive(ctx, open, nil)
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("layout: %v", err)
	}
	for _, s := range imgs {
		if ids, _ := NewLayoutTarget(dir).Resolve(ctx, s.Name); len(ids) != 0 {
			t.Fatalf("layout shows %s after a refused load", s.Name)
		}
	}
}

// flipLayerByte changes one byte in the middle of the largest .tar.gz entry.
func flipLayerByte(t *testing.T, plain []byte) []byte {
	t.Helper()
	cr := &countReader{r: bytes.NewReader(plain)}
	tr := tar.NewReader(cr)
	var off, size int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(hdr.Name, ".tar.gz") && hdr.Size > size {
			off, size = cr.n, hdr.Size
		}
	}
	if size == 0 {
		t.Fatal("no layer in the test archive")
	}
	return flip(plain, int(off+size/2))
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// TestCBCReaderChunkBoundaries: the in-place 1 MiB decryption returns the
// exact plaintext for sizes around the chunk and block boundaries, whatever
// the caller's read sizes.
func TestCBCReaderChunkBoundaries(t *testing.T) {
	key := legacyKey([]byte("f"))
	block, _ := aes.NewCipher(key)
	for _, size := range []int{0, 1, 15, 16, 17, cbcChunk - 17, cbcChunk - 16, cbcChunk - 1, cbcChunk, cbcChunk + 1, 2*cbcChunk + 5, 3 * cbcChunk} {
		plain := make([]byte, size)
		_, _ = rand.Read(plain)
		p := aes.BlockSize - size%aes.BlockSize
		padded := append(bytes.Clone(plain), bytes.Repeat([]byte{byte(p)}, p)...)
		iv := make([]byte, aes.BlockSize)
		_, _ = rand.Read(iv)
		ct := make([]byte, len(padded))
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
		r, err := newCBCReader(bytes.NewReader(append(iv, ct...)), key)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		buf := make([]byte, 70001) // odd-sized reads
		if _, err := io.CopyBuffer(&got, struct{ io.Reader }{r}, buf); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(got.Bytes(), plain) {
			t.Fatalf("size %d: plaintext differs (got %d bytes)", size, got.Len())
		}
		// One wrong padding byte at the very end is refused.
		bad := bytes.Clone(padded)
		bad[len(bad)-1] = 0
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, bad)
		r, _ = newCBCReader(bytes.NewReader(append(iv, ct...)), key)
		if _, err := io.ReadAll(r); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("size %d, bad padding: %v", size, err)
		}
	}
}

// FuzzLegacyPlan: the azaion-v1 verification pass and the load plan it
// builds never panic on any plaintext, and a plan only names blobs whose
// digests the pass computed.
func FuzzLegacyPlan(f *testing.F) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("[]"))
	_ = tw.Close()
	f.Add(b.Bytes())
	f.Add([]byte{})
	if img, err := random.Image(200, 1); err == nil { // a whole docker-save tar
		tag, _ := name.NewTag("azaion/x:1")
		var ds bytes.Buffer
		if tarball.Write(tag, img, &ds) == nil {
			f.Add(ds.Bytes())
		}
	}
	f.Fuzz(func(t *testing.T, plain []byte) {
		open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(plain)), nil }
		_, plan, err := verifyLegacy(context.Background(), open)
		if err != nil {
			return
		}
		for fn, d := range plan.files {
			if _, ok := plan.inv.Blobs[d.Digest]; !ok {
				t.Fatalf("%s: blob %s not in the inventory", fn, d.Digest)
			}
		}
	})
}
