package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trainyard/trainyard/keyserver"
)

func sealCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// TestSealUnsealCLI drives the commands an operator types: seal from a
// registry, keyserver fragment add / token create on the data dir, serve,
// then unseal into another registry with --expect.
func TestSealUnsealCLI(t *testing.T) {
	newReg := func() string {
		s := testutil.Registry(t)
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	src, dst := newReg(), newReg()
	img, err := random.Image(4000, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(src + "/azaion/annotations:3.1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dg, _ := img.Digest()

	dir := t.TempDir()
	archive := filepath.Join(dir, "images.sealed")
	keys := filepath.Join(dir, "keys")
	data := filepath.Join(dir, "ks")
	out, stderr, code := sealCLI(t, "seal", "--images", ref.String(), "--out", archive, "--keys-dir", keys, "--devices", "site-a", "--archive-id", "ar-cli")
	if code != 0 {
		t.Fatalf("seal: %d %s", code, stderr)
	}
	if !strings.Contains(out, "azaion/annotations:3.1@"+dg.String()) {
		t.Fatalf("seal output: %s", out)
	}
	if out, stderr, code = sealCLI(t, "seal", "inspect", archive); code != 0 || !strings.Contains(out, `"archive_id": "ar-cli"`) {
		t.Fatalf("inspect: %d %s %s", code, out, stderr)
	}
	// Sealing over the archive would orphan its key shares: refused, archive unchanged.
	before, _ := os.ReadFile(archive)
	if _, stderr, code := sealCLI(t, "seal", "--images", ref.String(), "--out", archive, "--keys-dir", filepath.Join(dir, "keys2"), "--devices", "site-a"); code != 1 ||
		!strings.Contains(stderr, "already exists") || !strings.Contains(stderr, "--force") {
		t.Fatalf("seal over an archive: exit %d, %q", code, stderr)
	}
	if after, _ := os.ReadFile(archive); !bytes.Equal(before, after) {
		t.Fatal("the refused seal changed the archive")
	}
	if _, stderr, code := sealCLI(t, "seal", "--images", ref.String(), "--out", filepath.Join(dir, "other.sealed"), "--keys-dir", filepath.Join(dir, "keys3"), "--devices", "site-a", "--force"); code != 0 {
		t.Fatalf("seal --force to a new file: %s", stderr)
	}
	if _, stderr, code = sealCLI(t, "keyserver", "fragment", "add", "--data", data, "--archive", "ar-cli", "--device", "site-a", "--file", filepath.Join(keys, "site-a.fragment")); code != 0 {
		t.Fatalf("fragment add: %s", stderr)
	}
	tok, stderr, code := sealCLI(t, "keyserver", "token", "create", "--data", data, "--device", "site-a")
	if code != 0 {
		t.Fatalf("token create: %s", stderr)
	}
	tok = strings.TrimSpace(tok)

	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- keyserver.Serve(ctx, keyserver.Listen{Addr: "127.0.0.1:0", DataDir: data, Ready: func(a net.Addr) { addrc <- a }},
			keyserver.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	}()
	ks := "http://" + (<-addrc).String()

	// A wrong token and an expectation the archive cannot meet both fail.
	if _, stderr, code = sealCLI(t, "unseal", archive, "--keyserver", ks, "--token", "tyks_nope", "--device-key", filepath.Join(keys, "site-a.device-key.json"), "--to", "registry://"+dst); code != 5 || !strings.Contains(stderr, "401") {
		t.Fatalf("bad token: %d %s", code, stderr)
	}
	if _, stderr, code = sealCLI(t, "unseal", archive, "--keyserver", ks, "--token", tok, "--device-key", filepath.Join(keys, "site-a.device-key.json"), "--to", "registry://"+dst, "--expect", "azaion/flights", "--expect-version", "3.1"); code != 3 || !strings.Contains(stderr, "expected image missing") {
		t.Fatalf("missing expect: %d %s", code, stderr)
	}
	if _, err := remote.Head(sealMust(name.ParseReference(dst + "/azaion/annotations:3.1"))); err == nil {
		t.Fatal("image loaded by a refused unseal")
	}
	os.Setenv("TRAINYARD_KEYSERVER_TOKEN", tok)
	defer os.Unsetenv("TRAINYARD_KEYSERVER_TOKEN")
	out, stderr, code = sealCLI(t, "unseal", archive, "--keyserver", ks, "--device-key", filepath.Join(keys, "site-a.device-key.json"), "--to", "registry://"+dst, "--expect", "azaion/annotations:3.1@"+dg.String())
	if code != 0 {
		t.Fatalf("unseal: %d %s", code, stderr)
	}
	got, err := remote.Head(sealMust(name.ParseReference(dst + "/azaion/annotations:3.1")))
	if err != nil || got.Digest != dg {
		t.Fatalf("loaded: %v %v (%s)", got, err, out)
	}
	// A flipped byte: exit code 4, nothing new loaded.
	b, _ := os.ReadFile(archive)
	b[len(b)/2] ^= 1
	bad := filepath.Join(dir, "bad.sealed")
	_ = os.WriteFile(bad, b, 0o644)
	if _, stderr, code = sealCLI(t, "unseal", bad, "--keyserver", ks, "--device-key", filepath.Join(keys, "site-a.device-key.json"), "--to", "oci:"+filepath.Join(dir, "layout")); code != 4 || !strings.Contains(stderr, "authentication") {
		t.Fatalf("tampered: %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "layout", "index.json")); err == nil {
		t.Fatal("layout written by a refused unseal")
	}
	cancel()
	<-done
	if out, _, code = sealCLI(t, "keyserver", "audit", "--data", data); code != 0 || !strings.Contains(out, `"result":"ok"`) {
		t.Fatalf("audit: %s", out)
	}
}

func sealMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestSealIntoKeyserverData(t *testing.T) {
	s := testutil.Registry(t)
	defer s.Close()
	img, _ := random.Image(1000, 1)
	ref := sealMust(name.ParseReference(strings.TrimPrefix(s.URL, "http://") + "/azaion/flights:1"))
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keys, data := filepath.Join(dir, "keys"), filepath.Join(dir, "ks")
	if _, stderr, code := sealCLI(t, "seal", "--images", ref.String(), "--out", filepath.Join(dir, "a.sealed"), "--keys-dir", keys, "--devices", "a,b", "--keyserver-data", data, "--archive-id", "ar-x"); code != 0 {
		t.Fatalf("seal: %s", stderr)
	}
	out, _, code := sealCLI(t, "keyserver", "fragment", "list", "--data", data)
	if code != 0 || !strings.Contains(out, "ar-x     a") || !strings.Contains(out, "ar-x     b") {
		t.Fatalf("fragment list:\n%s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(keys, "*.fragment")); len(m) != 0 {
		t.Fatalf("fragment files written: %v", m)
	}
	// Sealing again into the same keys dir is refused before any work.
	if _, stderr, code := sealCLI(t, "seal", "--images", ref.String(), "--out", filepath.Join(dir, "b.sealed"), "--keys-dir", keys, "--devices", "a"); code == 0 || !strings.Contains(stderr, "already exists") {
		t.Fatalf("overwrite: %d %s", code, stderr)
	}
}
