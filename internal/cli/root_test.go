package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// execRoot runs the CLI in-process and returns exit code, stdout and stderr.
func execRoot(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrorsAreOneLine(t *testing.T) {
	for _, args := range [][]string{{"nonsense"}, {"registry", "serve", "--bogus"}, {"demo", "extra-arg"}} {
		code, _, stderr := execRoot(t, "", args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "trainyard: ") {
			t.Errorf("%v: stderr %q is not one error line", args, stderr)
		}
	}
}

func TestDemoRuns(t *testing.T) {
	code, out, stderr := execRoot(t, "", "demo")
	if code != 0 {
		t.Fatalf("demo exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "demo finished") || !strings.Contains(out, "alice verified 3 signed stops") ||
		!strings.Contains(out, "changed code is refused") || !strings.Contains(out, `hospital-a refused "tampered-copy" before running it`) {
		t.Fatalf("demo output:\n%s", out)
	}
}

func TestUnknownSubcommandsAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		hint string
	}{
		{[]string{"tuf", "pull-targets"}, `did you mean "pull-target"?`},
		{[]string{"trust", "shwo"}, `did you mean "show"?`},
		{[]string{"station", "rnu"}, `did you mean "run"?`},
		{[]string{"statoin"}, `did you mean "station"?`},
		{[]string{"trust", "zzzzzzzz"}, ""},
	} {
		code, stdout, stderr := execRoot(t, "", tc.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		if stdout != "" {
			t.Errorf("%v: printed help on stdout: %q", tc.args, stdout)
		}
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if !strings.HasPrefix(lines[0], "trainyard: unknown command ") || strings.Contains(lines[0], ";") {
			t.Errorf("%v: first line %q", tc.args, lines[0])
		}
		want := 1
		if tc.hint != "" {
			want = 2
			if len(lines) < 2 || lines[1] != "trainyard: "+tc.hint {
				t.Errorf("%v: stderr %q, want the hint %q on its own line", tc.args, stderr, tc.hint)
			}
		}
		if len(lines) != want {
			t.Errorf("%v: %d stderr lines, want %d: %q", tc.args, len(lines), want, stderr)
		}
	}
}

func TestGroupWithoutSubcommandExits2(t *testing.T) {
	for _, args := range [][]string{{}, {"trust"}, {"tuf"}, {"keyserver", "token"}} {
		code, stdout, stderr := execRoot(t, "", args...)
		if code != 2 || !strings.Contains(stdout, "Available Commands") || !strings.Contains(stderr, "needs a subcommand") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, stderr := execRoot(t, "", "version", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var v VersionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("version -o json: %v: %q", err, out)
	}
	if v.Version == "" || !strings.HasPrefix(v.GoVersion, "go") || !strings.Contains(v.Platform, "/") {
		t.Fatalf("version fields: %+v", v)
	}
	code, line, _ := execRoot(t, "", "--version")
	if code != 0 || !strings.HasPrefix(line, "trainyard ") || strings.Count(line, "\n") != 1 {
		t.Fatalf("--version: exit %d, %q", code, line)
	}
	if code, _, _ := execRoot(t, "", "version", "-o", "yaml"); code != 2 {
		t.Fatalf("version -o yaml: exit %d, want 2", code)
	}
}
