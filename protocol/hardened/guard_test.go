package hardened

import (
	"context"
	"path/filepath"
	"testing"
)

func TestReplayGuards(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stops.db")
	bg, err := OpenBoltReplayGuard(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]ReplayGuard{"memory": &MemoryReplayGuard{}, "bolt": bg} {
		for _, c := range []struct {
			train string
			stop  int
			fresh bool
		}{{"sha256:a", 0, true}, {"sha256:a", 0, false}, {"sha256:a", 1, true}, {"sha256:b", 0, true}} {
			got, err := g.Mark(ctx, c.train, c.stop)
			if err != nil || got != c.fresh {
				t.Fatalf("%s: Mark(%s, %d) = %v, %v; want %v", name, c.train, c.stop, got, err, c.fresh)
			}
		}
	}
	// The bolt guard remembers across a reopen.
	bg.Close()
	bg, err = OpenBoltReplayGuard(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bg.Close()
	if fresh, err := bg.Mark(ctx, "sha256:a", 0); err != nil || fresh {
		t.Fatalf("after reopen: %v %v", fresh, err)
	}
}

func TestUnverified(t *testing.T) {
	n := newTestNet(t)
	env, _, _ := n.roundTrip(t, 2)
	st, stops, err := env.Unverified()
	if err != nil || st.Creator.ID != "alice" || len(stops) != 2 || stops[1].Station != "st-b" {
		t.Fatalf("%+v %+v %v", st, stops, err)
	}
}
