package cli

import (
	"os"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"
)

// TestMain stops the private dockerd a test may have started (and removes
// what it left on the host).
func TestMain(m *testing.M) {
	// Station state goes under a temp dir, never the host's /var/lib.
	home, err := os.MkdirTemp("", "trainyard-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("TRAINYARD_STATE_HOME", home)
	code := m.Run()
	os.RemoveAll(home)
	testutil.StopDockerd()
	os.Exit(code)
}
