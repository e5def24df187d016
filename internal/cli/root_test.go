package cli

import (
	"bytes"
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
