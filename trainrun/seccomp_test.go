package trainrun

import (
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func hexArg(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

// wantErrno is wantDenied for a refusal with a given error text.
func wantErrno(t *testing.T, o runOut, text string) {
	t.Helper()
	wantDenied(t, o)
	if !strings.Contains(o.stderr, text) {
		t.Fatalf("refused with %q, want %q", strings.TrimSpace(o.stderr), text)
	}
}

// The attacks of a train on the kernel through namespaces and unusual
// sockets, each refused by the seccomp filter; and what a train normally
// does still works.
func TestRuncSeccompRefusesNamespacesAndVsock(t *testing.T) {
	r := needRunc(t)
	spec := RunSpec{}
	const eperm, enosys = "operation not permitted", "function not implemented"
	for name, flags := range map[string]uint64{
		"user": unix.CLONE_NEWUSER, "net": unix.CLONE_NEWNET, "user+net": unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
		"mount": unix.CLONE_NEWNS, "pid": unix.CLONE_NEWPID, "uts": unix.CLONE_NEWUTS, "ipc": unix.CLONE_NEWIPC,
		"cgroup": unix.CLONE_NEWCGROUP,
	} {
		t.Run("clone "+name, func(t *testing.T) { wantErrno(t, runProbe(t, r, spec, "clone", hexArg(flags)), eperm) })
	}
	t.Run("unshare user", func(t *testing.T) { wantErrno(t, runProbe(t, r, spec, "unshare", hexArg(unix.CLONE_NEWUSER)), eperm) })
	t.Run("clone3", func(t *testing.T) { wantErrno(t, runProbe(t, r, spec, "clone3", hexArg(unix.CLONE_NEWUSER)), enosys) })
	t.Run("clone3 plain", func(t *testing.T) { wantErrno(t, runProbe(t, r, spec, "clone3", "0"), enosys) })
	for name, a := range map[string][3]uint64{
		"vsock":          {unix.AF_VSOCK, unix.SOCK_STREAM, 0},
		"alg":            {unix.AF_ALG, unix.SOCK_SEQPACKET, 0},
		"bluetooth":      {unix.AF_BLUETOOTH, unix.SOCK_STREAM, 0},
		"netlink audit":  {unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT},
		"netlink uevent": {unix.AF_NETLINK, unix.SOCK_DGRAM, unix.NETLINK_KOBJECT_UEVENT},
	} {
		t.Run("socket "+name, func(t *testing.T) {
			wantErrno(t, runProbe(t, r, spec, "socket", hexArg(a[0]), hexArg(a[1]), hexArg(a[2])), eperm)
		})
	}
	t.Run("sethostname", func(t *testing.T) { wantErrno(t, runProbe(t, r, spec, "sethostname", "evil"), eperm) })
	t.Run("personality no-randomize", func(t *testing.T) {
		wantErrno(t, runProbe(t, r, spec, "personality", "0x40000"), eperm) // ADDR_NO_RANDOMIZE
	})

	// What trains do: threads (clone without namespace flags), child
	// processes, files, loopback TCP, listing interfaces (route netlink).
	wantOK(t, runProbe(t, r, spec, "clone", "0"))
	if o := runProbe(t, r, spec, "threads", "32"); o.err != nil || strings.TrimSpace(o.stdout) != "threads 32" {
		t.Fatalf("threads: %v %q %q", o.err, o.stdout, o.stderr)
	}
	wantOK(t, runProbe(t, r, spec, "spawn", "3"))
	wantOK(t, runProbe(t, r, spec, "write", "/tmp/f", "x"))
	if o := runProbe(t, r, spec, "tcp"); o.err != nil || strings.TrimSpace(o.stdout) != "ping" {
		t.Fatalf("loopback tcp: %v %q %q", o.err, o.stdout, o.stderr)
	}
	for name, a := range map[string][3]uint64{
		"unix":          {unix.AF_UNIX, unix.SOCK_STREAM, 0},
		"inet udp":      {unix.AF_INET, unix.SOCK_DGRAM, 0},
		"inet6 tcp":     {unix.AF_INET6, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0},
		"netlink route": {unix.AF_NETLINK, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE},
	} {
		t.Run("socket "+name, func(t *testing.T) {
			wantOK(t, runProbe(t, r, spec, "socket", hexArg(a[0]), hexArg(a[1]), hexArg(a[2])))
		})
	}
	wantOK(t, runProbe(t, r, spec, "personality", "0xffffffff"))
	wantOK(t, runProbe(t, r, spec, "ifaces"))
}

func TestTrainSeccompIsAnAllowList(t *testing.T) {
	s, err := RunSpec{ResultsDir: "/r"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ociSpec(process{Args: []string{"/x"}, Cwd: "/"}, 0, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	sc := sp.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno || sc.DefaultErrnoRet == nil || *sc.DefaultErrnoRet != uint(unix.EPERM) {
		t.Fatalf("default action %+v", sc)
	}
	allowed := map[string]bool{}
	for _, c := range sc.Syscalls {
		if c.Action != specs.ActAllow {
			continue
		}
		for _, n := range c.Names {
			if len(c.Args) == 0 {
				allowed[n] = true
			}
			if n == "socket" && (len(c.Args) == 0 || c.Args[0].Value == unix.AF_VSOCK || c.Args[0].Op != specs.OpEqualTo) {
				t.Errorf("socket rule %+v", c)
			}
		}
	}
	for _, n := range append([]string{"clone", "clone3", "socket", "personality"}, deniedSyscalls...) {
		if allowed[n] {
			t.Errorf("%s is allowed without conditions", n)
		}
	}
	for _, n := range []string{"read", "write", "openat", "mmap", "futex", "exit_group", "execve"} {
		if !allowed[n] {
			t.Errorf("%s is not allowed", n)
		}
	}
}

// The Docker backend applies the same filter through the engine.
func TestDockerSeccompRefusesNamespacesAndVsock(t *testing.T) {
	d := needDocker(t)
	spec := RunSpec{}
	wantErrno(t, runProbe(t, d, spec, "clone", hexArg(unix.CLONE_NEWUSER|unix.CLONE_NEWNET)), "operation not permitted")
	wantErrno(t, runProbe(t, d, spec, "clone3", hexArg(unix.CLONE_NEWUSER)), "function not implemented")
	wantErrno(t, runProbe(t, d, spec, "socket", hexArg(unix.AF_VSOCK), hexArg(unix.SOCK_STREAM), "0"), "operation not permitted")
	wantOK(t, runProbe(t, d, spec, "clone", "0"))
	if o := runProbe(t, d, spec, "tcp"); o.err != nil || strings.TrimSpace(o.stdout) != "ping" {
		t.Fatalf("loopback tcp: %v %q %q", o.err, o.stdout, o.stderr)
	}
}
