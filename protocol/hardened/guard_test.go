package hardened

import (
	"context"
	"testing"
)

// TestMemoryReplayGuard: the in-memory guard refuses a stop it has seen.
// The durable guard is the station's database (station.DB), tested there.
func TestMemoryReplayGuard(t *testing.T) {
	ctx := context.Background()
	g := &MemoryReplayGuard{}
	for _, c := range []struct {
		train string
		stop  int
		fresh bool
	}{{"sha256:a", 0, true}, {"sha256:a", 0, false}, {"sha256:a", 1, true}, {"sha256:b", 0, true}} {
		got, err := g.Mark(ctx, c.train, c.stop)
		if err != nil || got != c.fresh {
			t.Fatalf("Mark(%s, %d) = %v, %v; want %v", c.train, c.stop, got, err, c.fresh)
		}
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
