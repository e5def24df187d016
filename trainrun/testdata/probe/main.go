// Command probe is the test train of package trainrun: each run performs one
// operation inside the container and reports it by its exit code (0 = the
// operation succeeded, 10 = it failed, with the error on stderr).
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: probe OP [ARGS]"))
	}
	a := argv(os.Args[2:])
	switch os.Args[1] {
	case "write": // write PATH CONTENT
		check(os.WriteFile(a.str(0), []byte(a.str(1)), 0o644))
	case "mkdir": // mkdir PATH
		check(os.Mkdir(a.str(0), 0o755))
	case "read": // read PATH: prints the file
		b, err := os.ReadFile(a.str(0))
		check(err)
		os.Stdout.Write(b)
	case "dial": // dial HOST:PORT over TCP
		c, err := net.DialTimeout("tcp", a.str(0), 2*time.Second)
		check(err)
		c.Close()
	case "route": // route HOST:PORT: a UDP connect only looks up a route; it sends nothing
		c, err := net.Dial("udp", a.str(0))
		check(err)
		c.Close()
	case "ifaces": // prints the network interfaces
		ifs, err := net.Interfaces()
		check(err)
		var names []string
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		fmt.Println(strings.Join(names, ","))
	case "status": // status FIELD: prints a line of /proc/self/status (CapEff, NoNewPrivs, Seccomp)
		b, err := os.ReadFile("/proc/self/status")
		check(err)
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && k == a.str(0) {
				fmt.Println(strings.TrimSpace(v))
			}
		}
	case "id":
		fmt.Printf("%d:%d\n", os.Getuid(), os.Getgid())
	case "env": // env NAME
		fmt.Println(os.Getenv(a.str(0)))
	case "pwd":
		wd, err := os.Getwd()
		check(err)
		fmt.Println(wd)
	case "alloc": // alloc MiB: allocates and touches that much memory
		n := int(a.int(0))
		var keep [][]byte
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				if j%4096 == 0 {
					b[j] = 1
				}
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep))
	case "spawn": // spawn N: starts N sleeping copies of itself at once
		n := int(a.int(0))
		var cmds []*exec.Cmd
		defer func() {
			for _, c := range cmds {
				c.Process.Kill()
			}
		}()
		for i := 0; i < n; i++ {
			c := exec.Command(os.Args[0], "sleep", "30")
			if err := c.Start(); err != nil {
				for _, c := range cmds {
					c.Process.Kill()
				}
				fail(fmt.Errorf("process %d: %w", i+1, err))
			}
			cmds = append(cmds, c)
		}
		fmt.Println("spawned", n)
	case "sleep": // sleep SECONDS
		n := int(a.int(0))
		time.Sleep(time.Duration(n) * time.Second)
	case "exit": // exit CODE
		n := int(a.int(0))
		os.Exit(n)
	default:
		if !resultsOp(os.Args[1], a) && !sandboxOp(os.Args[1], a) {
			fail(fmt.Errorf("unknown op %q", os.Args[1]))
		}
	}
}

// argv is an op's arguments; a missing or malformed one ends the probe
// like a failed operation.
type argv []string

func (a argv) str(i int) string {
	if i >= len(a) {
		fail(fmt.Errorf("missing argument %d", i))
	}
	return a[i]
}

// int parses a decimal argument (sizes, counts, seconds).
func (a argv) int(i int) int64 {
	n, err := strconv.ParseInt(a.str(i), 10, 64)
	check(err)
	return n
}

// uint parses a syscall argument, hex allowed (flags such as 0x10000000).
func (a argv) uint(i int) uintptr {
	n, err := strconv.ParseUint(a.str(i), 0, 64)
	check(err)
	return uintptr(n)
}

func check(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "probe:", err)
	os.Exit(10)
}
