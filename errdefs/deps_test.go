package errdefs_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"
)

// The library links neither the registry server nor the CLI.
func TestDependencies(t *testing.T) {
	testutil.ForbidDeps(t, "github.com/trainyard/trainyard/errdefs")
}

// errdefs sits below every trainyard package, so it may import none of them.
func TestImportsNothingOfTrainyard(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/trainyard/trainyard/errdefs").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, "github.com/trainyard/trainyard/") && d != "github.com/trainyard/trainyard/errdefs" {
			t.Errorf("errdefs imports %s", d)
		}
	}
}
