package testutil

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dockerd is one daemon per test binary, with every path under a temp dir,
// no bridge and no iptables rules; StopDockerd (from TestMain) removes it and
// whatever it left on the host that was not there before.
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

// Dockerd starts the test binary's private Docker engine on first use and
// returns its DOCKER_HOST (unix://...). Without dockerd or root it skips, and
// fails in CI.
func Dockerd(t testing.TB) string {
	t.Helper()
	dockerd.once.Do(startDockerd)
	if dockerd.skip != "" {
		SkipUnlessCI(t, "%s", dockerd.skip)
	}
	if dockerd.err != nil {
		t.Fatalf("starting dockerd: %v", dockerd.err)
	}
	return dockerd.host
}

func startDockerd() {
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		dockerd.skip = "dockerd not installed (apt-get install -y docker.io)"
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

	// A short path: the socket's path must fit in sun_path (108 bytes).
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
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("_ping: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			dockerd.err = fmt.Errorf("dockerd not ready after 60s: %v\n%s", err, Tail(string(log), 2000))
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// StopDockerd stops the daemon, if one was started, and removes what it left.
func StopDockerd() {
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

// Tail is the last n bytes of s, for logs quoted in a failure.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
