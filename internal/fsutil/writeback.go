package fsutil

import (
	"io"
	"os"
)

// writebackEvery is how many written bytes go by between two requests to
// start writing them out. 8 MiB keeps the requests rare (a few syscalls per
// 64 MiB) and the dirty backlog small.
const writebackEvery = 8 << 20

// WritebackWriter writes to a file that will be synced when it is complete
// and asks the kernel to start writing each few MiB out as soon as they are
// written, so that the disk works beside whatever produces the bytes and the
// final Sync waits for the tail only, not the whole file. It does not make
// anything durable by itself: the caller still calls f.Sync. Where the
// system has no such request (anything but Linux) it is a plain writer.
type WritebackWriter struct {
	f        *os.File
	off      int64 // where the file's next byte goes
	flushed  int64 // bytes before this offset were handed to the disk
	disabled bool
}

// NewWritebackWriter returns a WritebackWriter over f, which must be
// positioned at offset 0 and written only through it.
func NewWritebackWriter(f *os.File) *WritebackWriter { return &WritebackWriter{f: f} }

// Write implements io.Writer.
func (w *WritebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if !w.disabled && w.off-w.flushed >= writebackEvery {
		if startWriteback(w.f, w.flushed, w.off-w.flushed) != nil {
			w.disabled = true // a hint only: a filesystem that refuses it gets plain writes
		}
		w.flushed = w.off
	}
	return n, err
}

// ReadFrom keeps io.Copy from handing the file to os.File's own ReadFrom,
// which would bypass the writeback requests.
func (w *WritebackWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{w}, r, make([]byte, 1<<20))
}
