// Package trainrun executes a train image at a station behind one small
// interface, [Runner]. Two backends implement it:
//
//   - [Runc] (the default): unpacks the image into an OCI bundle and runs it
//     with the runc binary in fresh namespaces (no network but loopback), a
//     read-only root filesystem, cgroup limits, no capabilities and no new
//     privileges. Only /opt/pht_results is writable (plus a bounded /tmp).
//   - [Docker]: the same contract over the Docker Engine API, for stations
//     that run Docker.
//
// The station's data directory is mounted read-only; results written to
// /opt/pht_results inside the container arrive in [RunSpec.ResultsDir].
// See docs/runtime.md for the isolation guarantees and their limits.
package trainrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/train"
)

// Paths inside the container, kept from the PHT train layout.
const (
	ResultsPath     = "/" + train.ResultsDir
	DefaultDataPath = "/opt/pht_data"
)

// Defaults applied when a RunSpec leaves a limit at zero.
const (
	DefaultMemory  int64 = 512 << 20
	DefaultPIDs    int64 = 256
	DefaultTmpSize int64 = 64 << 20
	DefaultTimeout       = time.Hour
)

// Errors callers branch on. A failed run returns one of these wrapped, or an
// *ExitError (which matches ErrExit and, when killed for memory, ErrOOM).
var (
	// ErrExit: the train ran and exited with a non-zero code.
	ErrExit = errors.New("train exited with non-zero status")
	// ErrTimeout: the train ran longer than RunSpec.Timeout and was killed.
	ErrTimeout = errors.New("train timed out")
	// ErrOOM: the train was killed for exceeding its memory limit.
	ErrOOM = errors.New("train killed: out of memory")
	// ErrUnsafeImage: the image holds an entry that would escape the root
	// filesystem, an unsupported file type, or exceeds the unpack limits.
	ErrUnsafeImage = errors.New("unsafe image content")
	// ErrUnavailable: the backend cannot run here (runc missing, not root,
	// Docker daemon unreachable).
	ErrUnavailable = errors.New("execution backend unavailable")
	// ErrInvalidSpec: the RunSpec or the image config cannot be run.
	ErrInvalidSpec = errors.New("invalid run spec")
	// ErrStart: the train's program could not be started (missing, not
	// executable, a directory, not a program for this machine): the
	// image's doing, like a non-zero exit, not the runtime's.
	ErrStart = errors.New("train program could not be started")
)

// Runner executes one train image to completion.
type Runner interface {
	// Run starts img as specified, waits for it and returns its result.
	// A non-zero exit, a timeout or an OOM kill is an error (see ErrExit,
	// ErrTimeout, ErrOOM); the Result is filled in as far as it is known.
	Run(ctx context.Context, img v1.Image, spec RunSpec) (Result, error)
}

// RunSpec says how to run one train.
type RunSpec struct {
	// ResultsDir is a host directory mounted read-write at /opt/pht_results.
	// Required. Its contents are visible to the train (previous results).
	ResultsDir string
	// DataDir is a host directory mounted read-only at DataPath. Optional.
	DataDir string
	// DataPath is where DataDir appears inside; default /opt/pht_data.
	DataPath string

	// Args replaces the image's entrypoint and cmd when set.
	Args []string
	// WorkingDir replaces the image's working directory when set.
	WorkingDir string
	// Env adds to (and overrides by name) the image's environment, "K=V".
	Env []string
	// User replaces the image's user: "uid" or "uid:gid" (numeric), or a
	// name found in the image's /etc/passwd (runc backend).
	User string

	// Memory is the memory limit in bytes (swap included); 0 = DefaultMemory.
	Memory int64
	// PIDs is the limit on processes/threads; 0 = DefaultPIDs.
	PIDs int64
	// CPUs is the CPU quota in cores (0.5 = half a core); 0 = unlimited.
	CPUs float64
	// TmpSize bounds the tmpfs mounted at /tmp; 0 = DefaultTmpSize, <0 = no /tmp.
	TmpSize int64
	// Timeout kills the train when exceeded; 0 = DefaultTimeout.
	Timeout time.Duration
	// MaxResults caps the results in bytes, counted by apparent size (a
	// sparse file counts as big as it claims); 0 = DefaultMaxResults, < 0 =
	// no cap. The runc backend enforces it while the train runs with a
	// filesystem of that size on ResultsDir (see ResultsFS and MountResults);
	// the Docker backend while it copies the results out.
	MaxResults int64

	// Stdout and Stderr receive the train's output; nil discards it.
	Stdout, Stderr io.Writer
}

// Result describes a finished run.
type Result struct {
	ExitCode  int
	Duration  time.Duration
	OOMKilled bool
	TimedOut  bool
}

// ExitError reports a train that ended with a non-zero code. It matches
// ErrExit with errors.Is, and ErrOOM too when OOMKilled.
type ExitError struct {
	Code      int
	OOMKilled bool
}

func (e *ExitError) Error() string {
	if e.OOMKilled {
		return fmt.Sprintf("train killed by the memory limit (exit code %d)", e.Code)
	}
	return fmt.Sprintf("train exited with code %d", e.Code)
}

