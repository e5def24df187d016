package trainrun

import (
	"bytes"
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

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/train"
)

var probe struct {
	once sync.Once
	dir  string
	img  v1.Image
	err  error
}

func TestMain(m *testing.M) {
	if os.Getenv(testStationEnv) == "1" {
		os.Exit(testStationMain())
	}
	code := m.Run()
	testutil.StopDockerd()
	if probe.dir != "" {
		os.RemoveAll(probe.dir)
	}
	os.Exit(code)
}

// probeImage builds testdata/probe statically into a train image once.
func probeImage(t *testing.T) v1.Image {
	t.Helper()
	probe.once.Do(func() {
		probe.dir, probe.err = os.MkdirTemp("", "trainrun-probe-")
		if probe.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		probe.img, probe.err = train.ImageFromGoPackage(ctx, "testdata/probe", probe.dir)
	})
	if probe.err != nil {
		t.Fatalf("building the probe image: %v", probe.err)
	}
	return probe.img
}

// needRunc skips unless real runc can run here.
func needRunc(t *testing.T) *Runc {
	t.Helper()
	r := NewRunc(WithStateDir(t.TempDir()), WithBundleDir(t.TempDir()))
	if err := r.Available(); err != nil {
		skipOrFail(t, fmt.Sprintf("runc backend not usable here (%v); as root: apt-get install -y runc", err))
	}
	return r
}

// skipOrFail skips a test that needs what this machine lacks, except in CI
// (CI=true), where a missing runc or dockerd must fail the run.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

type runOut struct {
	res            Result
	err            error
	stdout, stderr string
}

func runProbe(t *testing.T, r Runner, spec RunSpec, args ...string) runOut {
	t.Helper()
	var stdout, stderr bytes.Buffer
	spec.Args = append([]string{"/opt/pht_train/probe"}, args...)
	spec.Stdout, spec.Stderr = &stdout, &stderr
	if spec.ResultsDir == "" {
		spec.ResultsDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := r.Run(ctx, probeImage(t), spec)
	return runOut{res, err, stdout.String(), stderr.String()}
}

// wantOK and wantDenied check the probe's verdict: exit 0, or exit 10 (the
// operation failed inside the container).
func wantOK(t *testing.T, o runOut) {
	t.Helper()
	if o.err != nil {
		t.Fatalf("run failed: %v (stderr %q)", o.err, o.stderr)
	}
}

func wantDenied(t *testing.T, o runOut) {
	t.Helper()
	var ee *ExitError
	if !errors.As(o.err, &ee) || ee.Code != 10 {
		t.Fatalf("expected the operation to be refused inside the container (exit 10), got err=%v stdout=%q stderr=%q", o.err, o.stdout, o.stderr)
	}
	t.Logf("refused as expected: %s", strings.TrimSpace(o.stderr))
}

func TestRuncResultsArriveAndDataIsReadOnly(t *testing.T) {
	r := needRunc(t)
	results, data := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "cohort.csv"), []byte("age,n\n40,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := RunSpec{ResultsDir: results, DataDir: data}

	wantOK(t, runProbe(t, r, spec, "write", "/opt/pht_results/out.txt", "hello station"))
	got, err := os.ReadFile(filepath.Join(results, "out.txt"))
	if err != nil || string(got) != "hello station" {
		t.Fatalf("result on the host = %q, %v", got, err)
	}

	o := runProbe(t, r, spec, "read", "/opt/pht_data/cohort.csv")
	wantOK(t, o)
	if o.stdout != "age,n\n40,3\n" {
		t.Fatalf("data read inside = %q", o.stdout)
	}
	wantDenied(t, runProbe(t, r, spec, "write", "/opt/pht_data/cohort.csv", "tampered"))
	wantDenied(t, runProbe(t, r, spec, "write", "/opt/pht_data/new.csv", "x"))
	if b, _ := os.ReadFile(filepath.Join(data, "cohort.csv")); string(b) != "age,n\n40,3\n" {
		t.Fatalf("data changed on the host: %q", b)
	}

	// A custom mount point for the data.
	spec.DataPath = "/data"
	wantOK(t, runProbe(t, r, spec, "read", "/data/cohort.csv"))
}

func TestRuncCannotWriteOutsideResults(t *testing.T) {
	r := needRunc(t)
	spec := RunSpec{}
	for _, p := range []string{"/evil", "/opt/pht_train/evil", "/opt/pht_train/probe", "/etc/evil", "/opt/evil", "/proc/sys/kernel/hostname"} {
		t.Run(p, func(t *testing.T) { wantDenied(t, runProbe(t, r, spec, "write", p, "x")) })
	}
	wantDenied(t, runProbe(t, r, spec, "mkdir", "/opt/pht_train/sub"))
	// /tmp is a bounded tmpfs and may be written; it vanishes with the run.
	wantOK(t, runProbe(t, r, spec, "write", "/tmp/scratch", "x"))
	small := RunSpec{TmpSize: 1 << 20}
	wantDenied(t, runProbe(t, r, small, "write", "/proc/self/oom_score_adj", "-1000"))
}

func TestRuncNoNetwork(t *testing.T) {
	r := needRunc(t)
	// A listener on the host's loopback: inside the container 127.0.0.1 is
	// the container's own loopback, so this must not connect.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if c, err := net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatalf("the host itself cannot reach its listener: %v", err)
	} else {
		c.Close()
	}
	spec := RunSpec{}
	wantDenied(t, runProbe(t, r, spec, "dial", ln.Addr().String()))
	// An outside address (TEST-NET-1, RFC 5737): a UDP connect only asks the
	// kernel for a route and sends no packet; the container must have none.
	wantDenied(t, runProbe(t, r, spec, "route", "192.0.2.1:9"))
	wantDenied(t, runProbe(t, r, spec, "route", "[2001:db8::1]:9"))
	o := runProbe(t, r, spec, "ifaces")
	wantOK(t, o)
	if strings.TrimSpace(o.stdout) != "lo" {
		t.Fatalf("interfaces inside = %q, want only lo", o.stdout)
	}
}

