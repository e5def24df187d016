package trainrun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// dockerd is a daemon this test binary starts itself, with every path under
// a temp dir, no bridge and no iptables rules, and stops in TestMain.
var dockerd struct {
	once     sync.Once
	dir      string
	cmd      *exec.Cmd
	host     string
	skip     string
	err      error
	hadKey   bool
	hadEtc   bool
	hadCgrp  map[string]bool
	hadDock0 bool
}

func needDocker(t *testing.T) *Docker {
	t.Helper()
	dockerd.once.Do(startDockerd)
	if dockerd.skip != "" {
		skipOrFail(t, dockerd.skip)
	}
	if dockerd.err != nil {
		t.Fatalf("starting dockerd: %v", dockerd.err)
	}
	d, err := NewDocker(WithDockerHost(dockerd.host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func startDockerd() {
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		dockerd.skip = "dockerd not installed (apt-get install -y docker.io to run the Docker backend tests)"
		return
	}
	if os.Geteuid() != 0 {
		dockerd.skip = "dockerd needs root"
		return
	}
	_, err = os.Stat("/etc/docker/key.json")
	dockerd.hadKey = err == nil
	_, err = os.Stat("/etc/docker")
	dockerd.hadEtc = err == nil
	_, err = net.InterfaceByName("docker0")
	dockerd.hadDock0 = err == nil
	dockerd.hadCgrp = map[string]bool{}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/docker")
	for _, c := range cgs {
		dockerd.hadCgrp[c] = true
	}

	dir, err := os.MkdirTemp("", "tyd-")
	if err != nil {
		dockerd.err = err
		return
	}
	dockerd.dir = dir
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		dockerd.err = err
		return
	}
	sock := filepath.Join(dir, "docker.sock")
	dockerd.host = "unix://" + sock
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		dockerd.err = err
		return
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config-file", cfg, "--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "dockerd.pid"),
		"-H", dockerd.host, "--bridge=none", "--iptables=false", "--ip6tables=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by go test's timeout takes dockerd along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		dockerd.err = err
		return
	}
	dockerd.cmd = cmd
	d, err := NewDocker(WithDockerHost(dockerd.host))
	if err != nil {
		dockerd.err = err
		return
	}
	defer d.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = d.Available(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			dockerd.err = fmt.Errorf("dockerd not ready after 60s: %v\n%s", err, tail(string(log), 2000))
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// stopDockerd kills our dockerd by its pid and removes what it left.
func stopDockerd() {
	if dockerd.cmd != nil {
		_ = dockerd.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { dockerd.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-dockerd.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if dockerd.dir == "" {
		return
	}
	if !dockerd.hadDock0 {
		if _, err := net.InterfaceByName("docker0"); err == nil {
			_ = exec.Command("ip", "link", "del", "docker0").Run()
		}
	}
	if !dockerd.hadKey {
		os.Remove("/etc/docker/key.json")
		if !dockerd.hadEtc {
			os.Remove("/etc/docker") // only when empty
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/docker")
	for _, c := range cgs {
		if !dockerd.hadCgrp[c] {
			os.Remove(c) // rmdir; fails while a cgroup is still in use
		}
	}
	// Overlay mounts are gone with the daemon; unmount stragglers before removing.
	if out, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dockerd.dir) {
				_ = syscall.Unmount(f[1], syscall.MNT_DETACH)
			}
		}
	}
	os.RemoveAll(dockerd.dir)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
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
	img, err := ImageFromBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestDockerNonRootUser(t *testing.T) {
	d := needDocker(t)
	probeImage(t) // builds the probe binary into probe.dir
	bin := filepath.Join(probe.dir, "probe")
	img, err := ImageFromBinary(bin, WithImageUser("1000:1000"))
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
