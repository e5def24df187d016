package trainrun

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A train must not outlive its station: a station killed with SIGKILL runs
// no deferred cleanup, and runc's foreground "run" does not take the
// container down with it (its init is reparented and goes on running, next
// to the decrypted code in the bundle). Two things close that gap:
//
//   - a watchdog per run, a copy of the station's own executable in its own
//     session, that holds the read end of a pipe from the station: when the
//     pipe closes without the station having said "done", the station is
//     gone, and the watchdog force-deletes the container and removes the
//     bundle. (Pdeathsig on runc would kill runc, not the container, and
//     cgroup.kill needs cgroup v2.)
//   - Cleanup, called by the station at start, removes what a predecessor
//     killed together with its watchdog left: containers whose bundle is
//     gone or abandoned, and abandoned bundles. A bundle is in use while its
//     run holds an flock on its lock file; the kernel drops the lock when
//     the holder dies, so "abandoned" needs no pid files or guesses.

// watchdogEnv marks a process started as a run's watchdog.
const watchdogEnv = "_TRAINYARD_RUNC_WATCHDOG"

// bundleLock is the file in a bundle that its run holds locked.
const bundleLock = "trainyard.lock"

// bundlePrefix names the bundles Run creates in the bundle directory.
const bundlePrefix = "trainyard-bundle-"

func init() {
	// The watchdog is this same executable started again; it takes over
	// before main runs and never returns to it.
	if os.Getenv(watchdogEnv) == "1" {
		os.Exit(watchdogMain(os.Args[1:]))
	}
}

// watchdog is the station side of one run's watchdog.
type watchdog struct {
	cmd  *exec.Cmd
	pipe io.WriteCloser
}

// startWatchdog starts the watchdog for container id in bundle.
func (r *Runc) startWatchdog(id, bundle string) (*watchdog, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("starting the run's watchdog: %w", err)
	}
	bin, err := exec.LookPath(r.binary)
	if err != nil {
		return nil, fmt.Errorf("%w: runc not found (%w)", ErrUnavailable, err)
	}
	return startWatchdog(self, "runc", bin, r.stateDir, id, bundle)
}

// startWatchdog starts this executable as a watchdog: kind and its arguments
// say what to remove should this process die (see watchdogMain).
func startWatchdog(self string, kind string, args ...string) (*watchdog, error) {
	cmd := exec.Command(self)
	cmd.Args = append([]string{"trainyard-watchdog", kind}, args...)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, watchdogEnv+"=") }), watchdogEnv+"=1")
	// Its own session: a signal to the station's process group (a ^C, a
	// kill of the group) does not reach it; only the pipe tells it to act.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("starting the run's watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the run's watchdog: %w", err)
	}
	return &watchdog{cmd: cmd, pipe: pipe}, nil
}

// release tells the watchdog that the station cleaned up itself.
func (w *watchdog) release() {
	_, _ = io.WriteString(w.pipe, "done\n")
	_ = w.pipe.Close()
	_ = w.cmd.Wait()
}

// watchdogMain runs in the watchdog process, with "runc RUNC STATE-DIR ID
// BUNDLE" or "docker HOST RUN-ID IMAGE-TAG".
func watchdogMain(args []string) int {
	if len(args) == 0 || (args[0] == "runc" && len(args) != 5) || (args[0] == "docker" && len(args) != 4) ||
		(args[0] != "runc" && args[0] != "docker") {
		fmt.Fprintln(os.Stderr, "trainyard-watchdog: want runc RUNC STATE-DIR ID BUNDLE, or docker HOST RUN-ID TAG")
		return 2
	}
	// Only the pipe decides; signals meant for the station are not for us.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	line, _ := bufio.NewReader(io.LimitReader(os.Stdin, 64)).ReadString('\n')
	if strings.TrimSpace(line) == "done" {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch args[0] {
	case "runc":
		bin, state, id, bundle := args[1], args[2], args[3], args[4]
		// delete --force kills the container's init (and with it its PID
		// namespace), waits for it and removes the state and the cgroup.
		_ = exec.CommandContext(ctx, bin, "--root", state, "delete", "--force", id).Run()
		_ = os.RemoveAll(bundle)
	case "docker":
		removeDockerRun(ctx, args[1], args[2], args[3])
	}
	return 0
}

// lockBundle creates and holds the lock that marks bundle as in use.
func lockBundle(bundle string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(bundle, bundleLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking bundle: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking bundle: %w", err)
	}
	return func() { f.Close() }, nil
}

// abandonedBundle reports whether no live run holds bundle. A bundle without
// a lock file is taken for one being created unless it is a minute old.
func abandonedBundle(bundle string) bool {
	f, err := os.Open(filepath.Join(bundle, bundleLock))
	if errors.Is(err, os.ErrNotExist) {
		fi, err := os.Stat(bundle)
		if errors.Is(err, os.ErrNotExist) {
			return true
		}
		return err == nil && time.Since(fi.ModTime()) > time.Minute
	}
	if err != nil {
		return false
	}
	defer f.Close()
	// flock conflicts between open files, so this fails while the run holds it.
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// Cleanup removes what runs of a killed predecessor left behind: containers
// in the state directory whose bundle is gone or abandoned (killed and
// deleted), and abandoned bundles in the bundle directory (with the
// decrypted train code in their root filesystems). Bundles of live runs,
// in this process or another, are left alone. A station calls it once at
// start; it is safe to call at any time.
func (r *Runc) Cleanup(ctx context.Context) error {
	if err := r.Available(); err != nil {
		return err
	}
	var errs []error
	if _, err := os.Stat(r.stateDir); err == nil {
		out, err := exec.CommandContext(ctx, r.binary, "--root", r.stateDir, "list", "--format", "json").Output()
		if err != nil {
			return fmt.Errorf("runc list: %w", err)
		}
		var list []struct {
			ID     string `json:"id"`
			Bundle string `json:"bundle"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return fmt.Errorf("runc list: %w", err)
		}
		for _, c := range list {
			if !strings.HasPrefix(c.ID, "trainyard-") || !abandonedBundle(c.Bundle) {
				continue
			}
			if err := r.runc(ctx, "delete", "--force", c.ID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	dir := r.bundleDir
	if dir == "" {
		dir = os.TempDir()
	}
	bundles, _ := filepath.Glob(filepath.Join(dir, bundlePrefix+"*"))
	for _, b := range bundles {
		if abandonedBundle(b) {
			if err := os.RemoveAll(b); err != nil {
				errs = append(errs, fmt.Errorf("removing abandoned bundle: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveTree removes dir and everything in it, first detaching any
// filesystem mounted at or below it (a results filesystem left mounted by a
// killed station), deepest first, so that nothing of it stays reachable.
func RemoveTree(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Field 5 is the mount point, with spaces and the like octal-escaped.
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			mounts = append(mounts, mp)
		}
	}
	f.Close()
	if err := sc.Err(); err != nil {
		return err
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mounts {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", mp, err)
		}
	}
	return os.RemoveAll(abs)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	if v > 255 {
		return 0, false
	}
	return byte(v), true
}
