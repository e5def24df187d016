package fsutil

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts the write-out of [off, off+n) without waiting for
// it (sync_file_range with SYNC_FILE_RANGE_WRITE: no metadata, no barrier;
// durability is still the caller's Sync).
func startWriteback(f *os.File, off, n int64) error {
	return unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
