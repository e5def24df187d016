package seal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func newRegistry(t testing.TB) string {
	t.Helper()
	s := testutil.Registry(t)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// testImages makes two images that share their base layers (so one blob
// goes to two repositories) and a third in another repository.
func testImages(t testing.TB) []Source {
	t.Helper()
	base, err := random.Image(3000, 2)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := random.Layer(5000, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	second, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	third, err := random.Image(70000, 1)
	if err != nil {
		t.Fatal(err)
	}
	return []Source{
		{Name: "azaion/annotations:1.2", Image: base},
		{Name: "azaion/flights:1.2", Image: second},
		{Name: "azaion/detections:1.2", Image: third},
	}
}

type sealedFixture struct {
	path   string
	sealed *Sealed
	images []Source
	keys   Keys
}

func sealFixture(t testing.TB, opts ...SealOption) *sealedFixture {
	t.Helper()
	imgs := testImages(t)
	path := filepath.Join(t.TempDir(), "images.sealed")
	opts = append([]SealOption{WithChunkSize(4096), WithArchiveID("test-archive")}, opts...)
	s, err := SealFile(context.Background(), path, imgs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &sealedFixture{path: path, sealed: s, images: imgs, keys: Keys{DeviceKey: s.Shares[0].DeviceKey, Fragment: s.Shares[0].Fragment}}
}

func digestOf(t testing.TB, img v1.Image) string {
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestRoundTripRegistryAndLayout(t *testing.T) {
	ctx := context.Background()
	fx := sealFixture(t)
	var expects []Expect
	for _, s := range fx.images {
		e, err := ParseExpect(s.Name+"@"+digestOf(t, s.Image), "")
		if err != nil {
			t.Fatal(err)
		}
		expects = append(expects, e)
	}

	host := newRegistry(t)
	res, err := Unseal(ctx, fx.path, fx.keys, NewRegistryTarget(host, nil), WithExpect(expects...))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 3 {
		t.Fatalf("got %d images", len(res.Images))
	}
	for _, s := range fx.images {
		ref, _ := name.ParseReference(host + "/" + s.Name)
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		if digestOf(t, img) != digestOf(t, s.Image) {
			t.Fatalf("%s: digest differs", s.Name)
		}
		// Every layer must be readable and intact in its repository.
		layers, _ := img.Layers()
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("%s: layer: %v", s.Name, err)
			}
			rc.Close()
		}
	}

	dir := t.TempDir()
	lt := NewLayoutTarget(dir)
	if _, err := Unseal(ctx, fx.path, fx.keys, lt, WithExpect(expects...)); err != nil {
		t.Fatal(err)
	}
	ids, err := lt.Resolve(ctx, "azaion/flights:1.2")
	if err != nil || len(ids) != 1 || ids[0] != digestOf(t, fx.images[1].Image) {
		t.Fatalf("layout resolve: %v %v", ids, err)
	}
	// Unsealing twice into the same layout replaces, not duplicates, entries.
	if _, err := Unseal(ctx, fx.path, fx.keys, lt); err != nil {
		t.Fatal(err)
	}
	if ids, _ := lt.Resolve(ctx, "azaion/flights:1.2"); len(ids) != 1 {
		t.Fatalf("layout holds %d entries for one name", len(ids))
	}
}

func TestExpectFailsLoudly(t *testing.T) {
	ctx := context.Background()
	fx := sealFixture(t)
	cases := []string{
		"azaion/gps-denied-onboard:1.2",                            // not in archive
		"azaion/annotations:1.3",                                   // other version
		"azaion/annotations:1.2@sha256:" + strings.Repeat("0", 64), // other digest
	}
	for _, c := range cases {
		e, err := ParseExpect(c, "")
		if err != nil {
			t.Fatal(err)
		}
		host := newRegistry(t)
		_, err = Unseal(ctx, fx.path, fx.keys, NewRegistryTarget(host, nil), WithExpect(e))
		if !errors.Is(err, ErrExpectation) {
			t.Fatalf("%s: got %v, want ErrExpectation", c, err)
		}
		assertEmptyRegistry(t, host)
	}
	// The seed's name list + version form.
	var es []Expect
	for _, n := range []string{"azaion/annotations", "azaion/flights", "azaion/detections"} {
		e, err := ParseExpect(n, "1.2")
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	if _, err := Unseal(ctx, fx.path, fx.keys, NewRegistryTarget(newRegistry(t), nil), WithExpect(es...)); err != nil {
		t.Fatal(err)
	}
}

func assertEmptyRegistry(t *testing.T, host string) {
	t.Helper()
	reg, _ := name.NewRegistry(host)
	repos, err := remote.Catalog(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range repos {
		repo, _ := name.NewRepository(host + "/" + r)
		tags, err := remote.List(repo)
		if err == nil && len(tags) > 0 {
			t.Fatalf("registry has tags %v in %s after a refused unseal", tags, r)
		}
	}
}

func assertEmptyLayout(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "index.json")); !os.IsNotExist(err) {
		t.Fatalf("layout has an index.json after a refused unseal (%v)", err)
	}
}

func writeCopy(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "x.sealed")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTamperRefused(t *testing.T) {
	ctx := context.Background()
	fx := sealFixture(t)
	orig, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	_, raw, err := ReadHeader(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	hl := len(raw)
	chunk := 4096 + tagSize
	body := len(orig) - hl
	positions := map[string]int{
		"magic":            2,
		"header length":    10,
		"header json":      hl / 2,
		"header last byte": hl - 1,
		"first chunk":      hl + 5,
		"first chunk tag":  hl + chunk - 1,
		"middle chunk":     hl + (body/chunk/2)*chunk + 100,
		"last chunk":       len(orig) - 20,
		"last byte":        len(orig) - 1,
	}
	for what, pos := range positions {
		b := bytes.Clone(orig)
		b[pos] ^= 0x01
		checkRefused(t, ctx, what, writeCopy(t, b), fx.keys, ErrTampered, ErrMalformed, ErrWrongKey)
	}
	truncs := map[string][]byte{
		"truncated mid chunk":       orig[:len(orig)-100],
		"truncated at a chunk edge": orig[:hl+chunk*(body/chunk-1)],
		"header only":               orig[:hl],
		"half header":               orig[:hl/2],
		"empty":                     {},
		"extra byte":                append(bytes.Clone(orig), 0),
		"extra chunk copy":          append(bytes.Clone(orig), orig[hl:hl+chunk]...),
	}
	for what, b := range truncs {
		checkRefused(t, ctx, what, writeCopy(t, b), fx.keys, ErrTampered, ErrMalformed)
	}
	// Swapping two chunks.
	b := bytes.Clone(orig)
	c1, c2 := b[hl:hl+chunk], bytes.Clone(b[hl+chunk:hl+2*chunk])
	copy(b[hl+chunk:], c1)
	copy(b[hl:], c2)
	checkRefused(t, ctx, "swapped chunks", writeCopy(t, b), fx.keys, ErrTampered)

	// Wrong fragment, wrong device key, another archive's key.
	bad := bytes.Clone(fx.keys.Fragment)
	bad[0] ^= 1
	checkRefused(t, ctx, "wrong fragment", fx.path, Keys{DeviceKey: fx.keys.DeviceKey, Fragment: bad}, ErrWrongKey)
	checkRefused(t, ctx, "short fragment", fx.path, Keys{DeviceKey: fx.keys.DeviceKey, Fragment: bad[:16]}, ErrWrongKey)
	other := sealFixture(t)
	checkRefused(t, ctx, "other archive's key", fx.path, other.keys, ErrWrongKey)
}

func checkRefused(t *testing.T, ctx context.Context, what, path string, keys Keys, want ...error) {
	t.Helper()
	host := newRegistry(t)
	_, err := Unseal(ctx, path, keys, NewRegistryTarget(host, nil))
	if err == nil {
		t.Fatalf("%s: unseal succeeded", what)
	}
	ok := false
	for _, w := range want {
		ok = ok || errors.Is(err, w)
	}
	if !ok {
		t.Fatalf("%s: unexpected error %v", what, err)
	}
	assertEmptyRegistry(t, host)
	dir := t.TempDir()
	if _, err := Unseal(ctx, path, keys, NewLayoutTarget(dir)); err == nil {
		t.Fatalf("%s: layout unseal succeeded", what)
	}
	assertEmptyLayout(t, dir)
	t.Logf("%s: %v", what, err)
}

func TestMultipleDevices(t *testing.T) {
	fx := sealFixture(t, WithDevices("site-a", "site-b"))
	if len(fx.sealed.Shares) != 2 {
		t.Fatalf("%d shares", len(fx.sealed.Shares))
	}
	a, b := fx.sealed.Shares[0], fx.sealed.Shares[1]
	if bytes.Equal(a.DeviceKey, b.DeviceKey) || bytes.Equal(a.Fragment, b.Fragment) {
		t.Fatal("devices share key material")
	}
	for _, s := range fx.sealed.Shares {
		if _, err := Unseal(context.Background(), fx.path, Keys{DeviceKey: s.DeviceKey, Fragment: s.Fragment}, NewLayoutTarget(t.TempDir())); err != nil {
			t.Fatalf("%s: %v", s.Device, err)
		}
	}
	// Mixing one device's key with another's fragment fails.
	_, err := Unseal(context.Background(), fx.path, Keys{DeviceKey: a.DeviceKey, Fragment: b.Fragment}, NewLayoutTarget(t.TempDir()))
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("mixed shares: %v", err)
	}
}

func TestDeviceKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k.json")
	s := Share{Device: "d1", DeviceKey: bytes.Repeat([]byte{7}, 32)}
	if err := WriteDeviceKeyFile(p, "a1", s); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	f, err := ReadDeviceKeyFile(p)
	if err != nil || f.ArchiveID != "a1" || !bytes.Equal(f.Key, s.DeviceKey) {
		t.Fatalf("%+v %v", f, err)
	}
}

func TestChunkStreamEdges(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	prefix := []byte{1, 2, 3, 4}
	var hh [32]byte
	for _, n := range []int{0, 1, 1023, 1024, 1025, 2048, 5000} {
		var buf bytes.Buffer
		w, _ := newChunkWriter(&buf, key, prefix, hh, 1024)
		data := bytes.Repeat([]byte{'x'}, n)
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, _ := newChunkReader(bytes.NewReader(buf.Bytes()), key, prefix, hh, 1024)
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("n=%d: %v (%d bytes)", n, err, len(got))
		}
		// Dropping the last chunk must be detected even on a chunk edge.
		if n > 1024 {
			cut := ((n - 1) / 1024) * (1024 + tagSize)
			r, _ := newChunkReader(bytes.NewReader(buf.Bytes()[:cut]), key, prefix, hh, 1024)
			if _, err := io.ReadAll(r); !errors.Is(err, ErrTampered) {
				t.Fatalf("n=%d truncated: %v", n, err)
			}
		}
	}
}

