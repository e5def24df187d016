package seal

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ttyCapture is a pseudo-terminal: tty is the terminal end a bar is drawn
// on; output returns everything drawn once tty is closed.
type ttyCapture struct {
	tty  *os.File
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func newTTY(t *testing.T) *ttyCapture {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	c := &ttyCapture{tty: tty, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	return c
}

func (c *ttyCapture) output() string {
	c.tty.Close()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// rateRE is the bar's "bytes done/total, rate" part, e.g. "(4.2/9.4 MB, 31 MB/s)".
var rateRE = regexp.MustCompile(`[0-9.]+ ?[kMG]?B/s`)

// pulled pushes a random image of size bytes to an in-process registry and
// pulls it back, so sealing streams its layers over HTTP.
func pulled(t *testing.T, size int64) []Source {
	t.Helper()
	host := newRegistry(t)
	img, err := random.Image(size, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/big/image:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	return []Source{{Name: "big/image:1", Image: got}}
}

func TestProgressOnTerminalForSealAndUnseal(t *testing.T) {
	ctx := context.Background()
	srcs := pulled(t, 5<<20)
	path := filepath.Join(t.TempDir(), "big.sealed")

	tty := newTTY(t)
	s, err := SealFile(ctx, path, srcs, WithArchiveID("progress-test"), WithProgress(tty.tty))
	if err != nil {
		t.Fatal(err)
	}
	out := tty.output()
	t.Logf("seal drew %q", out)
	if !regexp.MustCompile(`seal progress-test.*MB`).MatchString(out) || !rateRE.MatchString(out) {
		t.Fatalf("seal on a terminal drew no progress line with bytes and rate:\n%q", out)
	}

	// A layout target is loaded in one pass (one bar), any other target in
	// two (verify, then load).
	keys := Keys{DeviceKey: s.Shares[0].DeviceKey, Fragment: s.Shares[0].Fragment}
	for _, c := range []struct {
		t    Target
		bars []string
	}{
		{NewLayoutTarget(t.TempDir()), []string{"unseal big.sealed"}},
		{&discardTarget{}, []string{"unseal verify big.sealed", "unseal load big.sealed"}},
	} {
		tty = newTTY(t)
		if _, err := Unseal(ctx, path, keys, c.t, WithUnsealProgress(tty.tty)); err != nil {
			t.Fatal(err)
		}
		out = tty.output()
		t.Logf("unseal into %T drew %q", c.t, out)
		for _, want := range c.bars {
			if !bytes.Contains([]byte(out), []byte(want)) {
				t.Errorf("unseal into %T on a terminal: no %q bar in\n%q", c.t, want, out)
			}
		}
		if !rateRE.MatchString(out) {
			t.Errorf("unseal bars show no rate:\n%q", out)
		}
	}
}

func TestNoProgressOnPipeOrSmallTransfer(t *testing.T) {
	ctx := context.Background()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	done := make(chan struct{})
	go func() { got, _ = io.ReadAll(r); close(done) }()
	path := filepath.Join(t.TempDir(), "big.sealed")
	s, err := SealFile(ctx, path, pulled(t, 5<<20), WithProgress(w))
	if err != nil {
		t.Fatal(err)
	}
	keys := Keys{DeviceKey: s.Shares[0].DeviceKey, Fragment: s.Shares[0].Fragment}
	if _, err := Unseal(ctx, path, keys, NewLayoutTarget(t.TempDir()), WithUnsealProgress(w)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	<-done
	if len(got) != 0 {
		t.Errorf("progress drawn on a pipe: %q", got)
	}

	// A terminal, but under registry.ProgressMin: no bar either.
	tty := newTTY(t)
	small := filepath.Join(t.TempDir(), "small.sealed")
	s, err = SealFile(ctx, small, pulled(t, 1<<20), WithProgress(tty.tty))
	if err != nil {
		t.Fatal(err)
	}
	keys = Keys{DeviceKey: s.Shares[0].DeviceKey, Fragment: s.Shares[0].Fragment}
	if _, err := Unseal(ctx, small, keys, NewLayoutTarget(t.TempDir()), WithUnsealProgress(tty.tty)); err != nil {
		t.Fatal(err)
	}
	if out := tty.output(); out != "" {
		t.Errorf("progress drawn for a 1 MiB transfer: %q", out)
	}
}

// TestProgressLegacyUnseal: an azaion-v1 unseal draws one bar for its
// verify pass and one for its load pass on a terminal, none without one.
func TestProgressLegacyUnseal(t *testing.T) {
	img, err := random.Image(6<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	fragment := []byte("the key fragment the Azaion API returns")
	enc := makeAzaionArchive(t, []Source{{Name: "azaion/big:1.2", Image: img}}, fragment)
	tty := newTTY(t)
	if _, err := UnsealLegacy(context.Background(), enc, fragment, NewLayoutTarget(t.TempDir()), WithUnsealProgress(tty.tty)); err != nil {
		t.Fatal(err)
	}
	out := tty.output()
	for _, pass := range []string{"unseal verify", "unseal load"} {
		if !regexp.MustCompile(pass + ` \S+ +100% .*` + rateRE.String()).MatchString(out) {
			t.Errorf("no %q bar with bytes and rate in %q", pass, out)
		}
	}
	var pipe bytes.Buffer
	if _, err := UnsealLegacy(context.Background(), enc, fragment, NewLayoutTarget(t.TempDir()), WithUnsealProgress(&pipe)); err != nil || pipe.Len() != 0 {
		t.Fatalf("not a terminal: %v, drew %q", err, pipe.String())
	}
}
