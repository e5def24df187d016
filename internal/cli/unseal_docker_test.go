package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestUnsealDockerNoEngine: with DOCKER_HOST naming a socket that does not
// exist, unseal --to docker fails before reading the archive, with one line
// naming the host, and exit 1.
func TestUnsealDockerNoEngine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-such-docker.sock")
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	// The archive does not exist either: the ping must come first.
	_, stderr, code := sealCLI(t, "unseal", "--to", "docker", "--fragment-file", "x", "--device-key", "y", filepath.Join(t.TempDir(), "a.sealed"))
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
	}
	want := "no Docker engine at DOCKER_HOST=unix://" + sock + ": is dockerd running? or use --to oci:DIR"
	if !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q, want it to contain %q", stderr, want)
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
		t.Fatalf("stderr has %d extra lines: %q", n, stderr)
	}
}
