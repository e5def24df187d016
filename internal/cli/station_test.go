package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainrun"
)

// cliNet is a v1 network driven through the CLI: an in-process registry,
// a trust directory with user alice (encrypted key) and station st1, the
// demo's aggregate code and a data directory.
type cliNet struct {
	host, dir, code, data, digest, root string
	exec                                []string
}

func (n *cliNet) p(s string) string { return filepath.Join(n.dir, s) }

func (n *cliNet) ok(t *testing.T, args ...string) string {
	t.Helper()
	code, out, stderr := execRoot(t, "", args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	return out
}

func newCLINet(t *testing.T) *cliNet {
	t.Helper()
	if err := trainrun.NewRunc().Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run trains: %v", err)
		}
		t.Skip(err)
	}
	kdftest.Fast()
	srv := testutil.Registry(t)
	t.Cleanup(srv.Close)
	n := &cliNet{host: strings.TrimPrefix(srv.URL, "http://"), dir: t.TempDir()}
	p, host := n.p, n.host
	t.Setenv("TRAINYARD_TRUST_REPO", host+"/net/trust")
	t.Setenv("TRAINYARD_TRUST_ADMIN_DIR", p("admin"))
	t.Setenv("TRAINYARD_TRUST_KEY_PASSWORD", "pw")
	t.Setenv("TRAINYARD_NETWORK", host+"/net")
	n.code = p("code")
	os.MkdirAll(n.code, 0o755)
	if err := train.BuildStatic(context.Background(), "../../demo/aggregate", filepath.Join(n.code, "aggregate")); err != nil {
		t.Fatal(err)
	}
	n.data = p("data")
	os.MkdirAll(n.data, 0o755)
	os.WriteFile(filepath.Join(n.data, "p.csv"), []byte("id,age,diagnosis\n1,30,flu\n2,50,flu\n"), 0o644)
	// alice's key is encrypted: every command that reads it opens it.
	t.Setenv("TRAINYARD_KEY_PASSWORD", "alice's passphrase")
	n.ok(t, "keys", "generate", "--encrypt", p("alice"))
	if raw, _ := os.ReadFile(p("alice.key")); !strings.Contains(string(raw), "ENCRYPTED PRIVATE KEY") {
		t.Fatalf("keys generate --encrypt wrote:\n%s", raw)
	}
	n.ok(t, "keys", "generate", p("st1"))
	n.ok(t, "trust", "init")
	n.ok(t, "trust", "add-user", "alice", "--key", p("alice.pub"))
	n.ok(t, "trust", "add-station", "st1", "--key", p("st1.pub"))
	n.exec = []string{"--entrypoint", "/opt/pht_train/aggregate"}
	n.digest = strings.TrimSpace(n.ok(t, append([]string{"train", "digest", "--code", n.code}, n.exec...)...))
	n.root = "--trust-root=" + p("admin") + "/metadata/root.json"
	return n
}

// create makes train id for st1 (the code must be approved).
func (n *cliNet) create(t *testing.T, id string) {
	t.Helper()
	n.ok(t, append([]string{"train", "create", "--code", n.code, "--route", "st1", "--creator", "alice", "--id", id,
		"--key", n.p("alice.key"), "--trust-dir", n.p("alice-trust"), n.root}, n.exec...)...)
}

// TestStationCLIRoute drives the v1 workflow through the CLI only: keys, a
// trust directory, an approval, a train, one station stop with runc and the
// creator opening the result; and refusals as one error line.
func TestStationCLIRoute(t *testing.T) {
	n := newCLINet(t)
	host, p, code, data, exec, digest, root := n.host, n.p, n.code, n.data, n.exec, n.digest, n.root
	ok := func(args ...string) string { t.Helper(); return n.ok(t, args...) }
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
