package station

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/trainyard/trainyard/trainrun"
)

// resultsMounter is a Runner that can put a capped filesystem under a
// results directory before the run (trainrun.Runc). With it the results
// stay on that filesystem until post-run has read them, instead of being
// copied out after the run.
type resultsMounter interface {
	MountResults(ctx context.Context, dir string, maxBytes int64) (io.Closer, error)
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// mountResults puts the stop's results (the previous stops' already in
// dir) on a filesystem of MaxResults bytes when the runner can; Close
// unmounts it. Other runners enforce the cap themselves during Run.
func (s *Station) mountResults(ctx context.Context, dir string) (io.Closer, error) {
	m, ok := s.Runner.(resultsMounter)
	if !ok || s.MaxResults < 0 {
		return nopCloser{}, nil
	}
	return m.MountResults(ctx, dir, s.MaxResults)
}

// resultsFull says that the previous stop's results did not fit this
// station's results filesystem (pre-run ran out of space in it), as the
// copy into it said before pre-run wrote there directly.
func resultsFull(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: the previous results do not fit the results filesystem: %w", trainrun.ErrResultsTooLarge, err)
	}
	return err
}

// postRunContext bounds post-run (packing, sealing, the state layer) the
// way Timeout bounds the run: a train's results cannot keep a station busy
// for longer than its run could.
func (s *Station) postRunContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d := s.Timeout
	if d <= 0 {
		d = trainrun.DefaultTimeout
	}
	return context.WithTimeout(ctx, d)
}

// postRunErr names the deadline when it is what stopped post-run.
func postRunErr(pctx context.Context, err error) error {
	if err != nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", errPostRunDeadline, err)
	}
	return err
}
