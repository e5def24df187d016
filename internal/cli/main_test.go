package cli

import (
	"os"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"
)

// TestMain stops the private dockerd a test may have started (and removes
// what it left on the host).
func TestMain(m *testing.M) {
	code := m.Run()
	testutil.StopDockerd()
	os.Exit(code)
}
