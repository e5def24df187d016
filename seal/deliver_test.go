package seal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/trainyard/trainyard/keyserver"
)

// TestSealAndDeliverFiles: without a store every device gets a device key
// file and a fragment file (both 0600) in a keys dir that is created; the
// two halves of each file pair open the archive; sealing again into the
// same keys dir is refused before anything is sealed.
func TestSealAndDeliverFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys", "new")
	archive := filepath.Join(dir, "a.sealed")
	res, err := SealAndDeliver(ctx, archive, testImages(t), Delivery{KeysDir: keys}, WithDevices("site-a", "site-b"), WithArchiveID("ar-files"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.ArchiveID != "ar-files" || len(res.Devices) != 2 || len(res.Shares) != 2 {
		t.Fatalf("delivered %+v", res)
	}
	for i, d := range res.Devices {
		if d.Device != res.Shares[i].Device || d.DeviceKeyFile != filepath.Join(keys, d.Device+".device-key.json") || d.FragmentFile != filepath.Join(keys, d.Device+".fragment") {
			t.Fatalf("device %d: %+v", i, d)
		}
		for _, p := range []string{d.DeviceKeyFile, d.FragmentFile} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v %v", p, fi, err)
			}
		}
		if b, _ := os.ReadFile(d.FragmentFile); !bytes.Equal(b, res.Shares[i].Fragment) {
			t.Fatalf("%s holds another fragment", d.FragmentFile)
		}
		layout := filepath.Join(dir, "layout-"+d.Device)
		if _, err := UnsealFrom(ctx, archive, KeySource{d.DeviceKeyFile, FragmentFile(d.FragmentFile)}, NewLayoutTarget(layout)); err != nil {
			t.Fatalf("%s: %v", d.Device, err)
		}
	}
	// The other device's fragment with this device's key: a wrong key.
	layout := filepath.Join(dir, "layout-mixed")
	if _, err := UnsealFrom(ctx, archive, KeySource{res.Devices[0].DeviceKeyFile, FragmentFile(res.Devices[1].FragmentFile)}, NewLayoutTarget(layout)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("mixed halves: %v", err)
	}
	assertEmptyLayout(t, layout)

	// Same keys dir again: refused before sealing, nothing overwritten.
	before, _ := os.ReadFile(res.Devices[0].DeviceKeyFile)
	other := filepath.Join(dir, "b.sealed")
	if _, err := SealAndDeliver(ctx, other, testImages(t), Delivery{KeysDir: keys}, WithDevices("site-a")); !errors.Is(err, ErrShareExists) {
		t.Fatalf("second seal into the keys dir: %v", err)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("an archive was sealed although its shares were refused (%v)", err)
	}
	if after, _ := os.ReadFile(res.Devices[0].DeviceKeyFile); !bytes.Equal(before, after) {
		t.Fatal("device key file overwritten")
	}
	// A device name that is no id never becomes a path.
	if _, err := SealAndDeliver(ctx, other, testImages(t), Delivery{KeysDir: keys}, WithDevices("../escape")); err == nil {
		t.Fatal("device ../escape accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "escape.device-key.json")); !os.IsNotExist(err) {
		t.Fatal("a share was written outside the keys dir")
	}
	// Default keys dir: beside the archive.
	res, err = SealAndDeliver(ctx, filepath.Join(dir, "c.sealed"), testImages(t), Delivery{})
	if err != nil || res.Devices[0].DeviceKeyFile != filepath.Join(dir, "default.device-key.json") {
		t.Fatalf("default keys dir: %+v %v", res, err)
	}
}

// countingSource counts requests, to show which refusals come before any.
type countingSource struct {
	FragmentSource
	n int
}

func (c *countingSource) Fragment(ctx context.Context, archive string) ([]byte, error) {
	c.n++
	return c.FragmentSource.Fragment(ctx, archive)
}

