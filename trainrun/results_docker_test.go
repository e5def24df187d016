package trainrun

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func dockerProbe(t *testing.T, d *Docker, spec RunSpec, args ...string) runOut {
	t.Helper()
	var stdout, stderr strings.Builder
	spec.Args = append([]string{"/opt/pht_train/probe"}, args...)
	spec.Stdout, spec.Stderr = &stdout, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := d.Run(ctx, probeImage(t), spec)
	return runOut{res, err, stdout.String(), stderr.String()}
}

// The Docker backend enforces the cap while it copies the results out: a
// result over it never reaches the station's disk.
func TestDockerResultsCap(t *testing.T) {
	d := needDocker(t)
	const limit = 4 << 20
	dir := resultsDir(t)
	// 5 MiB of real data: "sparse" would not do, see the next test.
	o := dockerProbe(t, d, RunSpec{ResultsDir: dir, MaxResults: limit}, "alloc-file", "/opt/pht_results/big", "5")
	if !errors.Is(o.err, ErrResultsTooLarge) {
		t.Fatalf("want ErrResultsTooLarge, got %v (stderr %q)", o.err, o.stderr)
	}
	if fi, err := os.Stat(filepath.Join(dir, "big")); err == nil {
		t.Fatalf("%d bytes copied out past the cap", fi.Size())
	}
	wantOK(t, dockerProbe(t, d, RunSpec{ResultsDir: dir, MaxResults: limit}, "alloc-file", "/opt/pht_results/small", "1"))
	if fi, err := os.Stat(filepath.Join(dir, "small")); err != nil || fi.Size() != 1<<20 {
		t.Fatalf("a result under the cap: %v", err)
	}
}

func TestDockerResultsSparse(t *testing.T) {
	d := needDocker(t)
	dir := resultsDir(t)
	start := time.Now()
	o := dockerProbe(t, d, RunSpec{ResultsDir: dir, MaxResults: 8 << 20}, "sparse", "/opt/pht_results/huge", strconv.FormatInt(1<<40, 10))
	if !errors.Is(o.err, ErrResultsTooLarge) {
		t.Fatalf("want ErrResultsTooLarge, got %v (stderr %q)", o.err, o.stderr)
	}
	if el := time.Since(start); el > time.Minute {
		t.Fatalf("refusal took %s", el)
	}
	if fi, err := os.Stat(filepath.Join(dir, "huge")); err == nil {
		t.Fatalf("sparse file copied out (%d bytes)", fi.Size())
	}
}
