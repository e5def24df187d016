package testutil

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// forbiddenDeps are what a library package must never link: the embedded
// registry server and its storage stack, and the CLI and its flag parsing.
// A Go program importing trainyard's library pays only for the client side.
var forbiddenDeps = []string{
	"github.com/distribution/distribution/",
	"github.com/trainyard/trainyard/registry/server",
	"github.com/trainyard/trainyard/internal/cli",
	"github.com/spf13/cobra",
	"github.com/spf13/pflag",
	"github.com/redis/",
	"google.golang.org/grpc",
}

// ForbidDeps fails when pkg (an import path) depends, in its non-test code,
// on the registry server or the CLI's dependencies.
func ForbidDeps(t *testing.T, pkg string) {
	t.Helper()
	bad, err := forbidden(pkg)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range bad {
		t.Errorf("%s depends on %s: keep the registry server and the CLI out of the library", pkg, d)
	}
}

func forbidden(pkg string) ([]string, error) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 2 {
		return nil, fmt.Errorf("go list -deps %s listed %d packages", pkg, len(deps))
	}
	var bad []string
	for _, d := range deps {
		for _, f := range forbiddenDeps {
			if strings.HasPrefix(d, f) {
				bad = append(bad, d)
			}
		}
	}
	return bad, nil
}
