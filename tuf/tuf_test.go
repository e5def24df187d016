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

func TestParts(t *testing.T) {
	h := make([]byte, 32)
	tf := &metadata.TargetFiles{Length: 7, Hashes: metadata.Hashes{"sha256": h}, Path: "t"}
	ps, err := Parts(tf)
	if err != nil || len(ps) != 1 || ps[0].Length != 7 || ps[0].SHA256 != fmt.Sprintf("%064x", 0) {
		t.Fatalf("single part: %v %v", ps, err)
	}
	a, b := Part{SHA256: fmt.Sprintf("%064x", 1), Length: 3}, Part{SHA256: fmt.Sprintf("%064x", 2), Length: 4}
	if err := SetParts(tf, []Part{a, b}); err != nil {
		t.Fatal(err)
	}
	if got := string(*tf.Custom); got != `{"trainyard":{"parts":[{"sha256":"`+a.SHA256+`","length":3},{"sha256":"`+b.SHA256+`","length":4}]}}` {
		t.Fatalf("custom %s", got)
	}
	if ps, err := Parts(tf); err != nil || fmt.Sprint(ps) != fmt.Sprint([]Part{a, b}) {
		t.Fatalf("parts %v %v", ps, err)
	}
	tf.Length = 8
	if _, err := Parts(tf); !errors.Is(err, ErrTampered) {
		t.Fatalf("parts not adding up: %v", err)
	}
	tf.Length = 7
	if err := SetParts(tf, []Part{a, {SHA256: "zz", Length: 4}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Parts(tf); !errors.Is(err, ErrTampered) {
		t.Fatalf("bad part digest: %v", err)
	}
	if err := SetParts(tf, []Part{a}); err != nil || tf.Custom != nil {
		t.Fatalf("one part keeps a custom field: %v", err)
	}
}
