package cli

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/trainyard/trainyard/seal"
)

// TestKeyserverMistypedDataRefused: commands that only read or change
// existing state refuse a --data without a database, in one line, and
// create nothing; the commands that create state still may.
func TestKeyserverMistypedDataRefused(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "trainyard-keysrever")
	for _, args := range [][]string{
		{"keyserver", "token", "list"},
		{"keyserver", "token", "revoke", "tok_123"},
		{"keyserver", "fragment", "list"},
		{"keyserver", "fragment", "revoke", "--archive", "ar-1"},
		{"keyserver", "audit"},
		{"keyserver", "audit", "--refusals"},
	} {
		refuse(t, nil, "no key-server database at "+typo, append(args, "--data", typo)...)
		if _, err := os.Stat(typo); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v created %s", args, typo)
		}
	}
	// token create makes the database; then list works on it.
	mustRun(t, nil, "keyserver", "token", "create", "--device", "site-a", "--data", typo)
	if out := mustRun(t, nil, "keyserver", "token", "list", "--data", typo); !strings.Contains(out, "site-a") {
		t.Fatalf("list: %s", out)
	}
}

// TestUnsealBadFragmentExits5: an empty or oversized fragment, from the key
// server or from --fragment-file, is a key refusal (exit 5), not exit 1.
func TestUnsealBadFragmentExits5(t *testing.T) {
	dir := t.TempDir()
	img, err := random.Image(2000, 1)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "a.sealed")
	res, err := seal.SealFile(context.Background(), archive, []seal.Source{{Name: "pht/train:1", Image: img}}, seal.WithArchiveID("ar-frag"))
	if err != nil {
		t.Fatal(err)
	}
	dk := filepath.Join(dir, "dk.json")
	if err := seal.WriteDeviceKeyFile(dk, res.Header.ArchiveID, res.Shares[0]); err != nil {
		t.Fatal(err)
	}
	var body []byte
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(body)
	}))
	defer ks.Close()
	layout := "oci:" + filepath.Join(dir, "layout")
	for _, tc := range []struct {
		what string
		body []byte
	}{{"empty", nil}, {"oversized", make([]byte, 5000)}} {
		body = tc.body
		code, _, stderr := runCLI(t, nil, "unseal", archive, "--keyserver", ks.URL, "--token", "tyks_x", "--device-key", dk, "--to", layout)
		if code != 5 || !strings.Contains(stderr, "empty or oversized fragment") || strings.Count(stderr, "\n") != 1 {
			t.Fatalf("%s fragment from the key server: exit %d, %q", tc.what, code, stderr)
		}
		ff := filepath.Join(dir, tc.what+".fragment")
		if err := os.WriteFile(ff, tc.body, 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr = runCLI(t, nil, "unseal", archive, "--fragment-file", ff, "--device-key", dk, "--to", layout)
		if code != 5 || strings.Count(stderr, "\n") != 1 {
			t.Fatalf("%s --fragment-file: exit %d, %q", tc.what, code, stderr)
		}
	}
	// The real fragment still opens it (the test can tell the difference).
	ff := filepath.Join(dir, "good.fragment")
	if err := os.WriteFile(ff, res.Shares[0].Fragment, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "unseal", archive, "--fragment-file", ff, "--device-key", dk, "--to", layout)
}

// TestUnsealRegistryOutageExits1: a target registry that hangs is a network
// error (exit 1, "timeout"), not "image missing" (3) or "tampered" (4).
func TestUnsealRegistryOutageExits1(t *testing.T) {
	dir := t.TempDir()
	img, err := random.Image(2000, 1)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "a.sealed")
	res, err := seal.SealFile(context.Background(), archive, []seal.Source{{Name: "pht/train:1", Image: img}}, seal.WithArchiveID("ar-outage"))
	if err != nil {
		t.Fatal(err)
	}
	dk, ff := filepath.Join(dir, "dk.json"), filepath.Join(dir, "frag")
	if err := seal.WriteDeviceKeyFile(dk, res.Header.ArchiveID, res.Shares[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ff, res.Shares[0].Fragment, 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer hang.Close()
	defer close(stop)
	env := map[string]string{"TRAINYARD_HEADER_TIMEOUT": "300ms", "TRAINYARD_TLS_TIMEOUT": "300ms"}
	code, _, stderr := runCLI(t, env, "unseal", archive, "--fragment-file", ff, "--device-key", dk,
		"--to", "registry://"+strings.TrimPrefix(hang.URL, "http://"))
	if code != 1 || !strings.Contains(stderr, "timeout") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("hanging target registry: exit %d, %q", code, stderr)
	}
}
