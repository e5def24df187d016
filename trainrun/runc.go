package trainrun

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultRuncStateDir is runc's --root for trainyard's containers, kept apart
// from other users of runc on the host.
const DefaultRuncStateDir = "/run/trainyard-runc"

// Runc runs trains with the runc binary. It needs root (it creates cgroups
// and namespaces); see docs/runtime.md for what it guarantees. A Runc is
// safe for concurrent use: every run has its own bundle and container id.
type Runc struct {
	binary    string
	stateDir  string
	bundleDir string
	unpack    UnpackOptions
	userns    *idRange
	// noWatchdog runs without the watchdog (tests of Cleanup alone).
	noWatchdog bool
}

type idRange struct{ host, size uint32 }

var _ Runner = (*Runc)(nil)

// RuncOption configures a Runc runner.
type RuncOption func(*Runc)

// WithRuncBinary sets the runc executable (a name looked up in PATH or a path).
func WithRuncBinary(path string) RuncOption { return func(r *Runc) { r.binary = path } }

// WithStateDir sets runc's state directory (its --root).
func WithStateDir(dir string) RuncOption { return func(r *Runc) { r.stateDir = dir } }

// WithBundleDir sets where bundles (unpacked root filesystems) are created;
// default os.TempDir(). It needs room for the unpacked image.
func WithBundleDir(dir string) RuncOption { return func(r *Runc) { r.bundleDir = dir } }

// WithUnpackOptions bounds the image unpack (size, entry count).
func WithUnpackOptions(o UnpackOptions) RuncOption { return func(r *Runc) { r.unpack = o } }

// WithUserNamespace runs every train in a new user namespace in which
// container ids 0..size-1 are host ids hostID..hostID+size-1 (for example
// 100000, 65536): a process that escaped the container would hold no host
// privilege. The unpacked image is owned by the shifted ids and the results
// directory is handed to the train's shifted uid; the data directory must be
// readable by "others" (the train is not its owner).
func WithUserNamespace(hostID, size uint32) RuncOption {
	return func(r *Runc) { r.userns = &idRange{host: hostID, size: size} }
}

// NewRunc returns a runc-backed Runner.
func NewRunc(opts ...RuncOption) *Runc {
	r := &Runc{binary: "runc", stateDir: DefaultRuncStateDir}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Available reports why this runner cannot run here (nil when it can).
func (r *Runc) Available() error {
	if _, err := exec.LookPath(r.binary); err != nil {
		return fmt.Errorf("%w: runc not found (%w); install it with apt-get install runc", ErrUnavailable, err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: the runc backend needs root", ErrUnavailable)
	}
	return nil
}

// Run unpacks img into a fresh bundle, runs it with runc and removes every
// trace of it afterwards (container state, cgroup, bundle), whatever happens.
func (r *Runc) Run(ctx context.Context, img v1.Image, spec RunSpec) (res Result, err error) {
	if err := r.Available(); err != nil {
		return res, err
	}
	s, p, err := prepare(img, spec)
	if err != nil {
		return res, err
	}

	bundle, err := os.MkdirTemp(r.bundleDir, bundlePrefix)
	if err != nil {
		return res, fmt.Errorf("creating bundle: %w", err)
	}
	defer os.RemoveAll(bundle)
	// Held for the whole run: Cleanup leaves a locked bundle alone.
	unlock, err := lockBundle(bundle)
	if err != nil {
		return res, err
	}
	defer unlock()
	// From here on the bundle holds decrypted code. The watchdog deletes
	// container and bundle should this process die before the deferred
	// removals have run (it is released after them).
	id := "trainyard-" + randomHex(8)
	if !r.noWatchdog {
		wd, err := r.startWatchdog(id, bundle)
		if err != nil {
			return res, err
		}
		defer wd.release()
	}
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return res, fmt.Errorf("creating bundle: %w", err)
	}
	// Explicitly, not through the station's umask (077 in a hardened
	// service would leave a non-root train unable to reach its own files).
	if err := os.Chmod(rootfs, 0o755); err != nil {
		return res, fmt.Errorf("creating bundle: %w", err)
	}
	unpack := r.unpack
	var shift uint32
	if r.userns != nil {
		if r.userns.size == 0 || uint64(r.userns.host)+uint64(r.userns.size) > 1<<32-1 {
			return res, fmt.Errorf("%w: user namespace range %d+%d", ErrInvalidSpec, r.userns.host, r.userns.size)
		}
		shift = r.userns.host
		unpack.IDShift = shift
		if err := os.Chown(rootfs, int(shift), int(shift)); err != nil {
			return res, err
		}
		// The namespaced root must be able to reach the rootfs inside the bundle.
		if err := os.Chmod(bundle, 0o711); err != nil {
			return res, err
		}
		for d := filepath.Dir(bundle); ; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				return res, fmt.Errorf("%w: with a user namespace every parent of the bundle dir must be searchable by others (chmod o+x %s)", ErrInvalidSpec, d)
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	if err := UnpackImage(ctx, img, rootfs, unpack); err != nil {
		return res, err
	}
	// The results live on a filesystem of the cap's size (results.go); its
	// deferred check runs after the container is deleted.
	rf, err := capResults(ctx, s)
	if err != nil {
		return res, err
	}
	if rf != nil {
		defer func() { err = rf.afterRun(ctx, err) }()
	}
	uid, gid, err := userIn(rootfs, p.User)
	if err != nil {
		return res, err
	}
	if r.userns != nil && (uid >= r.userns.size || gid >= r.userns.size) {
		return res, fmt.Errorf("%w: user %d:%d is outside the user namespace's %d ids", ErrInvalidSpec, uid, gid, r.userns.size)
	}
	if uid != 0 || shift != 0 {
		// The results directory belongs to the train's user for the run.
		if err := os.Chown(s.ResultsDir, int(uid+shift), int(gid+shift)); err != nil {
			return res, fmt.Errorf("handing the results directory to uid %d: %w", uid+shift, err)
		}
	}
	ocfg, err := ociSpec(p, uid, gid, s)
	if err != nil {
		return res, err
	}
	if r.userns != nil {
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.userns.host, Size: r.userns.size}}
		ocfg.Linux.Namespaces = append(ocfg.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		ocfg.Linux.UIDMappings, ocfg.Linux.GIDMappings = m, m
	}
	cfgJSON, err := json.MarshalIndent(ocfg, "", "  ")
	if err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfgJSON, 0o600); err != nil {
		return res, fmt.Errorf("writing config.json: %w", err)
	}
	if err := os.MkdirAll(r.stateDir, 0o700); err != nil {
		return res, fmt.Errorf("creating runc state dir: %w", err)
	}

	logFile := filepath.Join(bundle, "runc.log")
	defer r.remove(id)

	runCtx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, r.binary, "--root", r.stateDir, "--log", logFile, "--log-format", "json",
		"run", "--keep", "--bundle", bundle, "--no-new-keyring", id)
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	cmd.Cancel = func() error {
		// Kill the container's init: the kernel then kills its whole PID
		// namespace and runc run returns. Before the container exists, kill
		// runc itself; the deferred delete removes what it left.
		if err := r.runc(context.Background(), "kill", id, "KILL"); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	res.Duration = time.Since(start)

	if runCtx.Err() != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("train run canceled: %w", ctx.Err())
		}
		res.TimedOut = true
		res.ExitCode = exitCode(cmd)
		return res, fmt.Errorf("%w after %s (killed)", ErrTimeout, s.Timeout)
	}
	if msg := runcErrors(logFile); msg != "" {
		if startFailed(msg) {
			return res, fmt.Errorf("%w: runc: %s", ErrStart, msg)
		}
		return res, fmt.Errorf("runc: %s", msg)
	}
	var ee *exec.ExitError
	if runErr != nil && !errors.As(runErr, &ee) {
		return res, fmt.Errorf("runc: %w", runErr)
	}
	res.ExitCode = exitCode(cmd)
	if res.ExitCode == 0 {
		return res, nil
	}
	// --keep left the stopped container and its cgroup in place until the
	// deferred delete, so the kernel's own OOM-kill counter can be read.
	// Where it cannot (unknown cgroup layout), a SIGKILL death (128+9) that
	// no timeout caused is taken for the memory cgroup's doing.
	if oom, known := r.oomKilled(id); known {
		res.OOMKilled = oom
	} else {
		res.OOMKilled = res.ExitCode == 128+9
	}
	return res, &ExitError{Code: res.ExitCode, OOMKilled: res.OOMKilled}
}

