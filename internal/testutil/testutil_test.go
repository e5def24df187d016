package testutil

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopDockerd()
	os.Exit(code)
}

func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, "true": true, "1": true} {
		t.Setenv("CI", v)
		if InCI() != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, !want, want)
		}
	}
}

func TestDockerdAnswers(t *testing.T) {
	host := Dockerd(t)
	if host == "" || host[:7] != "unix://" {
		t.Fatalf("host %q", host)
	}
	if _, err := os.Stat(host[len("unix://"):]); err != nil {
		t.Fatalf("socket: %v", err)
	}
}

// The checker itself: the CLI does link the server and cobra.
func TestForbidDepsCatchesTheCLI(t *testing.T) {
	bad, err := forbidden("github.com/trainyard/trainyard/internal/cli")
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) == 0 {
		t.Fatal("internal/cli imports cobra and the registry server, yet nothing was found")
	}
}
