package cli

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trainyard/trainyard/registry/server"
)

// TestLogin: a registry behind basic auth refuses anonymous reads with a
// hint to log in; login with a wrong password writes nothing; login with the
// right one stores the credentials in DOCKER_CONFIG, and reads then work.
func TestLogin(t *testing.T) {
	h, shutdown, err := server.NewHandler(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, _ := random.Image(256, 1)
	ref, _ := name.ParseReference(host+"/trains/t:1", name.Insecure)
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()

	cfgDir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfgDir)
	t.Setenv("HOME", t.TempDir()) // no ~/.docker/config.json of the machine's
	code, _, stderr := execRoot(t, "", "manifest", "digest", ref.String())
	if code != 1 || !strings.Contains(stderr, "trainyard login") {
		t.Fatalf("anonymous read: exit %d, %q", code, stderr)
	}

	code, _, stderr = execRoot(t, "wrong\n", "login", host, "-u", "alice", "--password-stdin")
	if code != 1 || !strings.Contains(stderr, "refused the credentials") {
		t.Fatalf("wrong password: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(cfgDir, "config.json")); !os.IsNotExist(err) {
		t.Fatalf("a refused login wrote the config: %v", err)
	}

	code, out, stderr := execRoot(t, "s3cret\n", "login", host, "-u", "alice", "--password-stdin")
	if code != 0 || !strings.Contains(out, "logged in to "+host) {
		t.Fatalf("login: exit %d, %q %q", code, out, stderr)
	}
	fi, err := os.Stat(filepath.Join(cfgDir, "config.json"))
	if err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("config.json: %v %v", fi, err)
	}
	code, out, stderr = execRoot(t, "", "manifest", "digest", ref.String())
	if code != 0 || strings.TrimSpace(out) != d.String() {
		t.Fatalf("read after login: exit %d, %q %q", code, out, stderr)
	}
	// -vv traces the HTTP traffic with the credentials redacted; without -v, nothing.
	secret := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	code, _, stderr = execRoot(t, "", "-vv", "manifest", "digest", ref.String())
	if code != 0 || !strings.Contains(stderr, "--> GET http://"+host+"/v2/") || strings.Contains(stderr, secret) || strings.Contains(stderr, "s3cret") {
		t.Fatalf("-vv trace: exit %d:\n%s", code, stderr)
	}
	if code, _, stderr = execRoot(t, "", "manifest", "digest", ref.String()); code != 0 || stderr != "" {
		t.Fatalf("without -v: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := execRoot(t, "", "login", host); code != 2 {
		t.Fatalf("login without -u: exit %d, want 2", code)
	}
}
