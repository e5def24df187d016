package trainrun

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/train"
)

// needDocker returns the Docker backend on the test binary's private dockerd
// (internal/testutil: paths under a temp dir, no bridge, no iptables rules,
// stopped in TestMain); it fails instead of skipping in CI.
func needDocker(t *testing.T) *Docker {
	t.Helper()
	d, err := NewDocker(WithDockerHost(testutil.Dockerd(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDockerResultsInAndOut(t *testing.T) {
	d := needDocker(t)
	results, data := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(results, "previous.txt"), []byte("from the last stop"), 0o644)
	os.WriteFile(filepath.Join(data, "cohort.csv"), []byte("n\n3\n"), 0o644)
	spec := RunSpec{ResultsDir: results, DataDir: data}

	o := runProbe(t, d, spec, "read", "/opt/pht_results/previous.txt")
	wantOK(t, o)
	if o.stdout != "from the last stop" {
		t.Fatalf("previous results inside = %q", o.stdout)
	}
	wantOK(t, runProbe(t, d, spec, "write", "/opt/pht_results/out.txt", "docker result"))
	if b, err := os.ReadFile(filepath.Join(results, "out.txt")); err != nil || string(b) != "docker result" {
		t.Fatalf("result on the host = %q, %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(results, "previous.txt")); string(b) != "from the last stop" {
		t.Fatalf("previous results lost: %q", b)
	}
	o = runProbe(t, d, spec, "read", "/opt/pht_data/cohort.csv")
	wantOK(t, o)
	if o.stdout != "n\n3\n" {
		t.Fatalf("data inside = %q", o.stdout)
	}
	wantDenied(t, runProbe(t, d, spec, "write", "/opt/pht_data/cohort.csv", "x"))
}

func TestDockerIsolation(t *testing.T) {
	d := needDocker(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	spec := RunSpec{}
	wantDenied(t, runProbe(t, d, spec, "dial", ln.Addr().String()))
	wantDenied(t, runProbe(t, d, spec, "route", "192.0.2.1:9"))
	wantDenied(t, runProbe(t, d, spec, "write", "/opt/pht_train/evil", "x"))
	wantDenied(t, runProbe(t, d, spec, "write", "/evil", "x"))
	o := runProbe(t, d, spec, "status", "CapEff")
	wantOK(t, o)
	if strings.TrimSpace(o.stdout) != "0000000000000000" {
		t.Fatalf("CapEff = %q", o.stdout)
	}
}

func TestDockerLimitsAndExit(t *testing.T) {
	d := needDocker(t)
	o := runProbe(t, d, RunSpec{}, "exit", "7")
	var ee *ExitError
	if !errors.As(o.err, &ee) || ee.Code != 7 {
		t.Fatalf("exit code: %v", o.err)
	}
	o = runProbe(t, d, RunSpec{Memory: 32 << 20}, "alloc", "256")
	if !errors.Is(o.err, ErrOOM) || !o.res.OOMKilled {
		t.Fatalf("expected OOM, got %v %+v", o.err, o.res)
	}
	start := time.Now()
	o = runProbe(t, d, RunSpec{Timeout: 2 * time.Second}, "sleep", "60")
	if !errors.Is(o.err, ErrTimeout) || time.Since(start) > 40*time.Second {
		t.Fatalf("expected a timeout, got %v after %s", o.err, time.Since(start))
	}
}

func TestDockerUnavailable(t *testing.T) {
	d, err := NewDocker(WithDockerHost("unix://" + filepath.Join(t.TempDir(), "none.sock")))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.Run(context.Background(), probeImageOrSkip(t), RunSpec{ResultsDir: t.TempDir(), Args: []string{"/x"}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("expected ErrUnavailable, got %v", err)
	}
}

// probeImageOrSkip returns a tiny image without building the probe.
func probeImageOrSkip(t *testing.T) v1.Image {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "x")
	os.WriteFile(bin, []byte("not a program"), 0o755)
	img, err := train.ImageFromBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestDockerNonRootUser(t *testing.T) {
	d := needDocker(t)
	probeImage(t) // builds the probe binary into probe.dir
	bin := filepath.Join(probe.dir, "probe")
	img, err := train.ImageFromBinary(bin, train.WithImageUser("1000:1000"))
	if err != nil {
		t.Fatal(err)
	}
	results := t.TempDir()
	var stdout, stderr strings.Builder
	_, err = d.Run(context.Background(), img, RunSpec{ResultsDir: results, Stdout: &stdout, Stderr: &stderr,
		Args: []string{"/opt/pht_train/probe", "write", "/opt/pht_results/u.txt", "x"}})
	if err != nil {
		t.Fatalf("non-root train: %v %s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(results, "u.txt")); err != nil {
		t.Fatal(err)
	}
}

// The Docker backend says ErrStart for a program its runtime cannot exec,
// as runc does.
func TestDockerStartFailure(t *testing.T) {
	d := needDocker(t)
	img := probeImage(t)
	var stderr strings.Builder
	_, err := d.Run(context.Background(), img, RunSpec{ResultsDir: t.TempDir(), Stderr: &stderr,
		Args: []string{"/opt/pht_train/no-such-program"}})
	if !errors.Is(err, ErrStart) {
		t.Fatalf("err = %v, want ErrStart", err)
	}
}
