package station_test

import (
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/protocol/phtv2"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
)

// TestLegacyPushesBase: a pht-v2 stop pushes REPO:base (the train's base
// layers) beside the train's tag in the next inbox, and the next station
// can post-run --rebase onto it, as a PHT station does.
func TestLegacyPushesBase(t *testing.T) {
	runner := needRunc(t)
	route := []string{"1", "2"}
	n := newNet(t, runner, route...)
	creator, _ := rsa.GenerateKey(rand.Reader, 2048)
	keys := map[string]*rsa.PrivateKey{}
	var stops []phtv2.RouteStop
	for _, id := range route {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		keys[id] = k
		st := n.stations[id]
		st.Protocol = station.PHTv2{Key: k}
		stops = append(stops, phtv2.RouteStop{Station: id, PublicKey: &k.PublicKey})
	}
	l, err := random.Layer(256, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	base, err := mutate.AppendLayers(train.ScratchImage(), l)
	if err != nil {
		t.Fatal(err)
	}
	out, err := phtv2.Build(n.ctx, base, phtv2.BuildSpec{
		Dir: aggregateCode(t), Entrypoint: "aggregate", Command: []string{"/opt/pht_train/aggregate"},
		Route: stops, CreatorID: "alice", CreatorKey: creator, TrainID: "pht1"})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := n.rc.Push(n.ctx, out.Image, n.network.Inbox("1")+":pht1"); err != nil {
		t.Fatal(err)
	}
	st, err := n.stations["1"].Process(n.ctx, n.network.Inbox("1")+":pht1")
	if err != nil {
		t.Fatal(err)
	}
	if want := n.network.Inbox("2") + ":pht1"; !strings.HasPrefix(st.Pushed, want+"@") {
		t.Fatalf("pushed %s, want %s", st.Pushed, want)
	}
	gotBase, err := n.rc.Pull(n.ctx, n.network.Inbox("2")+":base")
	if err != nil {
		t.Fatalf("no :base beside the train: %v", err)
	}
	requireLayers(t, gotBase, base, 0)
	trainImg, err := n.rc.Pull(n.ctx, n.network.Inbox("2")+":pht1")
	if err != nil {
		t.Fatal(err)
	}
	requireLayers(t, trainImg, base, 1)

	// Station 2 the PHT way: pre-run, (run), post-run --rebase on REPO:base.
	st2 := phtv2.Station{ID: "2", Key: keys["2"]}
	pre, err := phtv2.PreRun(n.ctx, trainImg, st2, phtv2.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	post, err := phtv2.PostRun(n.ctx, pre.Image, st2, phtv2.WithBase(gotBase), phtv2.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()
	requireLayers(t, post.Image, base, 1)
}

// requireLayers checks img is base's layers plus extra more.
func requireLayers(t *testing.T, img, base v1.Image, extra int) {
	t.Helper()
	got, _ := img.Layers()
	want, _ := base.Layers()
	if len(got) != len(want)+extra {
		t.Fatalf("%d layers, want %d+%d", len(got), len(want), extra)
	}
	for i := range want {
		a, _ := got[i].Digest()
		b, _ := want[i].Digest()
		if a != b {
			t.Fatalf("layer %d: %s, base has %s", i, a, b)
		}
	}
}
