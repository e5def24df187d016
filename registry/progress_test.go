package registry_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/trainyard/trainyard/registry"
)

// TestPushProgressOnTerminal pushes to an in-process registry with progress
// on a pseudo-terminal: a 9 MiB image draws a line with bytes and rate, a
// 1 MiB one (under ProgressMin) draws nothing.
func TestPushProgressOnTerminal(t *testing.T) {
	s := testutil.Registry(t)
	t.Cleanup(s.Close)
	host := strings.TrimPrefix(s.URL, "http://")
	push := func(size int64, repo string) string {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Skipf("no pseudo-terminal: %v", err)
		}
		defer ptmx.Close()
		var mu sync.Mutex
		var buf bytes.Buffer
		done := make(chan struct{})
		go func() {
			defer close(done)
			b := make([]byte, 4096)
			for {
				n, err := ptmx.Read(b)
				mu.Lock()
				buf.Write(b[:n])
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		img, err := random.Image(size, 1)
		if err != nil {
			t.Fatal(err)
		}
		c := registry.NewClient(registry.WithProgress(tty))
		if _, err := c.Push(context.Background(), img, host+"/"+repo+":1"); err != nil {
			t.Fatal(err)
		}
		tty.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
	if out := push(9<<20, "big"); !regexp.MustCompile(`push .*/big:1 +100% .*\([0-9.]+/[0-9.]+ MB, [0-9.]+ [kMG]?B/s\)`).MatchString(out) {
		t.Errorf("9 MiB push drew no progress line with bytes and rate:\n%q", out)
	}
	if out := push(1<<20, "small"); out != "" {
		t.Errorf("1 MiB push drew %q", out)
	}
}
