package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// runOnTTY runs the CLI with stderr on a pseudo-terminal and returns what
// was drawn there.
func runOnTTY(t *testing.T, args ...string) (string, int) {
	t.Helper()
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
	code := run(args, strings.NewReader(""), io.Discard, tty)
	tty.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return buf.String(), code
}

var barRE = regexp.MustCompile(`seal ar-p[0-9] +100% .*\([0-9.]+/[0-9.]+ MB, [0-9.]+ [kMG]?B/s\)`)

// TestProgressFlag seals a 9 MiB image pulled from an in-process registry
// with stderr on a terminal: a bar by default, none with --progress=false or
// TRAINYARD_PROGRESS=0, and none when stderr is a pipe.
func TestProgressFlag(t *testing.T) {
	s := testutil.Registry(t)
	t.Cleanup(s.Close)
	img, err := random.Image(9<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(strings.TrimPrefix(s.URL, "http://") + "/big/image:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sealArgs := func(n string) []string {
		return []string{"seal", "--images", ref.String(), "--out", filepath.Join(dir, n+".sealed"),
			"--keys-dir", filepath.Join(dir, "keys-"+n), "--archive-id", "ar-" + n}
	}

	out, code := runOnTTY(t, sealArgs("p1")...)
	if code != 0 || !barRE.MatchString(out) {
		t.Fatalf("seal on a terminal: exit %d, no progress line with bytes and rate in\n%q", code, out)
	}

	out, code = runOnTTY(t, append(sealArgs("p2"), "--progress=false")...)
	if code != 0 || strings.Contains(out, "B/s") || strings.Contains(out, "%") {
		t.Errorf("--progress=false: exit %d, stderr %q", code, out)
	}

	t.Setenv("TRAINYARD_PROGRESS", "0")
	out, code = runOnTTY(t, sealArgs("p3")...)
	if code != 0 || strings.Contains(out, "B/s") {
		t.Errorf("TRAINYARD_PROGRESS=0: exit %d, stderr %q", code, out)
	}
	// The flag wins over the variable.
	out, code = runOnTTY(t, append(sealArgs("p4"), "--progress")...)
	if code != 0 || !barRE.MatchString(out) {
		t.Errorf("--progress over TRAINYARD_PROGRESS=0: exit %d, stderr %q", code, out)
	}
	t.Setenv("TRAINYARD_PROGRESS", "")

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	done := make(chan struct{})
	go func() { got, _ = io.ReadAll(r); close(done) }()
	code = run(sealArgs("p5"), strings.NewReader(""), io.Discard, w)
	w.Close()
	<-done
	if code != 0 || bytes.Contains(got, []byte("B/s")) {
		t.Errorf("stderr on a pipe: exit %d, stderr %q", code, got)
	}
}
