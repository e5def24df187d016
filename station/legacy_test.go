package station_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/protocol/phtv2"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
)

// TestLegacyRoute runs a PHT (pht-v2) train, built like the PHT central
// builder does, through two stations in legacy mode with real runc, and
// has the creator decrypt the aggregate.
func TestLegacyRoute(t *testing.T) {
	runner := needRunc(t)
	route := []string{"1", "2"}
	n := newNet(t, runner, route...)
	creator, _ := rsa.GenerateKey(rand.Reader, 2048)
	var stops []phtv2.RouteStop
	for _, id := range route {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		st := n.stations[id]
		st.Protocol = station.PHTv2{Key: k}
		stops = append(stops, phtv2.RouteStop{Station: id, PublicKey: &k.PublicKey})
	}
	out, err := phtv2.Build(n.ctx, train.ScratchImage(), phtv2.BuildSpec{
		Dir: aggregateCode(t), Entrypoint: "aggregate", Command: []string{"/opt/pht_train/aggregate"},
		Route: stops, CreatorID: "alice", CreatorKey: creator, TrainID: "pht1"})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ref := n.network.Inbox("1") + ":pht1"
	if _, err := n.rc.Push(n.ctx, out.Image, ref); err != nil {
		t.Fatal(err)
	}
	for _, id := range route {
		st, err := n.stations[id].Process(n.ctx, ref)
		if err != nil {
			t.Fatalf("station %s: %v", id, err)
		}
		ref = strings.SplitN(st.Pushed, "@", 2)[0]
	}
	if ref != n.network.Outbox("alice")+":pht1" {
		t.Fatalf("finished train at %s", ref)
	}
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := phtv2.DecryptResults(n.ctx, img, creator, dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "aggregate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var agg struct{ Patients int }
	if json.Unmarshal(b, &agg) != nil || agg.Patients != 1+2 {
		t.Fatalf("aggregate = %s", b)
	}

	// The same train again is refused by the station's record: that stop
	// is done.
	if _, err := n.stations["1"].Process(n.ctx, n.network.Inbox("1")+":pht1"); !errors.Is(err, hardened.ErrReplay) {
		t.Fatalf("re-delivery: %v", err)
	}
	// A wrong station key (and no record) is refused by pre-run, and nothing
	// moves on.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	n.stations["1"].Protocol, n.stations["1"].DB = station.PHTv2{Key: other}, nil
	if _, err := n.stations["1"].Process(n.ctx, n.network.Inbox("1")+":pht1"); !errors.Is(err, phtv2.ErrDecrypt) {
		t.Fatalf("wrong key: %v", err)
	}
}
