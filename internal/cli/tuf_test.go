package cli

import (
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/trainyard/trainyard/tuf/keys"
)

func TestTUFCommands(t *testing.T) {
	keys.ScryptN = 1 << 10
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	dir := t.TempDir()
	t.Setenv("TRAINYARD_TUF_HOST", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("TRAINYARD_TUF_INSECURE", "1")
	t.Setenv("TRAINYARD_TUF_REPOSITORIES_ROOT", filepath.Join(dir, "state"))
	for _, r := range []string{"ROOT", "TARGETS", "SNAPSHOT", "TIMESTAMP"} {
		t.Setenv("TRAINYARD_TUF_"+r+"_KEY_PASSWORD", "pw")
	}
	t.Setenv("TRAINYARD_TUF_TIMESTAMP_LIFETIME", "2h")
	file := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(file, []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	tuf := func(stdin string, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(append([]string{"tuf"}, args...), strings.NewReader(stdin), &out, &errb)
		return out.String(), errb.String(), code
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, errs, code := tuf("", args...)
		if code != 0 {
			t.Fatalf("tuf %v: exit %d: %s", args, code, errs)
		}
		return out
	}
	mustRun("create-root-key", "demo")
	mustRun("create-metadata-keys", "demo")
	mustRun("create-metadata", "demo")
	mustRun("push-target", "demo", "a.txt", file)
	mustRun("push-target", "demo", "b.txt", "@a.txt")
	mustRun("push-metadata", "demo")
	if got := mustRun("list-master-targets", "demo"); got != "a.txt\nb.txt\n" {
		t.Fatalf("list-master-targets: %q", got)
	}
	pubs, _ := filepath.Glob(filepath.Join(dir, "state", "*", "master", "keys", "root", "*.pub"))
	pub, err := os.ReadFile(pubs[0])
	if err != nil {
		t.Fatal(err)
	}
	out, errs, code := tuf(string(pub), "pull-metadata", "demo", "-")
	if code != 0 || out != "a.txt\nb.txt\n" {
		t.Fatalf("pull-metadata: %d %q %s", code, out, errs)
	}
	if got := mustRun("pull-target", "demo", "b.txt"); got != "payload" {
		t.Fatalf("pull-target: %q", got)
	}
	if got := mustRun("blob-sizes", "demo", "a.txt"); got != "7\n" {
		t.Fatalf("blob-sizes: %q", got)
	}
	mustRun("check-target", "demo", "a.txt", file)
	if _, _, code := tuf("", "check-target", "demo", "a.txt", filepath.Join(dir, "state", "missing")); code == 0 {
		t.Fatal("check-target accepted a missing file")
	}
	if got := mustRun("get-copy-expirations", "demo"); !strings.Contains(got, "timestamp: ") {
		t.Fatalf("expirations: %q", got)
	}
	mustRun("refresh-timestamp", "demo")
	mustRun("pull-metadata", "demo")
	if got := mustRun("list-repos"); got != "demo\n" {
		t.Fatalf("list-repos: %q", got)
	}
	// usage error and a target that does not exist
	if _, _, code := tuf("", "push-target", "demo"); code != 2 {
		t.Fatalf("usage error exit %d", code)
	}
	if _, errs, code := tuf("", "pull-target", "demo", "nope"); code != 1 || !strings.Contains(errs, "not found") {
		t.Fatalf("missing target: %d %s", code, errs)
	}
}
