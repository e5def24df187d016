package cli

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/tuf/repo"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/internal/kdftest"
)

const trustTestDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type trustCLI struct {
	t   *testing.T
	dir string
}

func newTrustCLI(t *testing.T) *trustCLI {
	kdftest.Fast()
	srv := testutil.Registry(t)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	t.Setenv("TRAINYARD_TRUST_REPO", strings.TrimPrefix(srv.URL, "http://")+"/net/trust")
	t.Setenv("TRAINYARD_TRUST_ADMIN_DIR", filepath.Join(dir, "admin"))
	t.Setenv("TRAINYARD_TRUST_KEY_PASSWORD", "pw")
	return &trustCLI{t: t, dir: dir}
}

func (c *trustCLI) p(s string) string { return filepath.Join(c.dir, s) }

func (c *trustCLI) ok(args ...string) string {
	c.t.Helper()
	code, out, stderr := execRoot(c.t, "", args...)
	if code != 0 {
		c.t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	return out
}

// refused runs a command that must fail with one error line containing want.
func (c *trustCLI) refused(want string, args ...string) {
	c.t.Helper()
	code, _, stderr := execRoot(c.t, "", args...)
	if code == 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		c.t.Fatalf("%v: exit %d, stderr %q, want one line with %q", args, code, stderr, want)
	}
}

// reader flags: a reader's own trusted copy, bootstrapped from the root.
func (c *trustCLI) reader(who string) []string {
	return []string{"--trust-dir", c.p(who + "-trust"), "--trust-root", c.p("admin/metadata/root.json")}
}

// TestTrustCLIApprovals: the detached approval round trip with two
// approvers and a threshold of 2, refusals of a wrong key and an unknown
// user, hygiene commands, a duplicate key, show -o json.
func TestTrustCLIApprovals(t *testing.T) {
	c := newTrustCLI(t)
	for _, k := range []string{"alice", "bob", "st1"} {
		c.ok("keys", "generate", c.p(k))
	}
	c.ok("trust", "init", "--approval-threshold", "2")
	c.ok("trust", "add-user", "alice", "--key", c.p("alice.pub"))
	c.ok("trust", "add-user", "bob", "--key", c.p("bob.pub"))
	c.ok("trust", "add-station", "st1", "--key", c.p("st1.pub"))
	c.refused("already registered under another id", "trust", "add-station", "st2", "--key", c.p("st1.pub"))
	c.refused("--replace", "trust", "add-station", "st1", "--key", c.p("alice.pub"))

	// approvers, each with only their own key and read access
	approve := func(user, key, out string) []string {
		return append([]string{"trust", "approve-train", "--digest", trustTestDigest, "--user", user, "--key", c.p(key + ".key"),
			"--station", "st1", "--label", "study 42", "--expires", "2099-01-01T00:00:00Z", "--comment", user + " ok", "--out", c.p(out)}, c.reader(user)...)
	}
	c.refused("is not the key of user alice", approve("alice", "bob", "a.json")...)
	c.ok(approve("alice", "alice", "a.json")...)
	c.ok(approve("bob", "bob", "b.json")...)

	c.ok("trust", "add-approval", c.p("a.json"))
	show := c.ok(append([]string{"trust", "show"}, c.reader("show")...)...)
	if !strings.Contains(show, "INVALID") || !strings.Contains(show, "1 valid approver signature(s), 2 needed") {
		t.Fatalf("one of two approvals shown as valid:\n%s", show)
	}
	c.ok("trust", "add-approval", c.p("b.json"))
	show = c.ok(append([]string{"trust", "show"}, c.reader("show")...)...)
	for _, want := range []string{"station  st1", "user     alice", "approval " + trustTestDigest + " by alice,bob (2 of 2 needed)",
		`label "study 42"`, "expires 2099-01-01T00:00:00Z", "expires  timestamp"} {
		if !strings.Contains(show, want) {
			t.Fatalf("trust show lacks %q:\n%s", want, show)
		}
	}

	// the in-place form with the wrong key or an unknown user: refused,
	// the approval untouched
	inPlace := func(user, key string) []string {
		return []string{"trust", "approve-train", "--digest", trustTestDigest, "--user", user, "--key", c.p(key + ".key"),
			"--station", "st1", "--label", "study 42", "--expires", "2099-01-01T00:00:00Z"}
	}
	c.refused("does not verify", inPlace("alice", "bob")...)
	c.refused("nobody", inPlace("nobody", "bob")...)
	var v directoryView
	out := c.ok(append([]string{"trust", "show", "-o", "json"}, c.reader("show")...)...)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("show -o json: %v\n%s", err, out)
	}
	if len(v.Approvals) != 1 || !v.Approvals[0].Valid || len(v.Approvals[0].Approvers) != 2 || v.ApprovalThreshold != 2 || len(v.Expires) != 4 {
		t.Fatalf("after refused approvals: %+v", v)
	}

	// removing bob leaves one signature of two
	c.ok("trust", "remove-user", "bob")
	show = c.ok(append([]string{"trust", "show"}, c.reader("show")...)...)
	if !strings.Contains(show, "INVALID") {
		t.Fatalf("approval valid without bob:\n%s", show)
	}
	c.ok("trust", "set-approval-threshold", "1")
	show = c.ok(append([]string{"trust", "show"}, c.reader("show")...)...)
	if !strings.Contains(show, "by alice (1 of 1 needed)") {
		t.Fatalf("threshold 1:\n%s", show)
	}
	c.ok("trust", "revoke-approval", trustTestDigest)
	c.ok("trust", "remove-station", "st1")
	c.ok("keys", "generate", c.p("st1b"))
	c.refused("not in the trust directory", "trust", "add-station", "st1", "--key", c.p("st1b.pub"), "--replace")
	c.ok("trust", "add-station", "st1", "--key", c.p("st1b.pub"))
	c.ok("trust", "add-station", "st1", "--key", c.p("st1.pub"), "--replace")
	show = c.ok(append([]string{"trust", "show"}, c.reader("show")...)...)
	if strings.Contains(show, "approval ") || !strings.Contains(show, "station  st1") || strings.Contains(show, "user     bob") {
		t.Fatalf("after hygiene:\n%s", show)
	}
}

