package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStationRefusesCarelessSetup: the operator mistakes that would hand a
// train the station's key or the whole host are refused with one line and
// exit 1, before the key is used or a registry is contacted.
func TestStationRefusesCarelessSetup(t *testing.T) {
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	if c, _, stderr := execRoot(t, "", "keys", "generate", p("st1")); c != 0 {
		t.Fatal(stderr)
	}
	data := p("data")
	os.MkdirAll(data, 0o755)
	if c, _, stderr := execRoot(t, "", "keys", "generate", filepath.Join(data, "st1")); c != 0 {
		t.Fatal(stderr)
	}
	loose := p("loose.key")
	b, _ := os.ReadFile(p("st1.key"))
	os.WriteFile(loose, b, 0o644)
	os.Symlink(data, p("data-link"))
	base := []string{"--id", "st1", "--network", "127.0.0.1:1/net"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"world-readable key", []string{"run", "x", "--key", loose, "--data", data}, "readable by group or others"},
		{"key inside --data", []string{"run", "x", "--key", filepath.Join(data, "st1.key"), "--data", data}, "inside the data directory"},
		{"key inside --data through a symlink", []string{"run", "x", "--key", filepath.Join(data, "st1.key"), "--data", p("data-link")}, "inside the data directory"},
		{"--data /", []string{"run", "x", "--key", p("st1.key"), "--data", "/"}, "root filesystem"},
		{"nonexistent --data", []string{"run", "x", "--key", p("st1.key"), "--data", p("nope")}, "does not exist"},
		{"--data is a file", []string{"run", "x", "--key", p("st1.key"), "--data", p("st1.pub")}, "not a directory"},
		{"work dir inside --data", []string{"run", "x", "--key", p("st1.key"), "--data", data, "--work-dir", filepath.Join(data, "work")}, "inside the data directory"},
		{"train logs inside --data", []string{"run", "x", "--key", p("st1.key"), "--data", data, "--train-logs", filepath.Join(data, "logs")}, "inside the data directory"},
		{"--data holds the default work dir", []string{"run", "x", "--key", p("st1.key"), "--data", os.TempDir()}, "inside the data directory"},
		{"serve database inside --data", []string{"serve", "--key", p("st1.key"), "--data", data, "--db", filepath.Join(data, "st.db")}, "inside the data directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append(append([]string{"station"}, c.args...), base...)
			code, _, stderr := execRoot(t, "", args...)
			if code != 1 || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("%v: exit %d, stderr %q; want one line naming %q", args, code, stderr, c.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(data, "st.db")); err == nil {
		t.Fatal("a refused serve created its database inside --data")
	}
}

// TestStationLogsEscapes: kept train output is shown with terminal escapes
// and other control characters escaped, so a train cannot drive the
// operator's terminal or fake a line break in what is printed.
func TestStationLogsEscapes(t *testing.T) {
	dir := t.TempDir()
	body := "[trainyard: output of train \"t1\", stop 0]\n" +
		"{\"level\":\"INFO\",\"msg\":\"stop done\"}\r\x1b[2J\x1b]0;owned\x07 \u202edesrever\xff\n"
	os.WriteFile(filepath.Join(dir, "t1.stop0.20260101T000000.000000000Z.log"), []byte(body), 0o600)
	os.WriteFile(filepath.Join(dir, "t2.stop0.20260101T000001.000000000Z.log"), []byte("other train\n"), 0o600)
	code, out, stderr := execRoot(t, "", "station", "logs", "t1", "--train-logs", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, bad := range []string{"\x1b", "\r", "\x07", "\u202e", "\xff", "other train"} {
		if strings.Contains(out, bad) {
			t.Fatalf("output has %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{"== t1.stop0.", `"msg":"stop done"`, `\x0d\x1b[2J\x1b]0;owned\x07`, `\u{202e}desrever\xff`} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}
