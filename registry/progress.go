package registry

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// ProgressMin is the smallest transfer that gets a progress bar; shorter
// ones finish before a bar would tell anyone anything.
const ProgressMin = 4 << 20

// IsTerminal reports whether w is an *os.File attached to a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Bar is one transfer's progress line (bytes done, total, rate) on a
// terminal. A nil *Bar is valid and draws nothing, so callers need no checks.
type Bar struct {
	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	max  int64
	done int64
}

// NewBar returns a bar for a transfer of size bytes described by desc, or
// nil when w is not a terminal or size is under ProgressMin.
func NewBar(w io.Writer, size int64, desc string) *Bar {
	if size < ProgressMin || !IsTerminal(w) {
		return nil
	}
	return &Bar{max: size, bar: progressbar.NewOptions64(size, progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc), progressbar.OptionShowBytes(true), progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }))}
}

// Set moves the bar to n bytes (capped at the total, which may have been an
// estimate).
func (b *Bar) Set(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = min(n, b.max)
	_ = b.bar.Set64(b.done)
}

// Add advances the bar by n bytes.
func (b *Bar) Add(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	d := b.done + n
	b.mu.Unlock()
	b.Set(d)
}

// Write counts len(p) bytes, so a Bar can sit in an io.MultiWriter or TeeReader.
func (b *Bar) Write(p []byte) (int, error) {
	b.Add(int64(len(p)))
	return len(p), nil
}

// Finish completes the line (100%, total bytes, average rate) and ends it,
// so every transfer leaves one line.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.bar.Finish()
}

// Reader wraps r so that reads advance the bar (r itself when b is nil).
func (b *Bar) Reader(r io.Reader) io.Reader {
	if b == nil {
		return r
	}
	return io.TeeReader(r, b)
}

// startProgress adds a progress channel to opts when progress goes to a
// terminal; the returned func waits for the bar to finish. The bar appears
// only once the total is known to be at least ProgressMin.
func (c *Client) startProgress(opts *[]remote.Option, desc string) func() {
	if !IsTerminal(c.progress) {
		return func() {}
	}
	updates := make(chan v1.Update, 64)
	*opts = append(*opts, remote.WithProgress(updates))
	done := make(chan struct{})
	go func() {
		defer close(done)
		var bar *Bar
		for u := range updates {
			if u.Error != nil {
				continue
			}
			if bar == nil {
				bar = NewBar(c.progress, u.Total, desc)
			}
			bar.Set(u.Complete)
		}
		bar.Finish()
	}()
	return func() { <-done }
}

// NewProgressReader wraps r with a progress bar on w when w is a terminal
// and size is at least ProgressMin; for downloads of known size (blobs,
// targets, archives).
func NewProgressReader(r io.Reader, size int64, w io.Writer, desc string) io.Reader {
	return NewBar(w, size, desc).Reader(r)
}

// Progress is the writer the client draws bars on (nil: none).
func (c *Client) Progress() io.Writer { return c.progress }
