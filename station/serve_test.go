package station_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/station"
)

// TestServePollsInbox lets two station servers pick the train up from their
// inboxes, checks status and metrics, and shows that the durable replay
// guard refuses the same stop after a restart.
func TestServePollsInbox(t *testing.T) {
	runner := needRunc(t)
	route := []string{"a", "b"}
	n := newNet(t, runner, route...)
	dbs := map[string]*station.DB{}
	for _, id := range route {
		db, err := station.OpenDB(filepath.Join(t.TempDir(), "station.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[id] = db
		n.stations[id].DB = db
	}
	srvA := &station.Server{Station: n.stations["a"]}
	if done, err := srvA.PollOnce(n.ctx); err != nil || len(done) != 0 {
		t.Fatalf("empty inbox: %v, %v", done, err)
	}
	n.create(t, route...)
	done, err := srvA.PollOnce(n.ctx)
	if err != nil || len(done) != 1 || done[0].Error != "" || done[0].Next != "b" {
		t.Fatalf("station a: %+v, %v", done, err)
	}
	// Polling again does nothing: the tag was handled at this digest.
	if done, _ := srvA.PollOnce(n.ctx); len(done) != 0 {
		t.Fatalf("processed twice: %+v", done)
	}
	srvB := &station.Server{Station: n.stations["b"]}
	if done, err := srvB.PollOnce(n.ctx); err != nil || len(done) != 1 || done[0].Next != "alice" {
		t.Fatalf("station b: %+v, %v", done, err)
	}

	hs := httptest.NewServer(srvA.Handler())
	defer hs.Close()
	for path, want := range map[string]string{
		"/status":  `"station":"a"`,
		"/metrics": `trainyard_station_stops_total{result="done"} 1`,
		"/healthz": "ok",
	} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("%s: %q not in\n%s", path, want, b)
		}
	}

	// The durable guard remembers the stop: the same train again is refused.
	if _, err := n.stations["a"].Process(n.ctx, n.network.Inbox("a")+":t1"); !errors.Is(err, hardened.ErrReplay) {
		t.Fatalf("replay after poll: %v", err)
	}
}

// TestServeSkipsOversizedManifest: a train whose manifest is over the
// bound sits in the inbox beside a genuine one. Polling never downloads it
// (HEAD only), keeps going, and runs the genuine train.
func TestServeSkipsOversizedManifest(t *testing.T) {
	runner := needRunc(t)
	n := newNet(t, runner, "a")
	ref := n.create(t, "a")
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	big := mutate.Annotations(img, map[string]string{"padding": strings.Repeat("a", 5<<20)}).(v1.Image)
	if _, err := n.rc.Push(n.ctx, big, n.network.Inbox("a")+":0big"); err != nil {
		t.Fatal(err)
	}
	db, err := station.OpenDB(filepath.Join(t.TempDir(), "station.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n.stations["a"].DB = db
	srv := &station.Server{Station: n.stations["a"]}
	done, err := srv.PollOnce(n.ctx)
	if err != nil || len(done) != 1 || done[0].Tag != "t1" || done[0].Error != "" {
		t.Fatalf("poll: %+v, %v", done, err)
	}
}
