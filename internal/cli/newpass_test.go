package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/trainyard/trainyard/internal/kdftest"
)

// answerPrompts makes promptPassword answer with answers in order and
// records the prompts.
func answerPrompts(t *testing.T, answers ...string) *[]string {
	t.Helper()
	var prompts []string
	old := promptPassword
	t.Cleanup(func() { promptPassword = old })
	promptPassword = func(_ io.Writer, prompt string) ([]byte, error) {
		prompts = append(prompts, prompt)
		if len(answers) == 0 {
			t.Fatalf("unexpected prompt %q", prompt)
		}
		a := answers[0]
		answers = answers[1:]
		return []byte(a), nil
	}
	return &prompts
}

func unsetEnv(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		t.Setenv(n, "")
		os.Unsetenv(n)
	}
}

// TestTUFNewKeyPassword: a role's first key asks for its password twice;
// a mismatch and an empty answer are refused (no key written), --no-password
// allows empty, an empty TRAINYARD_TUF_<ROLE>_KEY_PASSWORD needs
// --no-password too, and a role's later key asks once (the role's password).
func TestTUFNewKeyPassword(t *testing.T) {
	kdftest.Fast()
	dir := t.TempDir()
	srv := testutil.Registry(t)
	defer srv.Close()
	t.Setenv("TRAINYARD_TUF_HOST", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("TRAINYARD_TUF_INSECURE", "1")
	t.Setenv("TRAINYARD_TUF_REPOSITORIES_ROOT", dir)
	unsetEnv(t, "TRAINYARD_TUF_ROOT_KEY_PASSWORD", "TRAINYARD_TUF_TARGETS_KEY_PASSWORD", "TRAINYARD_TUF_SNAPSHOT_KEY_PASSWORD", "TRAINYARD_TUF_TIMESTAMP_KEY_PASSWORD")
	keyFiles := func() int {
		fs, _ := filepath.Glob(filepath.Join(dir, "*", "master", "keys", "*", "*.key"))
		return len(fs)
	}
	refused := func(want string, args ...string) {
		t.Helper()
		code, _, stderr := execRoot(t, "", append([]string{"tuf"}, args...)...)
		if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
			t.Fatalf("tuf %v: exit %d %q, want one line with %q", args, code, stderr, want)
		}
		if n := keyFiles(); n != 0 {
			t.Fatalf("tuf %v refused but left %d key files", args, n)
		}
	}
	ok := func(args ...string) {
		t.Helper()
		if code, _, stderr := execRoot(t, "", append([]string{"tuf"}, args...)...); code != 0 {
			t.Fatalf("tuf %v: exit %d %s", args, code, stderr)
		}
	}

	answerPrompts(t, "one", "two")
	refused("the two passwords differ", "create-root-key", "demo")
	answerPrompts(t, "")
	refused("empty password: give --no-password", "create-root-key", "demo")
	promptPassword = func(io.Writer, string) ([]byte, error) { return nil, errNoTerminal }
	refused("set TRAINYARD_TUF_ROOT_KEY_PASSWORD (no terminal to prompt on), or give --no-password", "create-root-key", "demo")

	prompts := answerPrompts(t, "s3cret", "s3cret")
	ok("create-root-key", "demo")
	if len(*prompts) != 2 || !strings.HasPrefix((*prompts)[0], "New password for root keys") || !strings.HasPrefix((*prompts)[1], "Repeat") {
		t.Fatalf("prompts %q", *prompts)
	}
	// the role has a key: its password is asked once, as for signing
	prompts = answerPrompts(t, "s3cret")
	ok("create-root-key", "demo", "--add")
	if len(*prompts) != 1 || !strings.HasPrefix((*prompts)[0], "Password for root keys") {
		t.Fatalf("prompts for a later key %q", *prompts)
	}

	// empty env value: refused without --no-password, accepted with it
	answerPrompts(t)
	t.Setenv("TRAINYARD_TUF_TARGETS_KEY_PASSWORD", "")
	code, _, stderr := execRoot(t, "", "tuf", "create-metadata-keys", "demo", "targets")
	if code != 1 || !strings.Contains(stderr, "TRAINYARD_TUF_TARGETS_KEY_PASSWORD is empty: give --no-password") {
		t.Fatalf("empty env: exit %d %q", code, stderr)
	}
	ok("create-metadata-keys", "demo", "targets", "--no-password")
	// --no-password without env: no prompt, empty password
	ok("create-metadata-keys", "demo", "snapshot", "--no-password")
	t.Setenv("TRAINYARD_TUF_SNAPSHOT_KEY_PASSWORD", "")
	t.Setenv("TRAINYARD_TUF_TIMESTAMP_KEY_PASSWORD", "ts")
	ok("create-metadata-keys", "demo", "timestamp")
	t.Setenv("TRAINYARD_TUF_ROOT_KEY_PASSWORD", "s3cret")
	ok("create-metadata", "demo") // signs with root's password: both root keys decrypt with it
	if n := keyFiles(); n != 5 {
		t.Fatalf("%d key files, want 5", n)
	}
}

// TestTrustInitNewKeyPassword: trust init creates keys, so an empty
// TRAINYARD_TRUST_KEY_PASSWORD needs --no-password, a prompt asks twice;
// and it prints the root.json readers pass as --trust-root.
func TestTrustInitNewKeyPassword(t *testing.T) {
	c := newTrustCLI(t)
	t.Setenv("TRAINYARD_TRUST_KEY_PASSWORD", "")
	c.refused("TRAINYARD_TRUST_KEY_PASSWORD is empty: give --no-password", "trust", "init")
	unsetEnv(t, "TRAINYARD_TRUST_KEY_PASSWORD", "TRAINYARD_TUF_ROOT_KEY_PASSWORD", "TRAINYARD_TUF_TARGETS_KEY_PASSWORD", "TRAINYARD_TUF_SNAPSHOT_KEY_PASSWORD", "TRAINYARD_TUF_TIMESTAMP_KEY_PASSWORD")
	answerPrompts(t, "a", "b")
	c.refused("the two passwords differ", "trust", "init")
	t.Setenv("TRAINYARD_TRUST_KEY_PASSWORD", "")
	out := c.ok("trust", "init", "--no-password")
	root := c.p("admin/metadata/root.json")
	if !strings.Contains(out, "root.json: "+root+"\n") || !strings.Contains(out, "--trust-root") {
		t.Fatalf("trust init output %q, want the root.json path %s and --trust-root", out, root)
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatal(err)
	}
	c.ok("keys", "generate", c.p("alice"))
	c.ok("trust", "add-user", "alice", "--key", c.p("alice.pub")) // reads the keys with the empty password
}
