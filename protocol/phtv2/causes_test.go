package phtv2

import (
	"errors"
	"io"
	"io/fs"
	"testing"
)

// A file the list names but the source cannot open is ErrTampered, and the
// source's own error stays visible (%w).
func TestImmutableHashKeepsTheCause(t *testing.T) {
	open := func(string) (io.ReadCloser, error) { return nil, fs.ErrNotExist }
	_, err := ImmutableHash("alice", []string{"main.py"}, open, []byte("sid"), nil)
	if !errors.Is(err, ErrTampered) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ImmutableHash = %v, want ErrTampered and fs.ErrNotExist", err)
	}
}