// recordTarget fails the test if anything reaches it.
type recordTarget struct{ calls []string }

func (r *recordTarget) Prepare(context.Context, *Inventory) error {
	r.calls = append(r.calls, "prepare")
	return nil
}
func (r *recordTarget) WriteBlob(_ context.Context, d v1.Descriptor, rd io.Reader) error {
	r.calls = append(r.calls, "blob "+d.Digest.String())
	_, err := io.Copy(io.Discard, rd)
	return err
}
func (r *recordTarget) Commit(context.Context) error {
	r.calls = append(r.calls, "commit")
	return nil
}
func (r *recordTarget) Abort(context.Context)                             {}
func (r *recordTarget) Resolve(context.Context, string) ([]string, error) { return nil, nil }

// TestTamperSweep flips one bit in the magic, the length, every 5th header
// JSON byte and every 61st body
// byte (so every chunk, every tag and the final chunk are hit) and checks
// that each archive is refused before the target sees anything at all.
func TestTamperSweep(t *testing.T) {
	fx := sealFixture(t)
	orig, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	_, raw, _ := ReadHeader(bytes.NewReader(orig))
	var positions []int
	for i := 0; i < len(raw); i++ {
		if i < 12 || i%5 == 0 || i == len(raw)-1 { // magic, length, then every 5th JSON byte
			positions = append(positions, i)
		}
	}
	for i := len(raw); i < len(orig); i += 61 {
		positions = append(positions, i)
	}
	positions = append(positions, len(orig)-1)
	p := filepath.Join(t.TempDir(), "t.sealed")
	for _, pos := range positions {
		b := bytes.Clone(orig)
		b[pos] ^= 0x80
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rt := &recordTarget{}
		_, err := Unseal(context.Background(), p, fx.keys, rt)
		if err == nil {
			t.Fatalf("flip at %d accepted", pos)
		}
		if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrWrongKey) {
			t.Fatalf("flip at %d: unexpected error %v", pos, err)
		}
		if len(rt.calls) != 0 {
			t.Fatalf("flip at %d: target saw %v", pos, rt.calls)
		}
	}
	t.Logf("%d single-bit flips refused, nothing reached the target", len(positions))
}
