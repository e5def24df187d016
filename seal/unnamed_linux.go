package seal

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// createUnnamed opens an O_TMPFILE file in dir: it has no name until
// linkUnnamed gives it one, so if the process dies first the kernel frees it
// and no partial plaintext is ever visible on disk.
func createUnnamed(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), dir+"/(unnamed)"), nil
}

// linkUnnamed names f as path; an existing file with the same content
// (content-addressed blobs) is fine.
func linkUnnamed(f *os.File, path string) error {
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	if err == unix.EEXIST {
		return nil
	}
	if err != nil {
		return fmt.Errorf("linking blob %s: %w", path, err)
	}
	return nil
}

// lockDir takes an exclusive, non-blocking flock on path (created if
// needed); the lock dies with the process, so a killed unseal never leaves
// the layout locked.
func lockDir(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another unseal is writing to this layout (%s): %w", path, err)
	}
	return func() { f.Close() }, nil
}