func TestRuncPrivilegesDropped(t *testing.T) {
	r := needRunc(t)
	for field, want := range map[string]string{"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"} {
		o := runProbe(t, r, RunSpec{}, "status", field)
		wantOK(t, o)
		if got := strings.TrimSpace(o.stdout); got != want {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}
}

func TestRuncMemoryLimit(t *testing.T) {
	r := needRunc(t)
	o := runProbe(t, r, RunSpec{Memory: 32 << 20}, "alloc", "256")
	if !errors.Is(o.err, ErrOOM) || !o.res.OOMKilled {
		t.Fatalf("expected an OOM kill, got err=%v res=%+v stdout=%q", o.err, o.res, o.stdout)
	}
	// The same allocation fits under a larger limit.
	wantOK(t, runProbe(t, r, RunSpec{Memory: 512 << 20}, "alloc", "64"))
}

func TestRuncTimeoutKills(t *testing.T) {
	r := needRunc(t)
	start := time.Now()
	o := runProbe(t, r, RunSpec{Timeout: time.Second}, "sleep", "60")
	if !errors.Is(o.err, ErrTimeout) || !o.res.TimedOut {
		t.Fatalf("expected a timeout, got %v %+v", o.err, o.res)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the timeout took %s to kill the train", d)
	}
}

func TestRuncCancel(t *testing.T) {
	r := needRunc(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := r.Run(ctx, probeImage(t), RunSpec{ResultsDir: t.TempDir(), Args: []string{"/opt/pht_train/probe", "sleep", "60"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expected the caller's deadline, got %v", err)
	}
}

func TestRuncExitCodeSurfaces(t *testing.T) {
	r := needRunc(t)
	o := runProbe(t, r, RunSpec{}, "exit", "7")
	var ee *ExitError
	if !errors.As(o.err, &ee) || ee.Code != 7 || o.res.ExitCode != 7 || !errors.Is(o.err, ErrExit) || errors.Is(o.err, ErrOOM) {
		t.Fatalf("expected exit code 7, got %v %+v", o.err, o.res)
	}
	if !strings.Contains(o.err.Error(), "7") {
		t.Fatalf("the error does not name the code: %v", o.err)
	}
	wantOK(t, runProbe(t, r, RunSpec{}, "exit", "0"))
}

func TestRuncImageConfigAndOverrides(t *testing.T) {
	r := needRunc(t)
	o := runProbe(t, r, RunSpec{}, "pwd")
	wantOK(t, o)
	if strings.TrimSpace(o.stdout) != "/"+train.TrainDir {
		t.Fatalf("working dir = %q, want the image's /%s", o.stdout, train.TrainDir)
	}
	o = runProbe(t, r, RunSpec{WorkingDir: "/opt/pht_results"}, "pwd")
	wantOK(t, o)
	if strings.TrimSpace(o.stdout) != ResultsPath {
		t.Fatalf("working dir override = %q", o.stdout)
	}
	o = runProbe(t, r, RunSpec{Env: []string{"STATION=hospital-a"}}, "env", "STATION")
	wantOK(t, o)
	if strings.TrimSpace(o.stdout) != "hospital-a" {
		t.Fatalf("env = %q", o.stdout)
	}
	// Without Args the image's entrypoint runs (the probe without an op exits 10).
	var stderr bytes.Buffer
	_, err := r.Run(context.Background(), probeImage(t), RunSpec{ResultsDir: t.TempDir(), Stderr: &stderr})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 10 || !strings.Contains(stderr.String(), "usage") {
		t.Fatalf("entrypoint run: %v %q", err, stderr.String())
	}
}

func TestRuncNonRootUser(t *testing.T) {
	r := needRunc(t)
	results := t.TempDir()
	spec := RunSpec{ResultsDir: results, User: "1000:1000"}
	o := runProbe(t, r, spec, "id")
	wantOK(t, o)
	if strings.TrimSpace(o.stdout) != "1000:1000" {
		t.Fatalf("id = %q", o.stdout)
	}
	wantOK(t, runProbe(t, r, spec, "write", "/opt/pht_results/r.txt", "x"))
	if _, err := os.Stat(filepath.Join(results, "r.txt")); err != nil {
		t.Fatal(err)
	}
	_, err := r.Run(context.Background(), probeImage(t), RunSpec{ResultsDir: results, User: "nosuchuser", Args: []string{"/opt/pht_train/probe", "id"}})
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("unknown user: %v", err)
	}
}

func TestRuncLeavesNothingBehind(t *testing.T) {
	state, bundles := t.TempDir(), t.TempDir()
	r := NewRunc(WithStateDir(state), WithBundleDir(bundles))
	if err := r.Available(); err != nil {
		skipOrFail(t, fmt.Sprintf("runc backend not usable here (%v)", err))
	}
	runProbe(t, r, RunSpec{}, "exit", "3")
	runProbe(t, r, RunSpec{Timeout: 500 * time.Millisecond}, "sleep", "30")
	for _, d := range []string{state, bundles} {
		entries, _ := os.ReadDir(d)
		if len(entries) != 0 {
			t.Errorf("%s still holds %d entries after the runs", d, len(entries))
		}
	}
	out, _ := exec.Command("runc", "--root", state, "list", "-q").CombinedOutput()
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("runc still lists containers: %s", out)
	}
}

func TestRuncRejectsBadSpec(t *testing.T) {
	r := needRunc(t)
	img := probeImage(t)
	for name, spec := range map[string]RunSpec{
		"no results dir":    {},
		"missing data dir":  {ResultsDir: t.TempDir(), DataDir: "/nonexistent/trainyard"},
		"relative datapath": {ResultsDir: t.TempDir(), DataPath: "data"},
		"tiny memory":       {ResultsDir: t.TempDir(), Memory: 1024},
		"data in results":   {ResultsDir: t.TempDir(), DataPath: "/opt/pht_results/data"},
		"data over /opt":    {ResultsDir: t.TempDir(), DataPath: "/opt"},
		"data over proc":    {ResultsDir: t.TempDir(), DataPath: "/proc/x"},
		"unclean datapath":  {ResultsDir: t.TempDir(), DataPath: "/data/../etc"},
	} {
		if _, err := r.Run(context.Background(), img, spec); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: expected ErrInvalidSpec, got %v", name, err)
		}
	}
}

func ExampleRunc_Run() {
	img, err := train.ImageFromBinary("/path/to/static-train")
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := NewRunc().Run(context.Background(), img, RunSpec{
		ResultsDir: "/var/lib/station/results/train-1",
		DataDir:    "/var/lib/station/data",
		Memory:     256 << 20,
		Timeout:    10 * time.Minute,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
	})
	fmt.Println(res.ExitCode, err)
}

func TestRuncUserNamespace(t *testing.T) {
	needRunc(t)
	bundles := t.TempDir()
	// The namespaced root must be able to reach its rootfs through the bundle's parents.
	os.Chmod(bundles, 0o711)
	os.Chmod(filepath.Dir(bundles), 0o711)
	r := NewRunc(WithStateDir(t.TempDir()), WithBundleDir(bundles), WithUserNamespace(200000, 65536))
	results, data := t.TempDir(), t.TempDir()
	os.Chmod(data, 0o755)
	os.WriteFile(filepath.Join(data, "open.csv"), []byte("n\n1\n"), 0o644)
	os.WriteFile(filepath.Join(data, "private.csv"), []byte("secret"), 0o600)
	spec := RunSpec{ResultsDir: results, DataDir: data}

	o := runProbe(t, r, spec, "id")
	wantOK(t, o)
	if strings.TrimSpace(o.stdout) != "0:0" {
		t.Fatalf("id inside = %q, want root of the namespace", o.stdout)
	}
	wantOK(t, runProbe(t, r, spec, "write", "/opt/pht_results/r.txt", "x"))
	fi, err := os.Stat(filepath.Join(results, "r.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 200000 {
		t.Fatalf("result owned by host uid %d, want 200000", st.Uid)
	}
	wantOK(t, runProbe(t, r, spec, "read", "/opt/pht_data/open.csv"))
	// Host root's private file is not the namespaced root's.
	wantDenied(t, runProbe(t, r, spec, "read", "/opt/pht_data/private.csv"))
	wantDenied(t, runProbe(t, r, spec, "write", "/opt/pht_train/evil", "x"))
	wantDenied(t, runProbe(t, r, spec, "dial", "127.0.0.1:9"))
	if _, err := r.Run(context.Background(), probeImage(t), RunSpec{ResultsDir: results, User: "70000", Args: []string{"/opt/pht_train/probe", "id"}}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("uid outside the mapping: %v", err)
	}
}

func TestRuncPIDsLimit(t *testing.T) {
	r := needRunc(t)
	wantDenied(t, runProbe(t, r, RunSpec{PIDs: 12}, "spawn", "40"))
	wantOK(t, runProbe(t, r, RunSpec{PIDs: 256}, "spawn", "5"))
}

func TestOCISpec(t *testing.T) {
	s, err := RunSpec{ResultsDir: "/r", DataDir: "/d", CPUs: 0.5}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ociSpec(process{Args: []string{"/x"}, Cwd: "/"}, 0, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	if !sp.Root.Readonly || !sp.Process.NoNewPrivileges || sp.Process.Capabilities == nil || len(sp.Process.Capabilities.Bounding) != 0 {
		t.Fatal("root not read-only, privileges not dropped")
	}
	ns := map[string]bool{}
	for _, n := range sp.Linux.Namespaces {
		ns[string(n.Type)] = n.Path == ""
	}
	for _, want := range []string{"pid", "network", "ipc", "uts", "mount", "cgroup"} {
		if !ns[want] {
			t.Errorf("no fresh %s namespace", want)
		}
	}
	if *sp.Linux.Resources.CPU.Quota != 50000 || *sp.Linux.Resources.CPU.Period != 100000 ||
		*sp.Linux.Resources.Memory.Limit != DefaultMemory || *sp.Linux.Resources.Pids.Limit != DefaultPIDs {
		t.Errorf("limits %+v", sp.Linux.Resources)
	}
	for _, m := range sp.Mounts {
		opts := strings.Join(m.Options, ",")
		switch m.Destination {
		case DefaultDataPath:
			if m.Source != "/d" || !strings.Contains(opts, "ro") || strings.Contains(opts, "rw") {
				t.Errorf("data mount %+v", m)
			}
		case ResultsPath:
			if m.Source != "/r" || !strings.Contains(opts, "noexec") {
				t.Errorf("results mount %+v", m)
			}
		}
	}
}

func TestRuncSelfKillIsNotOOM(t *testing.T) {
	r := needRunc(t)
	// Exit code 137 looks like a SIGKILL death; the memory cgroup's own
	// OOM-kill counter tells it apart. (A namespace's init cannot SIGKILL itself.)
	o := runProbe(t, r, RunSpec{}, "exit", "137")
	var ee *ExitError
	if !errors.As(o.err, &ee) || ee.Code != 137 {
		t.Fatalf("exit 137: %v", o.err)
	}
	if errors.Is(o.err, ErrOOM) || o.res.OOMKilled {
		t.Fatalf("a plain exit code 137 was reported as an OOM kill: %v", o.err)
	}
}

func TestOOMKillCount(t *testing.T) {
	for in, want := range map[string]uint64{
		"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n": 3,
		"low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n":     1,
	} {
		if n, ok := oomKillCount(strings.NewReader(in)); !ok || n != want {
			t.Errorf("%q -> %d %v", in, n, ok)
		}
	}
	if _, ok := oomKillCount(strings.NewReader("under_oom 0\n")); ok {
		t.Error("found a count where there is none")
	}
}

func FuzzOOMKillCount(f *testing.F) {
	f.Add("oom_kill 1\n")
	f.Add("oom_kill x\n")
	f.Fuzz(func(t *testing.T, s string) { oomKillCount(strings.NewReader(s)) })
}

// TestRuncNonRootUnderStrictUmask: a station started with umask 077 (a
// hardened service) still gives a non-root train a root filesystem it can
// use: the bundle and the unpacked directories get their modes explicitly,
// not through the umask.
func TestRuncNonRootUnderStrictUmask(t *testing.T) {
	r := needRunc(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	results := t.TempDir()
	os.Chmod(results, 0o777)
	o := runProbe(t, r, RunSpec{ResultsDir: results, User: "1000:1000"}, "id")
	wantOK(t, o)
	if strings.TrimSpace(o.stdout) != "1000:1000" {
		t.Fatalf("id = %q", o.stdout)
	}
}
