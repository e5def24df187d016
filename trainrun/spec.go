package trainrun

import (
	"fmt"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// deniedSyscalls are refused with EPERM on top of the empty capability set:
// kernel-facing calls no analysis needs and that widen the attack surface.
var deniedSyscalls = []string{
	"add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
	"delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
	"get_kernel_syms", "init_module", "io_uring_enter", "io_uring_register",
	"io_uring_setup", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
	"mount", "mount_setattr", "move_mount", "name_to_handle_at", "nfsservctl",
	"open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
	"process_vm_readv", "process_vm_writev", "ptrace", "quotactl", "reboot",
	"request_key", "setns", "settimeofday", "swapoff", "swapon", "syslog",
	"umount", "umount2", "unshare", "uselib", "userfaultfd", "vhangup",
}

// ociSpec is the runtime configuration of one train run. Everything not
// granted here is denied: fresh namespaces, no network but loopback, a
// read-only root, no capabilities, masked kernel files, cgroup limits.
func ociSpec(p process, uid, gid uint32, s RunSpec) *specs.Spec {
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

	eperm := uint(syscall.EPERM)
	empty := []string{}
	return &specs.Spec{
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
			Seccomp: &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Syscalls:      []specs.LinuxSyscall{{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: &eperm}},
			},
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
