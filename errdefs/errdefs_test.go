package errdefs_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/trainyard/trainyard/errdefs"
)

var roots = []error{
	errdefs.ErrTampered, errdefs.ErrSignature, errdefs.ErrMalformed, errdefs.ErrUntrusted,
	errdefs.ErrUnapproved, errdefs.ErrReplay, errdefs.ErrExpired, errdefs.ErrNotFound,
	errdefs.ErrExists, errdefs.ErrUnauthorized, errdefs.ErrUnsupported, errdefs.ErrLimit,
	errdefs.ErrResultsTooLarge,
}

// The kinds are distinct: no kind matches another, except the one refinement.
func TestKindsDistinct(t *testing.T) {
	for i, a := range roots {
		for j, b := range roots {
			want := i == j || (a == errdefs.ErrResultsTooLarge && b == errdefs.ErrLimit)
			if got := errors.Is(a, b); got != want {
				t.Errorf("errors.Is(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestNew(t *testing.T) {
	parent := errdefs.New("train content tampered", errdefs.ErrTampered)
	child := errdefs.New("unsupported input: results too large", errdefs.ErrUnsupported, errdefs.ErrResultsTooLarge)
	cases := []struct {
		err    error
		target error
		want   bool
	}{
		{parent, errdefs.ErrTampered, true},
		{parent, parent, true},
		{parent, errdefs.ErrSignature, false},
		{fmt.Errorf("open layer: %w", parent), errdefs.ErrTampered, true},
		{fmt.Errorf("open layer: %w", parent), parent, true},
		{child, errdefs.ErrUnsupported, true},
		{child, errdefs.ErrResultsTooLarge, true},
		{child, errdefs.ErrLimit, true}, // through the refinement
		{child, errdefs.ErrTampered, false},
		{errdefs.New("no kind"), errdefs.ErrTampered, false},
	}
	for _, c := range cases {
		if got := errors.Is(c.err, c.target); got != c.want {
			t.Errorf("errors.Is(%q, %q) = %v, want %v", c.err, c.target, got, c.want)
		}
	}
	// The kinds stay out of the message, so a package's text is unchanged.
	if got := parent.Error(); got != "train content tampered" {
		t.Errorf("message %q", got)
	}
	// Two sentinels with the same message are still different errors.
	if errors.Is(errdefs.New("x", errdefs.ErrTampered), errdefs.New("x", errdefs.ErrTampered)) {
		t.Error("distinct sentinels match each other")
	}
}
