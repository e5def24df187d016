package seal

import (
	"os"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.StopDockerd()
	os.Exit(code)
}