// TestTrustCLIPublishGuard: init from another folder against a live
// directory, and a stale admin state, are refused with what to do; pull
// recovers without losing the other admin's change.
func TestTrustCLIPublishGuard(t *testing.T) {
	c := newTrustCLI(t)
	for _, k := range []string{"s1", "s2", "s3"} {
		c.ok("keys", "generate", c.p(k))
	}
	c.ok("trust", "init")
	before := registryTags(t, os.Getenv("TRAINYARD_TRUST_REPO"))
	c.refused("trust pull", "trust", "init", "--trust-admin-dir", c.p("elsewhere"))
	if after := registryTags(t, os.Getenv("TRAINYARD_TRUST_REPO")); after != before {
		t.Fatalf("refused init changed the registry:\n%s\n%s", before, after)
	}
	c.ok("trust", "add-station", "s1", "--key", c.p("s1.pub"))
	// a second admin machine with a copy of the state publishes first
	if out, err := exec.Command("cp", "-a", c.p("admin"), c.p("admin2")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	c.ok("trust", "add-station", "s2", "--key", c.p("s2.pub"), "--trust-admin-dir", c.p("admin2"))
	before = registryTags(t, os.Getenv("TRAINYARD_TRUST_REPO"))
	c.refused("trust pull", "trust", "add-station", "s3", "--key", c.p("s3.pub"))
	c.refused("trust pull", "trust", "refresh")
	if after := registryTags(t, os.Getenv("TRAINYARD_TRUST_REPO")); after != before {
		t.Fatalf("a stale admin changed the registry:\n%s\n%s", before, after)
	}
	c.ok("trust", "pull")
	c.ok("trust", "add-station", "s3", "--key", c.p("s3.pub"))
	show := c.ok(append([]string{"trust", "show"}, c.reader("show")...)...)
	for _, want := range []string{"station  s1", "station  s2", "station  s3"} {
		if !strings.Contains(show, want) {
			t.Fatalf("lost a change: %s", show)
		}
	}
	// --force knowingly replaces the directory
	c.ok("trust", "init", "--trust-admin-dir", c.p("elsewhere2"), "--force")
}

// TestTrustCLIRefresh: with a three-second timestamp, a reader fails
// loudly once it expired and works again after trust refresh; refresh
// exits 0 when nothing was due.
func TestTrustCLIRefresh(t *testing.T) {
	c := newTrustCLI(t)
	t.Setenv("TRAINYARD_TUF_TIMESTAMP_LIFETIME", "3s")
	c.ok("trust", "init")
	if out := c.ok("trust", "refresh"); !strings.HasPrefix(out, "nothing due") {
		t.Fatalf("fresh directory: %q", out)
	}
	c.ok(append([]string{"trust", "show"}, c.reader("r")...)...)
	time.Sleep(4 * time.Second)
	c.refused("expired", append([]string{"trust", "show"}, c.reader("r")...)...)
	if out := c.ok("trust", "refresh"); !strings.Contains(out, "re-signed and published timestamp") {
		t.Fatalf("refresh: %q", out)
	}
	show := c.ok(append([]string{"trust", "show"}, c.reader("r")...)...)
	if !strings.Contains(show, "expires  timestamp") {
		t.Fatalf("show: %s", show)
	}
	// a flag overrides the env var; a bad value is a usage error
	if code, _, _ := execRoot(t, "", "trust", "refresh", "--timestamp-lifetime", "soon"); code != 2 {
		t.Fatalf("bad lifetime: exit %d", code)
	}
}

// TestTrustRefreshWatch: with a two-second timestamp, `trust refresh
// --watch` keeps the directory usable well past that lifetime.
func TestTrustRefreshWatch(t *testing.T) {
	c := newTrustCLI(t)
	t.Setenv("TRAINYARD_TUF_TIMESTAMP_LIFETIME", "2s")
	c.ok("trust", "init")
	p := adminPublisher(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncWriter
	done := make(chan error, 1)
	go func() { done <- refreshWatch(ctx, &out, p, 500*time.Millisecond) }()
	time.Sleep(4 * time.Second) // two timestamp lifetimes
	c.ok(append([]string{"trust", "show"}, c.reader("r")...)...)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	if n := strings.Count(out.String(), "re-signed and published timestamp"); n < 2 {
		t.Fatalf("watch re-signed %d times:\n%s", n, out.String())
	}
}

// A watch stopped while a refresh runs (SIGTERM from a service manager,
// here a context cancelled before the refresh's first request) is a clean
// stop, not an error.
func TestTrustRefreshWatchStoppedDuringRefresh(t *testing.T) {
	c := newTrustCLI(t)
	c.ok("trust", "init")
	p := adminPublisher(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := refreshWatch(ctx, io.Discard, p, time.Minute); err != nil {
		t.Fatalf("watch stopped during a refresh: %v", err)
	}
}

// adminPublisher is the trust admin's publisher as the trust commands make
// it, from the environment newTrustCLI set.
func adminPublisher(t *testing.T) *repo.Publisher {
	t.Helper()
	var f trustFlags
	cmd := &cobra.Command{Use: "trust"}
	f.add(cmd)
	f.addAdmin(cmd)
	f.repo, f.adminDir = os.Getenv("TRAINYARD_TRUST_REPO"), os.Getenv("TRAINYARD_TRUST_ADMIN_DIR")
	p, err := f.admin(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
func (w *syncWriter) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.b.String() }

func FuzzParseExpiry(f *testing.F) {
	for _, s := range []string{"", "90d", "2w", "12h", "2099-01-01T00:00:00Z", "soon", "-1d", "1e9d"} {
		f.Add(s)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseExpiry(s, now)
		if err != nil || got == "" {
			return
		}
		if _, err := time.Parse(time.RFC3339, got); err != nil {
			t.Fatalf("%q gave %q, not RFC 3339", s, got)
		}
	})
}

// registryTags lists a repository's tags with their manifest digests.
func registryTags(t *testing.T, repoName string) string {
	t.Helper()
	r, err := name.NewRepository(repoName)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := remote.List(r)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, tag := range tags {
		d, err := remote.Head(r.Tag(tag))
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString(tag + "=" + d.Digest.String() + "\n")
	}
	return out.String()
}

// TestTrustCLIWrongPasswordStagesNothing: a change refused for a wrong key
// password is not left staged for the next publish: a later, unrelated
// change publishes only itself.
func TestTrustCLIWrongPasswordStagesNothing(t *testing.T) {
	c := newTrustCLI(t)
	for _, k := range []string{"s1", "s2"} {
		c.ok("keys", "generate", c.p(k))
	}
	c.ok("trust", "init")
	before := registryTags(t, os.Getenv("TRAINYARD_TRUST_REPO"))
	t.Setenv("TRAINYARD_TRUST_KEY_PASSWORD", "not-the-password")
	c.refused("targets key", "trust", "add-station", "s1", "--key", c.p("s1.pub"))
	if after := registryTags(t, os.Getenv("TRAINYARD_TRUST_REPO")); after != before {
		t.Fatalf("a refused change touched the registry:\n%s\n%s", before, after)
	}
	t.Setenv("TRAINYARD_TRUST_KEY_PASSWORD", "pw")
	c.ok("trust", "add-station", "s2", "--key", c.p("s2.pub"))
	show := c.ok(append([]string{"trust", "show"}, c.reader("show")...)...)
	if !strings.Contains(show, "station  s2") || strings.Contains(show, "station  s1") {
		t.Fatalf("after a refused add of s1 and an add of s2: %s", show)
	}
}
