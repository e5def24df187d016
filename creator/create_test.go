package creator_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
)

// completeOptions returns Options for an approved one-station train.
func completeOptions(t *testing.T) creator.Options {
	t.Helper()
	n := newTestNet(t, "st1")
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "aggregate"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := creator.ApprovalDigest(n.ctx, code, n.exec, empty.Image)
	if err != nil {
		t.Fatal(err)
	}
	n.trust.Approve(hardened.Approval{Digest: d, Approvers: []string{"board"}})
	return creator.Options{Creator: hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust},
		Spec: hardened.Spec{ID: "t1", Route: []string{"st1"}, Exec: n.exec}, CodeDir: code, Base: empty.Image, TempDir: t.TempDir()}
}

// Every required field left out is named in the one error, and nothing is
// built.
func TestCreateRequiresOptions(t *testing.T) {
	ok := completeOptions(t)
	for _, c := range []struct {
		name string
		drop func(*creator.Options)
		want string
	}{
		{"all", func(o *creator.Options) { *o = creator.Options{} }, "Creator.ID, Creator.Key, Creator.Trust, CodeDir, Base not set"},
		{"creator", func(o *creator.Options) { o.Creator.ID = "" }, ": Creator.ID not set"},
		{"trust", func(o *creator.Options) { o.Creator.Trust = nil }, ": Creator.Trust not set"},
		{"key", func(o *creator.Options) { o.Creator.Key = nil }, ": Creator.Key not set"},
		{"code", func(o *creator.Options) { o.CodeDir = "" }, ": CodeDir not set"},
		{"base", func(o *creator.Options) { o.Base = nil }, ": Base not set"},
	} {
		o := ok
		c.drop(&o)
		b, err := creator.Create(context.Background(), o)
		if !errors.Is(err, creator.ErrOptions) || !strings.HasSuffix(err.Error(), c.want) || b != nil {
			t.Errorf("%s: Create = %v, %v; want ErrOptions ending %q", c.name, b, err, c.want)
		}
	}
	b, err := creator.Create(context.Background(), ok)
	if err != nil {
		t.Fatalf("complete options: %v", err)
	}
	b.Release()
}

// TempDir defaults to the system's temp dir, and nothing Create put there
// outlives Release.
func TestCreateDefaultTempDir(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	o := completeOptions(t)
	o.TempDir = ""
	b, err := creator.Create(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if b.Verified.Next() != "st1" {
		t.Errorf("new train goes to %q, want st1", b.Verified.Next())
	}
	b.Release()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("Release left %v in TMPDIR", left)
	}
}

// Create refuses what its first station would: code nobody approved.
func TestCreateUnapproved(t *testing.T) {
	o := completeOptions(t)
	if err := os.WriteFile(filepath.Join(o.CodeDir, "aggregate"), []byte("#!/bin/sh\necho changed\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := creator.Create(context.Background(), o); !errors.Is(err, hardened.ErrUnapproved) {
		t.Fatalf("changed code: %v, want ErrUnapproved", err)
	}
}
