package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// sandboxOp runs the operations that probe the seccomp filter; false for an
// unknown op. Each either succeeds (exit 0) or fails with the kernel's error
// on stderr (exit 10).
func sandboxOp(op string, args []string) bool {
	arg := func(i int) string {
		if i >= len(args) {
			fail(fmt.Errorf("missing argument %d", i))
		}
		return args[i]
	}
	num := func(i int) uintptr {
		n, err := strconv.ParseUint(arg(i), 0, 64)
		check(err)
		return uintptr(n)
	}
	switch op {
	case "clone": // clone FLAGS: starts a child of itself in new namespaces (Go's fork uses clone(2))
		c := exec.Command(os.Args[0], "exit", "0")
		c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: num(0)}
		check(c.Run())
	case "clone3": // clone3 FLAGS: the raw call, as a libc would try it first
		// struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls
		var ca [8]uint64
		ca[0], ca[4] = uint64(num(0)), uint64(syscall.SIGCHLD)
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
		check(syscall.Unshare(int(num(0))))
	case "socket": // socket FAMILY TYPE PROTO
		fd, err := syscall.Socket(int(num(0)), int(num(1)), int(num(2)))
		check(err)
		syscall.Close(fd)
	case "sethostname": // sethostname NAME
		check(syscall.Sethostname([]byte(arg(0))))
	case "personality": // personality PERSONA
		_, _, errno := syscall.RawSyscall(syscall.SYS_PERSONALITY, num(0), 0, 0)
		if errno != 0 {
			fail(fmt.Errorf("personality: %w", errno))
		}
	case "threads": // threads N: N goroutines each on its own OS thread (clone without namespace flags)
		n := int(num(0))
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
		check(os.WriteFile(arg(0), []byte("started"), 0o644))
		n, err := strconv.Atoi(arg(1))
		check(err)
		time.Sleep(time.Duration(n) * time.Second)
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
