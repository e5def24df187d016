package trainrun

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

// Errors keep their cause (%w), so a caller sees both the package's kind
// and what the system said.
func TestErrorsKeepTheirCause(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent")
	cases := []struct {
		name        string
		err         error
		kind, cause error
	}{
		{"disk full", noSpace(syscall.ENOSPC), ErrResultsTooLarge, syscall.ENOSPC},
		{"quota", noSpace(syscall.EDQUOT), ErrResultsTooLarge, syscall.EDQUOT},
		{"no runc", NewRunc(WithRuncBinary(missing)).Available(), ErrUnavailable, fs.ErrNotExist},
		{"no dir", func() error { _, err := checkDir(missing, "DataDir"); return err }(), ErrInvalidSpec, fs.ErrNotExist},
	}
	d, err := NewDocker(WithDockerHost("unix://" + missing))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cases = append(cases, struct {
		name        string
		err         error
		kind, cause error
	}{"docker ping cancelled", d.Available(ctx), ErrUnavailable, context.Canceled})
	for _, c := range cases {
		if !errors.Is(c.err, c.kind) || !errors.Is(c.err, c.cause) {
			t.Errorf("%s: %v: want both %v and %v", c.name, c.err, c.kind, c.cause)
		}
	}
}