func exitCode(cmd *exec.Cmd) int {
	if cmd.ProcessState == nil {
		return -1
	}
	return cmd.ProcessState.ExitCode()
}

// oomKilled reads the container's memory cgroup (paths from runc's
// state.json): memory.oom_control on cgroup v1, memory.events on v2.
func (r *Runc) oomKilled(id string) (oom, known bool) {
	b, err := os.ReadFile(filepath.Join(r.stateDir, id, "state.json"))
	if err != nil {
		return false, false
	}
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	if json.Unmarshal(b, &st) != nil {
		return false, false
	}
	for _, c := range []struct{ key, file string }{{"memory", "memory.oom_control"}, {"", "memory.events"}} {
		dir := st.CgroupPaths[c.key]
		if dir == "" || !strings.HasPrefix(filepath.Clean(dir), "/sys/fs/cgroup/") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, c.file))
		if err != nil {
			continue
		}
		n, ok := oomKillCount(io.LimitReader(f, 64<<10))
		f.Close()
		if ok {
			return n > 0, true
		}
	}
	return false, false
}

// oomKillCount finds the "oom_kill N" line of a memory.oom_control (v1) or
// memory.events (v2) file.
func oomKillCount(r io.Reader) (uint64, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if ok && k == "oom_kill" {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// remove force-deletes the container; runc run normally already has.
func (r *Runc) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = r.runc(ctx, "delete", "--force", id)
}

func (r *Runc) runc(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, r.binary, append([]string{"--root", r.stateDir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("runc %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startFailed reports the OCI runtime's words for a program it could not
// exec inside the container ("unable to start container process: exec:
// ..." in runc 1.1+, "container process caused: exec: ..." before; Docker
// passes the same text on from its runtime).
func startFailed(msg string) bool {
	return startFailure.MatchString(msg)
}

var startFailure = regexp.MustCompile(`container process[^:]*: exec: `)

// runcErrors returns runc's own error-level log messages, which tell a
// failure to start the container apart from the train's own exit code.
func runcErrors(logFile string) string {
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	var msgs []string
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msgs = append(msgs, e.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}

// userIn resolves a user name against the unpacked image, through an
// os.Root so a planted symlink cannot make us read a host file.
func userIn(rootfs, user string) (uint32, uint32, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return 0, 0, err
	}
	defer root.Close()
	return resolveUser(root.FS(), user)
}

func checkDir(dir, what string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrInvalidSpec, what, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrInvalidSpec, what, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%w: %s %s is not a directory", ErrInvalidSpec, what, abs)
	}
	return abs, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
