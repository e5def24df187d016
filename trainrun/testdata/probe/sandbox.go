package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// sandboxOp runs the operations that probe the seccomp filter; false for an
// unknown op. Each either succeeds (exit 0) or fails with the kernel's error
// on stderr (exit 10).
func sandboxOp(op string, a argv) bool {
	switch op {
	case "clone": // clone FLAGS: starts a child of itself in new namespaces (Go's fork uses clone(2))
		c := exec.Command(os.Args[0], "exit", "0")
		c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: a.uint(0)}
		check(c.Run())
	case "clone3": // clone3 FLAGS: the raw call, as a libc would try it first
		// struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls
		var ca [8]uint64
		ca[0], ca[4] = uint64(a.uint(0)), uint64(syscall.SIGCHLD)
		pid, _, errno := syscall.RawSyscall(435, uintptr(unsafe.Pointer(&ca)), unsafe.Sizeof(ca), 0)
		if errno != 0 {
			fail(fmt.Errorf("clone3: %w", errno))
		}
		if pid == 0 { // the child: leave at once
			syscall.RawSyscall(syscall.SYS_EXIT, 0, 0, 0)
		}
		var st syscall.WaitStatus
		syscall.Wait4(int(pid), &st, 0, nil)
	case "unshare": // unshare FLAGS
		runtime.LockOSThread()
		check(syscall.Unshare(int(a.uint(0))))
	case "socket": // socket FAMILY TYPE PROTO
		fd, err := syscall.Socket(int(a.uint(0)), int(a.uint(1)), int(a.uint(2)))
		check(err)
		syscall.Close(fd)
	case "sethostname": // sethostname NAME
		check(syscall.Sethostname([]byte(a.str(0))))
	case "personality": // personality PERSONA
		_, _, errno := syscall.RawSyscall(syscall.SYS_PERSONALITY, a.uint(0), 0, 0)
		if errno != 0 {
			fail(fmt.Errorf("personality: %w", errno))
		}
	case "threads": // threads N: N goroutines each on its own OS thread (clone without namespace flags)
		n := int(a.uint(0))
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread() // the thread exits with the goroutine: a fresh one per goroutine
				f, err := os.CreateTemp("", "thread-")
				if err == nil {
					_, err = f.WriteString("x")
					f.Close()
					os.Remove(f.Name())
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			check(err)
		}
		fmt.Println("threads", n)
	case "hold": // hold PATH SECONDS: writes PATH, then sleeps (a long run that says it started)
		check(os.WriteFile(a.str(0), []byte("started"), 0o644))
		time.Sleep(time.Duration(a.int(1)) * time.Second)
	case "tcp": // tcp: a loopback TCP echo inside the container
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		check(err)
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				io.Copy(c, c)
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		check(err)
		_, err = c.Write([]byte("ping"))
		check(err)
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		check(err)
		c.Close()
		fmt.Println(string(buf))
	default:
		return false
	}
	return true
}
