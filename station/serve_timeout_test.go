package station_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainrun"
)

// badRegistry is a real registry behind a switch: "ok" passes requests
// through, "hang" accepts them and never answers, "trickle" sends the
// headers and then one byte every 100 ms.
type badRegistry struct {
	mode  atomic.Value
	stop  chan struct{}
	once  sync.Once
	inner http.Handler
}

func (b *badRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch b.mode.Load().(string) {
	case "hang":
		select {
		case <-r.Context().Done():
		case <-b.stop:
		}
		return
	case "trickle":
		rec := httptest.NewRecorder()
		b.inner.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		body := append(rec.Body.Bytes(), make([]byte, 4096)...) // long enough to trickle past the stall period
		for _, c := range body {
			if _, err := w.Write([]byte{c}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			case <-b.stop:
				return
			}
		}
		return
	}
	b.inner.ServeHTTP(w, r)
}

func polls(t *testing.T, s *station.Server) int {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "trainyard_station_polls_total "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeKeepsPollingAfterHangingRegistry: a registry that hangs, then
// one that trickles, makes polls fail with a timeout but never stops the
// poll loop; once the registry answers again, a train pushed then is
// processed.
func TestServeKeepsPollingAfterHangingRegistry(t *testing.T) {
	br := &badRegistry{stop: make(chan struct{}), inner: testutil.QuietRegistry()}
	br.mode.Store("ok")
	srv := httptest.NewServer(br)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { br.once.Do(func() { close(br.stop) }) })

	// runc is only needed for the last part; the polling part runs anyway.
	runner := trainrun.NewRunc(trainrun.WithStateDir(t.TempDir()), trainrun.WithBundleDir(t.TempDir()))
	runcErr := runner.Available()
	n := newNet(t, runner, "a")
	// Point the network at the switchable registry, with short timeouts.
	// (The header timeout leaves room for a legitimate blob upload to the
	// in-memory registry under -race.)
	rc := registry.NewClient(registry.WithTimeouts(registry.Timeouts{Dial: time.Second, TLSHandshake: 500 * time.Millisecond,
		ResponseHeader: 2 * time.Second, IdleConn: time.Second, Stall: 300 * time.Millisecond, StallBytes: 1024}))
	n.rc = rc
	n.network = station.Network{Prefix: strings.TrimPrefix(srv.URL, "http://") + "/pht"}
	st := n.stations["a"]
	st.Client, st.Network = rc, n.network
	db, err := station.OpenDB(t.TempDir() + "/station.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st.DB = db
	s := &station.Server{Station: st, Interval: 50 * time.Millisecond}

	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, "", nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})

	for _, mode := range []string{"hang", "trickle"} {
		br.mode.Store(mode)
		before := polls(t, s)
		// Each poll fails after about one timeout; three more polls prove
		// the loop is alive, not stuck in the first request.
		waitFor(t, "polls to continue against a "+mode+" registry", 40*time.Second, func() bool { return polls(t, s) >= before+3 })
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
		if !strings.Contains(rec.Body.String(), "timeout") && !strings.Contains(rec.Body.String(), "stalled") {
			t.Fatalf("%s: status does not report the timeout: %s", mode, rec.Body.String())
		}
	}

	// Processing a train needs runc (a CI run fails instead of skipping).
	if runcErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run trains for real: %v", runcErr)
		}
		t.Skipf("polling survived; runc not usable here for the train part: %v", runcErr)
	}
	br.mode.Store("ok")
	n.create(t, "a")
	waitFor(t, "the train pushed after the outage to be processed", 2*time.Minute, func() bool {
		recent, err := db.Recent(10)
		return err == nil && len(recent) > 0
	})
}
