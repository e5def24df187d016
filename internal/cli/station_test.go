package cli

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/trainyard/trainyard/trainrun"
	"github.com/trainyard/trainyard/tuf/keys"
)

// TestStationCLIRoute drives the v1 workflow through the CLI only: keys, a
// trust directory, an approval, a train, one station stop with runc and the
// creator opening the result; and refusals as one error line.
func TestStationCLIRoute(t *testing.T) {
	if err := trainrun.NewRunc().Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run trains: %v", err)
		}
		t.Skip(err)
	}
	keys.ScryptN = 1 << 10
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	t.Setenv("TRAINYARD_TRUST_REPO", host+"/net/trust")
	t.Setenv("TRAINYARD_TRUST_ADMIN_DIR", p("admin"))
	t.Setenv("TRAINYARD_TRUST_KEY_PASSWORD", "pw")
	t.Setenv("TRAINYARD_NETWORK", host+"/net")

	code := p("code")
	os.MkdirAll(code, 0o755)
	if err := trainrun.BuildStatic(context.Background(), "../../demo/aggregate", filepath.Join(code, "aggregate")); err != nil {
		t.Fatal(err)
	}
	data := p("data")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "p.csv"), []byte("id,age,diagnosis\n1,30,flu\n2,50,flu\n"), 0o644)

	ok := func(args ...string) string {
		t.Helper()
		code, out, stderr := execRoot(t, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		return out
	}
	// alice's key is encrypted: every command that reads it opens it.
	t.Setenv("TRAINYARD_KEY_PASSWORD", "alice's passphrase")
	ok("keys", "generate", "--encrypt", p("alice"))
	if raw, _ := os.ReadFile(p("alice.key")); !strings.Contains(string(raw), "ENCRYPTED PRIVATE KEY") {
		t.Fatalf("keys generate --encrypt wrote:\n%s", raw)
	}
	ok("keys", "generate", p("st1"))
	ok("trust", "init")
	ok("trust", "add-user", "alice", "--key", p("alice.pub"))
	ok("trust", "add-station", "st1", "--key", p("st1.pub"))
	exec := []string{"--entrypoint", "/opt/pht_train/aggregate"}
	digest := strings.TrimSpace(ok(append([]string{"train", "digest", "--code", code}, exec...)...))
	root := "--trust-root=" + p("admin") + "/metadata/root.json"

	// Not approved yet: creating the train is refused with one line.
	c, _, stderr := execRoot(t, "", append([]string{"train", "create", "--code", code, "--route", "st1", "--creator", "alice",
		"--key", p("alice.key"), "--trust-dir", p("alice-trust"), root}, exec...)...)
	if c != 1 || !strings.Contains(stderr, "not approved") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("unapproved create: exit %d, %q", c, stderr)
	}

	ok("trust", "approve-train", "--digest", digest, "--user", "alice", "--key", p("alice.key"))
	show := ok("trust", "show", "--trust-dir", p("show-trust"), root)
	for _, want := range []string{"station  st1", "user     alice", "approval " + digest + " by alice"} {
		if !strings.Contains(show, want) {
			t.Fatalf("trust show lacks %q:\n%s", want, show)
		}
	}
	ok(append([]string{"train", "create", "--code", code, "--route", "st1", "--creator", "alice", "--id", "t1",
		"--key", p("alice.key"), "--trust-dir", p("alice-trust"), root}, exec...)...)
	// The same id again would replace the train in st1's inbox: refused.
	c, _, stderr = execRoot(t, "", append([]string{"train", "create", "--code", code, "--route", "st1", "--creator", "alice", "--id", "t1",
		"--key", p("alice.key"), "--trust-dir", p("alice-trust"), root}, exec...)...)
	if c != 1 || !strings.Contains(stderr, "already holds other content") || !strings.Contains(stderr, "--force") {
		t.Fatalf("create over an existing train: exit %d, %q", c, stderr)
	}
	// A definition without an entrypoint or with a missing code dir: usage errors before any work.
	for _, args := range [][]string{{"train", "digest", "--code", code}, {"train", "digest", "--code", p("nonexist")}} {
		if c, _, stderr := execRoot(t, "", args...); c != 2 || strings.Count(stderr, "\n") != 1 {
			t.Fatalf("%v: exit %d, %q", args, c, stderr)
		}
	}
	c, out, stderr := execRoot(t, "", "station", "run", host+"/net/stations/st1:t1", "--id", "st1", "--key", p("st1.key"), "--data", data,
		"--trust-dir", p("st1-trust"), "--train-logs", p("train-logs"), root)
	if c != 0 || !strings.Contains(out, "pushed to "+host+"/net/users/alice:t1") {
		t.Fatalf("station run: exit %d: %s %s", c, out, stderr)
	}
	// The train's own output is kept apart from the station's output.
	if strings.Contains(out+stderr, "patients so far") {
		t.Fatalf("train output on the station's streams: %q %q", out, stderr)
	}
	if logs := ok("station", "logs", "t1", "--train-logs", p("train-logs")); !strings.Contains(logs, "== t1.stop0.") || !strings.Contains(logs, "station st1: 2 patients so far") {
		t.Fatalf("station logs: %q", logs)
	}
	ok("train", "open", host+"/net/users/alice:t1", "--creator", "alice", "--key", p("alice.key"), "--out", p("results"),
		"--trust-dir", p("alice-trust"))
	t.Setenv("TRAINYARD_KEY_PASSWORD", "not alice's passphrase")
	if c, _, stderr := execRoot(t, "", "train", "open", host+"/net/users/alice:t1", "--creator", "alice", "--key", p("alice.key"),
		"--out", p("results2"), "--trust-dir", p("alice-trust")); c != 1 || !strings.Contains(stderr, "wrong passphrase") {
		t.Fatalf("open with a wrong passphrase: exit %d, %q", c, stderr)
	}
	t.Setenv("TRAINYARD_KEY_PASSWORD", "alice's passphrase")
	b, err := os.ReadFile(p("results/aggregate.json"))
	if err != nil || !strings.Contains(string(b), `"patients": 2`) {
		t.Fatalf("results: %s, %v", b, err)
	}

	// The wrong station key is refused, as one line, and nothing is pushed.
	c, _, stderr = execRoot(t, "", "station", "run", host+"/net/stations/st1:t1", "--id", "st1", "--key", p("alice.key"),
		"--data", data, "--trust-dir", p("st1-trust"))
	if c == 0 || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("wrong key: exit %d, %q", c, stderr)
	}
}
