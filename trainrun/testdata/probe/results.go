package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// resultsOp runs the operations that attack the results bounds; false for
// an unknown op.
func resultsOp(op string, a argv) bool {
	switch op {
	case "fill": // fill PATH: writes 1 MiB blocks until a write fails; prints the bytes written
		f, err := os.Create(a.str(0))
		check(err)
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(i)
		}
		var total int64
		for {
			n, err := f.Write(buf)
			total += int64(n)
			if err != nil {
				fmt.Println(total)
				fail(err)
			}
		}
	case "alloc-file": // alloc-file PATH MiB: a file of that many MiB of data
		f, err := os.Create(a.str(0))
		check(err)
		buf := make([]byte, 1<<20)
		for i := int64(0); i < a.int(1); i++ {
			_, err := f.Write(buf)
			check(err)
		}
		check(f.Close())
	case "sparse": // sparse PATH SIZE: a file of SIZE bytes that holds no data
		f, err := os.Create(a.str(0))
		check(err)
		check(f.Truncate(a.int(1)))
		check(f.Close())
	case "nest": // nest DIR N: N directories, each inside the last
		check(os.Chdir(a.str(0)))
		for i := int64(0); i < a.int(1); i++ {
			check(os.Mkdir("d", 0o755))
			check(os.Chdir("d"))
		}
	case "longpath": // longpath DIR LEN: nested 200-byte names until the path is longer than LEN
		check(os.Chdir(a.str(0)))
		name := strings.Repeat("n", 200)
		for total := int64(0); total <= a.int(1); total += 201 {
			check(os.Mkdir(name, 0o755))
			check(os.Chdir(name))
		}
	case "many": // many DIR N: N empty files
		for i := int64(0); i < a.int(1); i++ {
			f, err := os.Create(filepath.Join(a.str(0), strconv.FormatInt(i, 10)))
			check(err)
			check(f.Close())
		}
	default:
		return false
	}
	return true
}
