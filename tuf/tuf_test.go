package tuf

import (
	"errors"
	"fmt"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		in   error
		want error
	}{
		{&metadata.ErrUnsignedMetadata{Msg: "x"}, ErrSignature},
		{&metadata.ErrExpiredMetadata{Msg: "x"}, ErrExpired},
		{&metadata.ErrBadVersionNumber{Msg: "x"}, ErrRollback},
		{&metadata.ErrEqualVersionNumber{Msg: "x"}, ErrRollback},
		{&metadata.ErrLengthOrHashMismatch{Msg: "x"}, ErrTampered},
		{&metadata.ErrDownloadLengthMismatch{Msg: "x"}, ErrTooLarge},
		{fmt.Errorf("wrapped: %w", &metadata.ErrDownloadHTTP{StatusCode: 404}), ErrNotFound},
	} {
		got := Classify(c.in)
		if !errors.Is(got, c.want) {
			t.Fatalf("Classify(%v) = %v, want %v", c.in, got, c.want)
		}
		var ue *metadata.ErrUnsignedMetadata
		if errors.As(c.in, &ue) && !errors.As(got, &ue) {
			t.Fatal("go-tuf error lost")
		}
	}
	if Classify(nil) != nil {
		t.Fatal("nil classified")
	}
	other := errors.New("other")
	if Classify(other) != other {
		t.Fatal("unknown error changed")
	}
}
