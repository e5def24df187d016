package registry_test

import (
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/trainyard/trainyard/registry"
)

func TestPushIfAbsent(t *testing.T) {
	host, stop := startEmbedded(t, t.TempDir())
	defer stop()
	ctx := t.Context()
	c := registry.NewClient()
	ref := host + "/inbox/s1:train-1"
	a, _ := random.Image(512, 1)
	b, _ := random.Image(512, 1)

	if _, err := c.Head(ctx, ref); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("head of a missing tag: %v, want ErrNotFound", err)
	}
	da, err := c.PushIfAbsent(ctx, a, ref)
	if err != nil {
		t.Fatal(err)
	}
	// The same image again: idempotent.
	if d, err := c.PushIfAbsent(ctx, a, ref); err != nil || d != da {
		t.Fatalf("re-push of the same image: %v %v", d, err)
	}
	// Other content under the tag: refused, and the tag is unchanged.
	if _, err := c.PushIfAbsent(ctx, b, ref); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("push over other content: %v, want ErrExists", err)
	}
	if got, err := c.Head(ctx, ref); err != nil || got != da {
		t.Fatalf("tag now %v (%v), want %v", got, err, da)
	}
}
