package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/trainyard/trainyard/keyserver"
)

// makeAzaionArchive builds the seed's images.enc exactly as its producer
// must: docker-save tar, K = SHA-256(fragment), IV || AES-256-CBC-PKCS7, the
// encryption done by `openssl enc`.
func makeAzaionArchive(t *testing.T, imgs []Source, fragment []byte) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	refs := map[name.Reference]v1.Image{}
	for _, s := range imgs {
		tag, err := name.NewTag(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		refs[tag] = s.Image
	}
	dir := t.TempDir()
	var tarBuf bytes.Buffer
	if err := tarball.MultiRefWrite(refs, &tarBuf); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "images.tar")
	if err := os.WriteFile(plain, tarBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, 16)
	_, _ = rand.Read(iv)
	ct := filepath.Join(dir, "ct")
	cmd := exec.Command("openssl", "enc", "-aes-256-cbc", "-K", hex.EncodeToString(legacyKey(fragment)), "-iv", hex.EncodeToString(iv), "-in", plain, "-out", ct)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v: %s", err, out)
	}
	body, err := os.ReadFile(ct)
	if err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(dir, "images.enc")
	if err := os.WriteFile(enc, append(iv, body...), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(plain)
	return enc
}

func TestLegacyAzaionV1(t *testing.T) {
	ctx := context.Background()
	imgs := testImages(t)
	fragment := []byte("the key fragment the Azaion API returns")
	enc := makeAzaionArchive(t, imgs, fragment)

	// The seed's check: names at a version.
	var expects []Expect
	for _, n := range []string{"azaion/annotations", "azaion/flights", "azaion/detections"} {
		e, err := ParseExpect(n, "1.2")
		if err != nil {
			t.Fatal(err)
		}
		expects = append(expects, e)
	}
	host := newRegistry(t)
	res, err := UnsealLegacy(ctx, enc, fragment, NewRegistryTarget(host, nil), WithExpect(expects...))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 3 {
		t.Fatalf("images %v", res.Images)
	}
	for _, s := range imgs {
		ref, _ := name.ParseReference(host + "/" + s.Name)
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := s.Image.ConfigName()
		got, _ := img.ConfigName()
		if got != want {
			t.Fatalf("%s: config %s, want %s", s.Name, got, want)
		}
		if res.IDs[s.Name] != want.String() {
			t.Fatalf("%s: id %s", s.Name, res.IDs[s.Name])
		}
	}
	// An image ID pinned with --expect.
	cfg, _ := imgs[0].Image.ConfigName()
	e, _ := ParseExpect(imgs[0].Name+"@"+cfg.String(), "")
	dir := t.TempDir()
	if _, err := UnsealLegacy(ctx, enc, fragment, NewLayoutTarget(dir), WithExpect(e)); err != nil {
		t.Fatal(err)
	}
	if ids, err := NewLayoutTarget(dir).Resolve(ctx, imgs[0].Name); err != nil || len(ids) != 1 {
		t.Fatalf("layout: %v %v", ids, err)
	}
	bad, _ := ParseExpect(imgs[0].Name+"@sha256:"+hex.EncodeToString(make([]byte, 32)), "")
	if _, err := UnsealLegacy(ctx, enc, fragment, NewRegistryTarget(newRegistry(t), nil), WithExpect(bad)); !errors.Is(err, ErrExpectation) {
		t.Fatalf("pinned wrong id: %v", err)
	}

	// Refusals: wrong fragment, flipped byte in a layer, truncation.
	orig, _ := os.ReadFile(enc)
	cases := map[string]struct {
		data []byte
		frag []byte
	}{
		"wrong fragment":   {orig, []byte("another fragment")},
		"flipped mid-file": {flip(orig, len(orig)/2), fragment},
		"flipped near end": {flip(orig, len(orig)-40), fragment},
		"truncated":        {orig[:len(orig)-16], fragment},
		"truncated odd":    {orig[:len(orig)-5], fragment},
	}
	for what, c := range cases {
		p := writeCopy(t, c.data)
		host := newRegistry(t)
		_, err := UnsealLegacy(ctx, p, c.frag, NewRegistryTarget(host, nil))
		if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrWrongKey) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: %v", what, err)
		}
		assertEmptyRegistry(t, host)
		t.Logf("%s: %v", what, err)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

// TestLegacyThroughSeedEndpoint: the seed's flow against trainyard's key
// server: GET /binary-split/key-fragment with a bearer token, K =
// SHA-256(fragment), decrypt, load, check name:version.
func TestLegacyThroughSeedEndpoint(t *testing.T) {
	ctx := context.Background()
	imgs := testImages(t)[:2]
	fragment := []byte("0123456789abcdef0123456789abcdef-legacy")
	enc := makeAzaionArchive(t, imgs, fragment)

	st, err := keyserver.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddFragment("azaion-images-v1", "jetson-01", fragment); err != nil {
		t.Fatal(err)
	}
	tok, _, err := st.CreateToken("jetson-01", "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(keyserver.NewServer(st, keyserver.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))))
	defer srv.Close()

	// Exactly the seed's request: no archive, no device parameter.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/binary-split/key-fragment", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, fragment) {
		t.Fatalf("seed endpoint: %d %q", resp.StatusCode, got)
	}

	c, _ := keyserver.NewClient(srv.URL, tok)
	frag, err := c.LegacyFragment(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var es []Expect
	for _, n := range []string{"azaion/annotations", "azaion/flights"} {
		e, _ := ParseExpect(n, "1.2")
		es = append(es, e)
	}
	host := newRegistry(t)
	if _, err := UnsealLegacy(ctx, enc, frag, NewRegistryTarget(host, nil), WithExpect(es...)); err != nil {
		t.Fatal(err)
	}
	// The seed's check with a version the archive does not have fails loudly.
	e, _ := ParseExpect("azaion/annotations", "9.9")
	if _, err := UnsealLegacy(ctx, enc, frag, NewRegistryTarget(newRegistry(t), nil), WithExpect(e)); !errors.Is(err, ErrExpectation) {
		t.Fatalf("missing version: %v", err)
	}
}