// TestDeliverToKeyServerUnsealFrom: the fragments go into a real key-server
// store (no fragment file anywhere), the server is started on it, and
// UnsealFrom fetches each device's fragment over HTTP. A wrong fragment, a
// refused token, a device key of another archive and a stopped server all
// load nothing, each with its own error.
func TestDeliverToKeyServerUnsealFrom(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keys, data := filepath.Join(dir, "keys"), filepath.Join(dir, "ks")
	archive := filepath.Join(dir, "a.sealed")
	st, err := keyserver.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	imgs := testImages(t)
	res, err := SealAndDeliver(ctx, archive, imgs, Delivery{KeysDir: keys, Store: st}, WithDevices("site-a", "site-b"), WithArchiveID("ar-ks"))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(keys, "*.fragment")); len(m) != 0 {
		t.Fatalf("fragment files written beside a store: %v", m)
	}
	for i, d := range res.Devices {
		f, err := st.Fragment("ar-ks", d.Device)
		if err != nil || d.FragmentFile != "" || !bytes.Equal(f.Data, res.Shares[i].Fragment) {
			t.Fatalf("%s in the store: %v %+v", d.Device, err, d)
		}
	}
	tokA, _, err := st.CreateToken("site-a", "", "")
	if err != nil {
		t.Fatal(err)
	}
	tokB, _, err := st.CreateToken("site-b", "", "")
	if err != nil {
		t.Fatal(err)
	}
	// A second archive, so a device key can be of the wrong one.
	res2, err := SealAndDeliver(ctx, filepath.Join(dir, "other.sealed"), imgs[:1], Delivery{KeysDir: filepath.Join(dir, "keys2"), Store: st}, WithDevices("site-a"), WithArchiveID("ar-other"))
	if err != nil {
		t.Fatal(err)
	}
	// The real key-server handler on the store the fragments went into.
	srv := httptest.NewServer(keyserver.NewServer(st, keyserver.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))))
	defer srv.Close()
	url := srv.URL
	client := func(tok string) FragmentSource {
		c, err := keyserver.NewClient(url, tok)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var es []Expect
	for _, s := range imgs {
		e, err := ParseExpect(s.Name+"@"+digestOf(t, s.Image), "")
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	dkA, dkB := res.Devices[0].DeviceKeyFile, res.Devices[1].DeviceKeyFile
	for _, tc := range []struct {
		dk  string
		tok string
	}{{dkA, tokA}, {dkB, tokB}} {
		layout := filepath.Join(dir, "ok-"+filepath.Base(tc.dk))
		got, err := UnsealFrom(ctx, archive, KeySource{tc.dk, client(tc.tok)}, NewLayoutTarget(layout), WithExpect(es...))
		if err != nil || len(got.Images) != len(imgs) {
			t.Fatalf("%s: %v", tc.dk, err)
		}
	}

	refused := func(what, dk string, src FragmentSource, want error, not ...error) {
		t.Helper()
		layout := filepath.Join(dir, "refused-"+what)
		_, err := UnsealFrom(ctx, archive, KeySource{dk, src}, NewLayoutTarget(layout))
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
		for _, n := range not {
			if errors.Is(err, n) {
				t.Fatalf("%s: %v also matches %v", what, err, n)
			}
		}
		assertEmptyLayout(t, layout)
	}
	// site-b's fragment (its token) with site-a's device key.
	refused("wrong-fragment", dkA, client(tokB), ErrWrongKey, keyserver.ErrUnavailable)
	refused("bad-token", dkA, client(keyserver.TokenPrefix+"guess"), keyserver.ErrUnauthorized, ErrWrongKey, keyserver.ErrUnavailable)
	// A device key of another archive is refused before any request.
	cs := &countingSource{FragmentSource: client(tokA)}
	refused("other-archive", res2.Devices[0].DeviceKeyFile, cs, ErrWrongKey)
	if cs.n != 0 {
		t.Fatalf("%d key-server requests for a device key of another archive", cs.n)
	}

	srv.Close()
	refused("server-down", dkA, client(tokA), keyserver.ErrUnavailable, ErrWrongKey, keyserver.ErrUnauthorized, keyserver.ErrForbidden, keyserver.ErrNotFound)
}

// TestFragmentFileBounds: an empty or oversized fragment file is a key
// refusal (ErrWrongKey), a missing one an I/O error, a good one its bytes.
func TestFragmentFileBounds(t *testing.T) {
	ctx := context.Background()
	// A file holds what the key server would hand out, no more.
	if MaxFragmentSize != keyserver.MaxFragmentSize {
		t.Fatalf("MaxFragmentSize %d, the key server's %d", MaxFragmentSize, keyserver.MaxFragmentSize)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		what string
		body []byte
	}{{"empty", nil}, {"oversized", make([]byte, MaxFragmentSize+1)}} {
		p := filepath.Join(dir, tc.what)
		if err := os.WriteFile(p, tc.body, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := FragmentFile(p).Fragment(ctx, "x"); !errors.Is(err, ErrBadFragment) || !errors.Is(err, ErrWrongKey) {
			t.Fatalf("%s: %v", tc.what, err)
		}
	}
	if _, err := FragmentFile(filepath.Join(dir, "missing")).LegacyFragment(ctx, ""); !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrWrongKey) {
		t.Fatalf("missing: %v", err)
	}
	p := filepath.Join(dir, "max")
	want := bytes.Repeat([]byte{7}, MaxFragmentSize)
	if err := os.WriteFile(p, want, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := FragmentFile(p).LegacyFragment(ctx, ""); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("max size: %v", err)
	}
}

// TestUnsealLegacyFrom: an azaion-v1 archive opened with the fragment the
// seed's key-server endpoint hands out, and refused with another one.
func TestUnsealLegacyFrom(t *testing.T) {
	ctx := context.Background()
	imgs := testImages(t)[:1]
	fragment := []byte("0123456789abcdef0123456789abcdef-legacy")
	enc := makeAzaionArchive(t, imgs, fragment)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	_ = os.WriteFile(good, fragment, 0o600)
	_ = os.WriteFile(bad, []byte("another fragment entirely, 32 bytes+"), 0o600)
	res, err := UnsealLegacyFrom(ctx, enc, FragmentFile(good), NewLayoutTarget(filepath.Join(dir, "ok")))
	if err != nil || len(res.Images) != 1 || res.Images[0] != imgs[0].Name {
		t.Fatalf("legacy: %+v %v", res, err)
	}
	layout := filepath.Join(dir, "refused")
	if _, err := UnsealLegacyFrom(ctx, enc, FragmentFile(bad), NewLayoutTarget(layout)); !errors.Is(err, ErrWrongKey) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("wrong legacy fragment: %v", err)
	}
	assertEmptyLayout(t, layout)
}
