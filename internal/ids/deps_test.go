package ids_test

import (
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"
)

// The library links neither the registry server nor the CLI.
func TestDependencies(t *testing.T) {
	testutil.ForbidDeps(t, "github.com/trainyard/trainyard/internal/ids")
}
