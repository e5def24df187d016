package trainrun

import (
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// deniedSyscalls are refused even where Docker's default profile allows
// them: kernel-facing calls no analysis needs (tracing, keyrings, io_uring,
// mounts and namespaces, clock changes). Most are refused by Docker's profile
// already for a process without capabilities; listing them keeps them
// refused whatever a future version of that profile allows.
var deniedSyscalls = []string{
	"add_key", "bpf", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64", "create_module",
	"delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
	"get_kernel_syms", "init_module", "io_uring_enter", "io_uring_register",
	"io_uring_setup", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
	"mount", "mount_setattr", "move_mount", "name_to_handle_at", "nfsservctl",
	"open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
	"process_vm_readv", "process_vm_writev", "ptrace", "quotactl", "reboot",
	"request_key", "sethostname", "setdomainname", "setns", "settimeofday", "swapoff", "swapon", "syslog",
	"umount", "umount2", "unshare", "uselib", "userfaultfd", "vhangup",
}

// Socket families a train may create: local sockets, loopback TCP/UDP, and
// route netlink (how Go and libc list interfaces). Docker's profile allows
// twenty-odd more (bluetooth, packet, XDP, ...); a train has no use for
// them, and each is kernel attack surface. AF_VSOCK (host/guest channels,
// not confined by the network namespace) is among those refused.
var allowedSocketFamilies = []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}

// trainSeccomp is the seccomp filter of a train: an allow list, Docker's
// default profile (github.com/moby/profiles/seccomp, the package the Docker
// engine builds its own default from) resolved for the spec's capabilities
// as Docker resolves it. For a train without capabilities that means
// EPERM for every call not listed, clone only without namespace flags (a
// masked compare of CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP
// against 0), clone3 failing with ENOSYS (its flags sit behind a pointer that
// seccomp cannot inspect, and libc falls back to clone), personality limited
// to the few harmless personas. On top of it, deniedSyscalls are taken out of
// the allow list and socket is limited to allowedSocketFamilies.
func trainSeccomp(sp *specs.Spec) (*specs.LinuxSeccomp, error) {
	sc, err := seccomp.GetDefaultProfile(sp)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	if sc == nil || sc.DefaultAction == specs.ActAllow {
		return nil, errors.New("seccomp profile: the default profile is not an allow list")
	}
	denied := map[string]bool{"socket": true}
	for _, n := range deniedSyscalls {
		denied[n] = true
	}
	var calls []specs.LinuxSyscall
	for _, c := range sc.Syscalls {
		if c.Action == specs.ActAllow {
			c.Names = slices.DeleteFunc(slices.Clone(c.Names), func(n string) bool { return denied[n] })
			if len(c.Names) == 0 {
				continue
			}
		}
		calls = append(calls, c)
	}
	for _, fam := range allowedSocketFamilies {
		calls = append(calls, specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: fam, Op: specs.OpEqualTo}}})
	}
	// Two arguments in one rule are both required (runc ANDs different
	// indexes): netlink, and only its route protocol.
	calls = append(calls, specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow,
		Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_NETLINK, Op: specs.OpEqualTo}, {Index: 2, Value: unix.NETLINK_ROUTE, Op: specs.OpEqualTo}}})
	sc.Syscalls = calls
	return sc, nil
}

// ociSpec is the runtime configuration of one train run. Everything not
// granted here is denied: fresh namespaces, no network but loopback, a
// read-only root, no capabilities, masked kernel files, cgroup limits.
func ociSpec(p process, uid, gid uint32, s RunSpec) (*specs.Spec, error) {
	noexec := []string{"nosuid", "nodev", "noexec"}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: noexec},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=16m"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: ResultsPath, Type: "bind", Source: s.ResultsDir, Options: []string{"rbind", "rw", "nosuid", "nodev", "noexec"}},
	}
	if s.TmpSize > 0 {
		mounts = append(mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=1777", fmt.Sprintf("size=%d", s.TmpSize)}})
	}
	if s.DataDir != "" {
		mounts = append(mounts, specs.Mount{Destination: s.DataPath, Type: "bind", Source: s.DataDir,
			Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}})
	}

	memory, pids := s.Memory, s.PIDs
	res := &specs.LinuxResources{
		// Deny every device node; runc still creates its default set
		// (null, zero, full, random, urandom, tty) in the tmpfs /dev.
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory:  &specs.LinuxMemory{Limit: &memory, Swap: &memory},
		Pids:    &specs.LinuxPids{Limit: &pids},
	}
	if s.CPUs > 0 {
		period := uint64(100000)
		quota := int64(s.CPUs * float64(period))
		if quota < 1000 {
			quota = 1000
		}
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}

	empty := []string{}
	sp := &specs.Spec{
		Version:  specs.Version,
		Hostname: "train",
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{
			Terminal:        false,
			User:            specs.User{UID: uid, GID: gid},
			Args:            p.Args,
			Env:             p.Env,
			Cwd:             p.Cwd,
			NoNewPrivileges: true,
			// A non-nil, empty set: runc drops every capability.
			Capabilities: &specs.LinuxCapabilities{Bounding: empty, Effective: empty, Permitted: empty, Inheritable: empty, Ambient: empty},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: nofile(), Soft: nofile()},
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
			},
		},
		Mounts: mounts,
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources: res,
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
				"/sys/firmware", "/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
	sc, err := trainSeccomp(sp)
	if err != nil {
		return nil, err
	}
	sp.Linux.Seccomp = sc
	return sp, nil
}

// nofile is the train's open-file limit: 1024, or less where the host's
// hard limit is lower (raising it would need CAP_SYS_RESOURCE).
func nofile() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Max < 1024 {
		return l.Max
	}
	return 1024
}
