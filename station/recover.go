package station

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trainyard/trainyard/trainrun"
)

// stopLock is the file in a stop's work directory that the stop holds
// locked (flock) while it runs; the kernel drops the lock when the station
// dies, however it dies.
const stopLock = ".trainyard-stop.lock"

// holdWork marks the stop directory work as in use until the returned
// function is called.
func holdWork(work string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(work, stopLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the stop's work directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the stop's work directory: %w", err)
	}
	return func() { f.Close() }, nil
}

// abandonedStop reports whether no live station holds the stop directory.
// One without a lock file counts only in a work directory of the station's
// own (dedicated) and when older than a minute: in the shared system temp
// directory a "stop-*" without our lock may be anybody's.
func abandonedStop(dir string, dedicated bool) bool {
	f, err := os.Open(filepath.Join(dir, stopLock))
	if errors.Is(err, os.ErrNotExist) {
		fi, err := os.Stat(dir)
		return dedicated && err == nil && fi.IsDir() && time.Since(fi.ModTime()) > time.Minute
	}
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// Recover removes what a station killed in the middle of a stop left
// behind: the runner's stale containers and bundles (when the runner can
// clean up after itself, as trainrun.Runc can), and abandoned stop
// directories in the work directory, with the decrypted code, the plaintext
// results (a results filesystem still mounted there is detached first) and
// the spooled blobs in them. Stops of live stations sharing the directories
// are left alone. Call it once before the first stop.
func (s *Station) Recover(ctx context.Context) error {
	var errs []error
	if c, ok := s.Runner.(interface{ Cleanup(context.Context) error }); ok {
		// A backend that cannot run here has nothing of ours running either
		// (and refuses every run with that same error).
		if err := c.Cleanup(ctx); err != nil && !errors.Is(err, trainrun.ErrUnavailable) {
			errs = append(errs, fmt.Errorf("cleaning up after a killed station: %w", err))
		}
	}
	dir := s.WorkDir
	if dir == "" {
		dir = os.TempDir()
	}
	stops, _ := filepath.Glob(filepath.Join(dir, "stop-*"))
	for _, stop := range stops {
		if !abandonedStop(stop, s.WorkDir != "") {
			continue
		}
		if err := trainrun.RemoveTree(stop); err != nil {
			errs = append(errs, fmt.Errorf("removing an abandoned stop's work directory: %w", err))
		}
	}
	return errors.Join(errs...)
}
