package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// consoleToken runs `station console-token` with args on its own (it is
// wired into `station` by newStationCmd).
func consoleToken(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var f stationFlags
	root := &cobra.Command{Use: "station", SilenceErrors: true, SilenceUsage: true}
	f.add(root)
	root.AddCommand(newStationConsoleTokenCmd(&f))
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"console-token"}, args...))
	err := root.Execute()
	return out.String(), errb.String(), err
}

func TestStationConsoleToken(t *testing.T) {
	state := t.TempDir()
	a, _, err := consoleToken(t, "--state-dir", state)
	a = strings.TrimSpace(a)
	if err != nil || len(a) != 43 {
		t.Fatalf("first token %q: %v", a, err)
	}
	fi, err := os.Stat(filepath.Join(state, "console.token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	b, _, err := consoleToken(t, "--state-dir", state)
	if err != nil || strings.TrimSpace(b) != a {
		t.Fatalf("second run printed %q, want %q: %v", b, a, err)
	}
	c, stderr, err := consoleToken(t, "--state-dir", state, "--rotate")
	if c = strings.TrimSpace(c); err != nil || c == a || len(c) != 43 || !strings.Contains(stderr, "no longer works") {
		t.Fatalf("rotate printed %q (%q): %v", c, stderr, err)
	}
	if d, _, _ := consoleToken(t, "--state-dir", state); strings.TrimSpace(d) != c {
		t.Fatal("the rotated token was not kept")
	}

	var ee *ExitError
	if _, _, err := consoleToken(t); !errors.As(err, &ee) || ee.Code != 2 {
		t.Fatalf("no --id or --state-dir: %v", err)
	}
	if _, _, err := consoleToken(t, "--state-dir", filepath.Join(state, "nope")); err == nil || !strings.Contains(err.Error(), "no station state") {
		t.Fatalf("missing state dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "nope")); err == nil {
		t.Fatal("a wrong --state-dir was created")
	}
	os.Chmod(filepath.Join(state, "console.token"), 0o644)
	if _, _, err := consoleToken(t, "--state-dir", state); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable token: %v", err)
	}
	if _, _, err := consoleToken(t, "--state-dir", state, "extra"); err == nil {
		t.Fatal("an argument was accepted")
	}
}
