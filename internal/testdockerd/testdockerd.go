// Package testdockerd starts a real Docker Engine for tests: dockerd with
// every path under a temp dir, no bridge and no iptables rules, stopped by
// Stop (call it from TestMain). Without dockerd or root a test skips, except
// with CI=true where it fails: CI must exercise the engine for real.
package testdockerd

import (
	"context"
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

	"github.com/moby/moby/client"
)

var d struct {
	once     sync.Once
	dir      string
	cmd      *exec.Cmd
	host     string
	skip     string
	err      error
	hadDock0 bool
	hadEtc   bool
	hadKey   bool
}

// Host starts the shared dockerd once and returns its DOCKER_HOST value.
func Host(t testing.TB) string {
	t.Helper()
	d.once.Do(start)
	if d.skip != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the Docker Engine tests: %s", d.skip)
		}
		t.Skip(d.skip)
	}
	if d.err != nil {
		t.Fatalf("starting dockerd: %v", d.err)
	}
	return d.host
}

// Dir is the daemon's temp directory (its socket lives there).
func Dir() string { return d.dir }

func start() {
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		d.skip = "dockerd not installed (apt-get install -y docker.io)"
		return
	}
	if os.Geteuid() != 0 {
		d.skip = "dockerd needs root"
		return
	}
	_, err = net.InterfaceByName("docker0")
	d.hadDock0 = err == nil
	_, err = os.Stat("/etc/docker")
	d.hadEtc = err == nil
	_, err = os.Stat("/etc/docker/key.json")
	d.hadKey = err == nil
	if d.dir, d.err = os.MkdirTemp("", "tyd-"); d.err != nil {
		return
	}
	cfg := filepath.Join(d.dir, "daemon.json")
	if d.err = os.WriteFile(cfg, []byte("{}\n"), 0o600); d.err != nil {
		return
	}
	d.host = "unix://" + filepath.Join(d.dir, "docker.sock")
	logf, err := os.Create(filepath.Join(d.dir, "dockerd.log"))
	if err != nil {
		d.err = err
		return
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config-file", cfg, "--data-root", filepath.Join(d.dir, "data"),
		"--exec-root", filepath.Join(d.dir, "exec"), "--pidfile", filepath.Join(d.dir, "dockerd.pid"),
		"-H", d.host, "--bridge=none", "--iptables=false", "--ip6tables=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by go test's timeout takes dockerd along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if d.err = cmd.Start(); d.err != nil {
		return
	}
	d.cmd = cmd
	c, err := client.New(client.WithHost(d.host))
	if err != nil {
		d.err = err
		return
	}
	defer c.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = c.Ping(ctx, client.PingOptions{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
			if len(log) > 2000 {
				log = log[len(log)-2000:]
			}
			d.err = fmt.Errorf("dockerd not ready after 90s: %v\n%s", err, log)
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Stop terminates the dockerd this process started (by its pid) and
// removes what it left behind.
func Stop() {
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if d.dir == "" {
		return
	}
	if !d.hadDock0 {
		if _, err := net.InterfaceByName("docker0"); err == nil {
			_ = exec.Command("ip", "link", "del", "docker0").Run()
		}
	}
	if !d.hadKey {
		os.Remove("/etc/docker/key.json")
		if !d.hadEtc {
			os.Remove("/etc/docker")
		}
	}
	if out, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], d.dir) {
				_ = syscall.Unmount(f[1], syscall.MNT_DETACH)
			}
		}
	}
	os.RemoveAll(d.dir)
}