// Is lets errors.Is match the sentinels.
func (e *ExitError) Is(target error) bool {
	return target == ErrExit || (e.OOMKilled && target == ErrOOM)
}

// withDefaults returns spec with zero limits filled in and checks it.
func (s RunSpec) withDefaults() (RunSpec, error) {
	if s.ResultsDir == "" {
		return s, fmt.Errorf("%w: ResultsDir is required", ErrInvalidSpec)
	}
	if s.DataPath == "" {
		s.DataPath = DefaultDataPath
	}
	if !strings.HasPrefix(s.DataPath, "/") || path.Clean(s.DataPath) != s.DataPath || s.DataPath == "/" {
		return s, fmt.Errorf("%w: DataPath %q must be a clean absolute path", ErrInvalidSpec, s.DataPath)
	}
	// The data must not shadow or sit inside another mount of the run.
	for _, m := range []string{ResultsPath, "/proc", "/sys", "/dev", "/tmp", "/" + train.TrainDir} {
		if s.DataPath == m || strings.HasPrefix(s.DataPath, m+"/") || strings.HasPrefix(m, s.DataPath+"/") {
			return s, fmt.Errorf("%w: DataPath %q overlaps %s", ErrInvalidSpec, s.DataPath, m)
		}
	}
	if s.Memory == 0 {
		s.Memory = DefaultMemory
	}
	if s.PIDs == 0 {
		s.PIDs = DefaultPIDs
	}
	if s.TmpSize == 0 {
		s.TmpSize = DefaultTmpSize
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.MaxResults == 0 {
		s.MaxResults = DefaultMaxResults
	}
	if s.MaxResults > 0 && s.MaxResults < MinMaxResults {
		return s, fmt.Errorf("%w: MaxResults %d is below the minimum %d bytes", ErrInvalidSpec, s.MaxResults, MinMaxResults)
	}
	if s.Memory < 4<<20 || s.PIDs < 1 || s.CPUs < 0 || s.Timeout < 0 {
		return s, fmt.Errorf("%w: limits out of range (memory >= 4 MiB, pids >= 1, cpus >= 0, timeout >= 0)", ErrInvalidSpec)
	}
	if s.Stdout == nil {
		s.Stdout = io.Discard
	}
	if s.Stderr == nil {
		s.Stderr = io.Discard
	}
	return s, nil
}

// process is the command line resolved from the image config and the spec.
type process struct {
	Args []string
	Env  []string
	Cwd  string
	User string
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// resolveProcess merges the image's config with the spec's overrides the way
// Docker does: Args replaces entrypoint+cmd, Env entries override by name.
// prepare is what every backend does first: defaults, the host directories
// checked, and the process resolved from the image config and the spec.
func prepare(img v1.Image, spec RunSpec) (RunSpec, process, error) {
	s, err := spec.withDefaults()
	if err != nil {
		return s, process{}, err
	}
	if s.ResultsDir, err = checkDir(s.ResultsDir, "ResultsDir"); err != nil {
		return s, process{}, err
	}
	if s.DataDir != "" {
		if s.DataDir, err = checkDir(s.DataDir, "DataDir"); err != nil {
			return s, process{}, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return s, process{}, fmt.Errorf("reading image config: %w", err)
	}
	p, err := resolveProcess(cfg, s)
	return s, p, err
}

func resolveProcess(cfg *v1.ConfigFile, s RunSpec) (process, error) {
	var c v1.Config
	if cfg != nil {
		c = cfg.Config
	}
	p := process{Cwd: c.WorkingDir, User: c.User}
	if len(s.Args) > 0 {
		p.Args = append([]string(nil), s.Args...)
	} else {
		p.Args = append(append([]string(nil), c.Entrypoint...), c.Cmd...)
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return p, fmt.Errorf("%w: no command (the image has no entrypoint or cmd and none was given)", ErrInvalidSpec)
	}
	if s.WorkingDir != "" {
		p.Cwd = s.WorkingDir
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if !strings.HasPrefix(p.Cwd, "/") {
		return p, fmt.Errorf("%w: working directory %q is not absolute", ErrInvalidSpec, p.Cwd)
	}
	if s.User != "" {
		p.User = s.User
	}
	p.Env = mergeEnv(c.Env, s.Env)
	return p, nil
}

func mergeEnv(base, over []string) []string {
	var out []string
	idx := map[string]int{}
	for _, list := range [][]string{{defaultPath}, base, over} {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if k == "" {
				continue
			}
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// Backend names accepted by New (and by the station's --runtime flag).
const (
	BackendRunc   = "runc"
	BackendDocker = "docker"
)

// New returns the Runner for a backend name: "runc" (also "") or "docker".
// The Docker runner holds connections; callers that are done with it may
// close it through io.Closer.
func New(backend string) (Runner, error) {
	switch backend {
	case "", BackendRunc:
		return NewRunc(), nil
	case BackendDocker:
		return NewDocker()
	default:
		return nil, fmt.Errorf("%w: unknown execution backend %q (want %s or %s)", ErrInvalidSpec, backend, BackendRunc, BackendDocker)
	}
}
