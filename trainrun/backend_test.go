package trainrun

import (
	"errors"
	"io"
	"testing"
)

func TestNewBackend(t *testing.T) {
	if r, err := New(""); err != nil || r.(*Runc) == nil {
		t.Fatalf("default backend: %v", err)
	}
	if r, err := New("docker"); err != nil {
		t.Fatal(err)
	} else {
		r.(io.Closer).Close()
	}
	if _, err := New("podman"); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("unknown backend: %v", err)
	}
}
