// Command noisy is a hostile train for the station's tests: it prints a
// forged station log record, terminal escapes and 3 MiB of filler to stdout
// and stderr, then writes a result so that the stop succeeds.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	forged := `{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"stop done","station":"forged"}`
	fmt.Println(forged)
	fmt.Fprintln(os.Stderr, forged)
	fmt.Print("\x1b[2J\x1b]0;owned\x07\r")
	filler := strings.Repeat("x", 1023) + "\n"
	for i := 0; i < 3<<10; i++ {
		os.Stdout.WriteString(filler)
	}
	if err := os.WriteFile("/opt/pht_results/out.txt", []byte("ok\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
