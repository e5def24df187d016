package station_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainrun"
	"github.com/trainyard/trainyard/trust"
)

// A hospital's station: its key, the network's trust directory, runc, and
// a database in its state directory. Process runs one stop of the train
// waiting at a reference; the stop's record says what happened. (Not run
// here: it needs root for runc and a network to pull from.)
func Example() {
	ctx := context.Background()
	state := "/var/lib/trainyard/station-hospital-a"
	rc := registry.NewClient()

	key, err := hardened.LoadPrivateKey(filepath.Join(state, "station.key"))
	if err != nil {
		log.Fatal(err)
	}
	// The trust directory, pulled and verified through TUF from the
	// network's registry; root.json was handed over out of band.
	rootJSON, err := os.ReadFile(filepath.Join(state, "root.json"))
	if err != nil {
		log.Fatal(err)
	}
	ts, err := trust.OpenStore(ctx, rc, "registry.example.org/pht/trust", filepath.Join(state, "trust"), rootJSON)
	if err != nil {
		log.Fatal(err)
	}
	db, err := station.OpenDB(filepath.Join(state, "station.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	s := &station.Station{
		ID:       "hospital-a",
		Protocol: station.V1{Key: key},
		Trust:    ts,
		Runner:   trainrun.NewRunc(trainrun.WithBundleDir(filepath.Join(state, "work"))),
		Client:   rc,
		Network:  station.Network{Prefix: "registry.example.org/pht"},
		DataDir:  "/srv/pht-data",
		WorkDir:  filepath.Join(state, "work"),
		DB:       db,
		Timeout:  time.Hour,
	}
	st, err := s.Process(ctx, s.Network.Inbox(s.ID)+":study-50")
	if err != nil {
		// Classify says whether to try again (transient), or what the
		// train did wrong (refused, failed).
		fmt.Println(station.Classify(err), err)
		return
	}
	fmt.Println(st.State, "pushed to", st.Pushed)
}

// A station that runs every train arriving in its inbox, serves /status,
// /healthz and /metrics on a loopback port and the admin API (what `station
// accept`, `reject`, `release` ... call) on a unix socket, until ctx ends.
func ExampleServer() {
	var s *station.Station // as in the package example
	srv := &station.Server{Station: s, Interval: 10 * time.Second,
		AdminSocket: "/var/lib/trainyard/station-hospital-a/admin.sock"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Serve(ctx, "127.0.0.1:9310", nil); err != nil {
		log.Fatal(err)
	}
}
