package trainrun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A train whose program cannot be started (missing, not executable, not a
// program for this machine) is the image's doing: ErrStart, not an opaque
// runc error a station would retry for ever.
func TestRuncStartFailure(t *testing.T) {
	r := needRunc(t)
	for name, args := range map[string][]string{
		"missing":        {"/opt/pht_train/no-such-program"},
		"not executable": {"/opt/pht_results/plain.txt"},
		"a directory":    {"/opt/pht_train"},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			results := t.TempDir()
			if err := os.WriteFile(filepath.Join(results, "plain.txt"), []byte("not a program\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := r.Run(ctx, probeImage(t), RunSpec{ResultsDir: results, Args: args, Stderr: &stderr})
			if !errors.Is(err, ErrStart) {
				t.Fatalf("err = %v, want ErrStart", err)
			}
			t.Log(err)
		})
	}
}

func TestStartFailedWords(t *testing.T) {
	for msg, want := range map[string]bool{
		`runc run failed: unable to start container process: exec: "/x": stat /x: no such file or directory`:                                                                                                                                     true,
		`container_linux.go:380: starting container process caused: exec: "/x": permission denied`:                                                                                                                                               true,
		`Error response from daemon: failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "/x": stat /x: no such file or directory: unknown`: true,
		`runc run failed: unable to start container process: error during container init: error mounting "proc"`:                                                                                                                                 false,
		`cgroup: cannot write memory.max: permission denied`:                                                                                                                                                                                     false,
	} {
		if got := startFailed(msg); got != want {
			t.Errorf("startFailed(%q) = %v, want %v", msg, got, want)
		}
	}
}
