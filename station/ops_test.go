package station_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainimage"
)

// probeTrain pushes an approved train id whose program (trainrun's probe)
// does args, to the inbox of route[0], and returns its reference.
func probeTrain(t testing.TB, n *net, id string, route []string, args ...string) string {
	t.Helper()
	return execTrain(t, n, id, route, hardened.ExecConfig{Entrypoint: append([]string{"/opt/pht_train/probe"}, args...), WorkingDir: "/opt/pht_train"})
}

// execTrain is probeTrain with the signed exec config given.
func execTrain(t testing.TB, n *net, id string, route []string, exec hardened.ExecConfig) string {
	t.Helper()
	code := probeCode(t)
	d, err := creator.ApprovalDigest(n.ctx, code, exec, empty.Image)
	if err != nil {
		t.Fatal(err)
	}
	n.trust.Approve(hardened.Approval{Digest: d, Approvers: []string{"alice"}})
	b, err := creator.Create(n.ctx, creator.Options{Creator: hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, Spec: hardened.Spec{ID: id, Route: route, Exec: exec}, CodeDir: code, Base: empty.Image, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	ref := n.network.Inbox(route[0]) + ":" + id
	if _, err := n.rc.Push(n.ctx, b.Image, ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// creatorSees returns the state and reason train status shows the creator
// for stop index of train id.
func creatorSees(t *testing.T, n *net, id string, index int) (string, string) {
	t.Helper()
	s, err := creator.Status(n.ctx, station.Outbox{Client: n.rc, Network: n.network, User: "alice"}, n.trust, id)
	if err != nil {
		t.Fatalf("train status %s: %v", id, err)
	}
	for _, st := range s.Stops {
		if st.Index == index {
			return st.State, st.Reason
		}
	}
	t.Fatalf("train status %s has no stop %d: %+v", id, index, s)
	return "", ""
}

func history(t *testing.T, s *station.Station, train string) []station.Stop {
	t.Helper()
	h, err := s.DB.History(station.Filter{Train: train})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func metric(t *testing.T, srv *station.Server, line string) bool {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return strings.Contains(rec.Body.String(), line)
}

// TestTransientFailureRetriedNextPoll: the registry fails blob downloads
// during a stop. The stop is not recorded as a verdict; once the registry
// answers again the same train is processed on the next poll.
func TestTransientFailureRetriedNextPoll(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	ref := probeTrain(t, n, "tr1", []string{"a"}, "write", "/opt/pht_results/out.txt", "ok")
	srv := &station.Server{Station: n.stations["a"], Interval: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	n.gate.setFail(func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
	})
	done, err := srv.PollOnce(n.ctx)
	if err != nil || len(done) != 1 || done[0].Class != station.Transient {
		t.Fatalf("poll with a failing registry: %+v, %v", *done[0], err)
	}
	if h := history(t, n.stations["a"], "tr1"); len(h) != 0 {
		t.Fatalf("a transient failure was recorded: %+v", h)
	}
	if !metric(t, srv, `trainyard_station_stops_total{result="transient"} 1`) {
		t.Error("no transient count in /metrics")
	}
	n.gate.setFail(nil)
	time.Sleep(20 * time.Millisecond) // the backoff
	done, err = srv.PollOnce(n.ctx)
	if err != nil || len(done) != 1 || done[0].State != station.Done {
		t.Fatalf("next poll: %+v, %v", done, err)
	}
	if got := n.gate.manifestPuts(n.network.Outbox("alice") + ":tr1"); got != 1 {
		t.Fatalf("%d pushes to the outbox", got)
	}
	if done[0].Source != n.network.Inbox("a")+"@"+done[0].Input || !strings.HasSuffix(ref, ":tr1") {
		t.Fatalf("processed %s", done[0].Source)
	}
}

// TestStopInterruptedBySIGTERMCompletesOnce: serve's context ends (what
// SIGTERM does) while a train runs longer than the grace period. The stop
// is recorded interrupted with nothing pushed; after a restart on the same
// database it runs again from the same input and completes exactly once.
func TestStopInterruptedBySIGTERMCompletesOnce(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	probeTrain(t, n, "tr2", []string{"a"}, "sleep", "3")
	st := n.stations["a"]
	dbPath := st.DB.Path()
	srv := &station.Server{Station: st, Interval: 20 * time.Millisecond, Grace: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(n.ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, "", nil) }()
	waitFor(t, "the train to run", 30*time.Second, func() bool {
		s, err := srv.Status(n.ctx)
		return err == nil && s.Running != nil
	})
	time.Sleep(300 * time.Millisecond) // inside the container now
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after its grace period")
	}
	h := history(t, st, "tr2")
	if len(h) != 1 || h[0].State != station.Interrupted {
		t.Fatalf("after SIGTERM: %+v", h)
	}
	dest := n.network.Outbox("alice") + ":tr2"
	if got := n.gate.manifestPuts(dest); got != 0 {
		t.Fatalf("an interrupted stop pushed %d times", got)
	}

	// Restart: a new process opens the same database.
	st.DB.Close()
	db, err := station.OpenDB(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st.DB = db
	srv = &station.Server{Station: st}
	done, err := srv.PollOnce(n.ctx)
	if err != nil || len(done) != 1 || done[0].State != station.Done {
		t.Fatalf("after restart: %+v, %v", done, err)
	}
	if done, _ := srv.PollOnce(n.ctx); len(done) != 0 {
		t.Fatalf("ran again: %+v", done)
	}
	h = history(t, st, "tr2")
	if len(h) != 1 || h[0].State != station.Done || h[0].Attempts != 2 {
		t.Fatalf("records: %+v", h)
	}
	if got := n.gate.manifestPuts(dest); got != 1 {
		t.Fatalf("%d pushes of the finished train", got)
	}
}

// TestKilledStationLeavesStopInterrupted: a station killed mid-stop (no
// chance to record anything) leaves its stop Running; the next open of the
// database marks it interrupted, so it runs again.
func TestKilledStationLeavesStopInterrupted(t *testing.T) {
	p := filepath.Join(t.TempDir(), "station.db")
	db, err := station.OpenDB(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Save(&station.Stop{Key: "sha256:aa/0", Train: "t", Input: "sha256:bb", State: station.Running}, ""); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = station.OpenDB(p); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := db.Get("sha256:aa/0")
	if err != nil || st.State != station.Interrupted {
		t.Fatalf("after a crash: %+v, %v", st, err)
	}
	if ev, _ := db.Events("sha256:aa/0", 10); len(ev) != 2 || ev[1].State != station.Interrupted {
		t.Fatalf("events: %+v", ev)
	}
}

// TestFinishedStopRefusedOnRedelivery: the same train delivered again
// (another tag, or the same one after the station forgot its poll marks)
// is refused as a replay and nothing is pushed a second time.
func TestFinishedStopRefusedOnRedelivery(t *testing.T) {
	n := newNet(t, needRunc(t), "a", "b")
	ref := probeTrain(t, n, "tr3", []string{"a", "b"}, "write", "/opt/pht_results/out.txt", "ok")
	a := n.stations["a"]
	if _, err := a.Process(n.ctx, ref); err != nil {
		t.Fatal(err)
	}
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	again := n.network.Inbox("a") + ":tr3-again"
	if _, err := n.rc.Push(n.ctx, img, again); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{ref, again} {
		st, err := a.Process(n.ctx, r)
		if !errors.Is(err, hardened.ErrReplay) || station.Classify(err) != station.ClassRefused {
			t.Fatalf("re-delivery %s: %v", r, err)
		}
		if st.State != station.Done {
			t.Fatalf("re-delivery shows the stop as %s", st.State)
		}
	}
	if got := n.gate.manifestPuts(n.network.Inbox("b") + ":tr3"); got != 1 {
		t.Fatalf("%d pushes to the next inbox", got)
	}
	// Another state directory (a lost or second database) does not run it
	// again either: the next hop holds this station's signed stop.
	db, err := station.OpenDB(filepath.Join(t.TempDir(), "other.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a.DB = db
	_, err = a.Process(n.ctx, ref)
	if !errors.Is(err, hardened.ErrReplay) || !strings.Contains(err.Error(), "already holds stop 0") {
		t.Fatalf("with a fresh database: %v", err)
	}
	if h := history(t, a, "tr3"); len(h) != 1 || h[0].State != station.Refused {
		t.Fatalf("fresh database records %+v", h)
	}
}

// TestHoldAcceptReject: with Hold, verified trains wait. Accept lets one
// run on the next poll; Reject ends another for good and its creator sees
// the reason.
func TestHoldAcceptReject(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	a := n.stations["a"]
	a.Hold = true
	probeTrain(t, n, "tr4", []string{"a"}, "write", "/opt/pht_results/out.txt", "ok")
	srv := &station.Server{Station: a}
	done, err := srv.PollOnce(n.ctx)
	if err != nil || len(done) != 1 || done[0].State != station.Held || done[0].Creator != "alice" || len(done[0].Route) != 1 {
		t.Fatalf("held: %+v, %v", done, err)
	}
	if done, _ := srv.PollOnce(n.ctx); len(done) != 0 {
		t.Fatalf("a held train was processed again: %+v", done)
	}
	if _, err := a.Accept(n.ctx, "tr4", "olga"); err != nil {
		t.Fatal(err)
	}
	done, err = srv.PollOnce(n.ctx)
	if err != nil || len(done) != 1 || done[0].State != station.Done {
		t.Fatalf("accepted: %+v, %v", done, err)
	}
	if ev, _ := a.DB.Events(done[0].Key, 10); !hasEvent(ev, station.Accepted, "olga") {
		t.Fatalf("accept not recorded with who: %+v", ev)
	}

	probeTrain(t, n, "tr5", []string{"a"}, "write", "/opt/pht_results/out.txt", "ok")
	if done, _ := srv.PollOnce(n.ctx); len(done) != 1 || done[0].State != station.Held {
		t.Fatalf("second train: %+v", done)
	}
	if _, err := a.Reject(n.ctx, "tr5", "", "olga"); err == nil {
		t.Fatal("a reject without a reason was accepted")
	}
	if _, err := a.Accept(n.ctx, "tr-none", "olga"); !errors.Is(err, station.ErrNoStop) {
		t.Fatalf("accept of an unknown train: %v", err)
	}
	st, err := a.Reject(n.ctx, "tr5", "not covered by our data agreement", "olga")
	if err != nil || st.State != station.Rejected {
		t.Fatalf("reject: %+v, %v", st, err)
	}
	if _, err := a.Accept(n.ctx, "tr5", "olga"); !errors.Is(err, station.ErrState) {
		t.Fatalf("accept after reject: %v", err)
	}
	if done, _ := srv.PollOnce(n.ctx); len(done) != 0 {
		t.Fatalf("a rejected train ran: %+v", done)
	}
	if state, reason := creatorSees(t, n, "tr5", 0); state != "rejected" || !strings.Contains(reason, "data agreement") {
		t.Fatalf("creator sees %s %q", state, reason)
	}
}

func hasEvent(ev []station.Event, s station.State, by string) bool {
	for _, e := range ev {
		if e.State == s && e.By == by {
			return true
		}
	}
	return false
}

// TestReviewReleaseWithhold: with ReviewResults the plaintext results
// wait in the state dir and nothing is pushed; Release pushes the sealed
// train, Withhold deletes the results and tells the creator.
func TestReviewReleaseWithhold(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	a := n.stations["a"]
	a.ReviewResults = true
	ref := probeTrain(t, n, "tr6", []string{"a"}, "write", "/opt/pht_results/out.txt", "<script>alert(1)</script>")
	st, err := a.Process(n.ctx, ref)
	if !errors.Is(err, station.ErrUnderReview) || st.State != station.Review {
		t.Fatalf("review: %+v, %v", st, err)
	}
	dest := n.network.Outbox("alice") + ":tr6"
	if _, err := n.rc.Head(n.ctx, dest); err == nil {
		t.Fatal("results under review left the station")
	}
	files, err := a.Results(n.ctx, "tr6")
	if err != nil || len(files) != 1 || files[0].Path != "out.txt" || files[0].Size != int64(len("<script>alert(1)</script>")) {
		t.Fatalf("results: %+v, %v", files, err)
	}
	f, err := a.OpenResult(n.ctx, "tr6", "out.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "<script>alert(1)</script>" {
		t.Fatalf("preview %q", b)
	}
	if _, err := a.OpenResult(n.ctx, "tr6", "../../station.db"); err == nil {
		t.Fatal("a results path left the results directory")
	}
	ents, err := os.ReadDir(a.ReviewDir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("review dir: %v, %v", ents, err)
	}
	if fi, err := os.Stat(filepath.Join(a.ReviewDir, ents[0].Name(), "results")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("plaintext under review is not private: %v, %v", fi.Mode(), err)
	}
	st, err = a.Release(n.ctx, "tr6", "olga")
	if err != nil || st.State != station.Done {
		t.Fatalf("release: %+v, %v", st, err)
	}
	if have, err := n.rc.Head(n.ctx, dest); err != nil || have.String() != st.Output {
		t.Fatalf("released train at %s: %v, %v (want %s)", dest, have, err, st.Output)
	}
	if ents, _ := os.ReadDir(a.ReviewDir); len(ents) != 0 {
		t.Fatalf("plaintext kept after release: %v", ents)
	}
	// One event per change of state, the release with who made it.
	ev, _ := a.DB.Events(st.Key, 100)
	var states []string
	for _, e := range ev {
		states = append(states, string(e.State)+":"+e.By)
	}
	if got := strings.Join(states, " "); got != "running: review: done:olga" {
		t.Fatalf("audit trail %q", got)
	}

	ref = probeTrain(t, n, "tr7", []string{"a"}, "write", "/opt/pht_results/out.txt", "3 patients")
	if _, err := a.Process(n.ctx, ref); !errors.Is(err, station.ErrUnderReview) {
		t.Fatal(err)
	}
	if _, err := a.Withhold(n.ctx, "tr7", "", "olga"); err == nil {
		t.Fatal("withhold without a reason")
	}
	st, err = a.Withhold(n.ctx, "tr7", "fewer than 10 patients", "olga")
	if err != nil || st.State != station.Withheld {
		t.Fatalf("withhold: %+v, %v", st, err)
	}
	if _, err := n.rc.Head(n.ctx, n.network.Outbox("alice")+":tr7"); err == nil {
		t.Fatal("withheld results left the station")
	}
	if ents, _ := os.ReadDir(a.ReviewDir); len(ents) != 0 {
		t.Fatalf("plaintext kept after withhold: %v", ents)
	}
	if state, reason := creatorSees(t, n, "tr7", 0); state != "withheld" || !strings.Contains(reason, "fewer than 10") {
		t.Fatalf("creator sees %s %q", state, reason)
	}
	if _, err := a.Release(n.ctx, "tr7", "olga"); !errors.Is(err, station.ErrState) {
		t.Fatalf("release after withhold: %v", err)
	}
}

// TestFailingTrainRecordedFailed: a train that exits non-zero is failed,
// not refused; its creator sees it; it does not run again unless the
// operator retries it.
func TestFailingTrainRecordedFailed(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	a := n.stations["a"]
	probeTrain(t, n, "tr8", []string{"a"}, "exit", "3")
	srv := &station.Server{Station: a}
	done, err := srv.PollOnce(n.ctx)
	if err != nil || len(done) != 1 || done[0].State != station.Failed || done[0].ExitCode != 3 || done[0].Class != station.ClassFailed {
		t.Fatalf("failing train: %+v, %v", done, err)
	}
	if !metric(t, srv, `trainyard_station_stops_total{result="failed"} 1`) || metric(t, srv, `result="refused"`) {
		t.Error("a failed train is not counted as failed")
	}
	if state, reason := creatorSees(t, n, "tr8", 0); state != "failed" || !strings.Contains(reason, "3") {
		t.Fatalf("creator sees %s %q", state, reason)
	}
	if done, _ := srv.PollOnce(n.ctx); len(done) != 0 {
		t.Fatalf("a failed stop ran again: %+v", done)
	}
	if _, err := a.Retry(n.ctx, "tr8", "olga"); err != nil {
		t.Fatal(err)
	}
	done, _ = srv.PollOnce(n.ctx)
	if len(done) != 1 || done[0].State != station.Failed || done[0].Attempts != 2 {
		t.Fatalf("retried: %+v", done)
	}
	// The train's output is kept, labelled, and readable by the operator.
	var log strings.Builder
	if err := a.Log(n.ctx, "tr8", &log); err != nil || !strings.Contains(log.String(), `output of train "tr8", stop 0`) {
		t.Fatalf("log: %q, %v", log.String(), err)
	}
}

// TestUnstartableTrainRecordedFailed: a signed entrypoint that names no
// program in the image cannot be started; that is the train's doing, so the
// stop ends failed (the creator told), not retried for ever as a runtime
// hiccup.
func TestUnstartableTrainRecordedFailed(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	execTrain(t, n, "tr10", []string{"a"}, hardened.ExecConfig{Entrypoint: []string{"/opt/pht_train/no-such-program"}, WorkingDir: "/opt/pht_train"})
	srv := &station.Server{Station: n.stations["a"]}
	done, err := srv.PollOnce(n.ctx)
	if err != nil || len(done) != 1 || done[0].State != station.Failed || done[0].Class != station.ClassFailed ||
		!strings.Contains(done[0].Error, "could not be started") {
		t.Fatalf("unstartable train: %+v, %v", done, err)
	}
	if state, reason := creatorSees(t, n, "tr10", 0); state != "failed" || !strings.Contains(reason, "no-such-program") {
		t.Fatalf("creator sees %s %q", state, reason)
	}
}

// TestServeSkipsNonTrains: signatures, attestations, referrers-fallback
// tags, indexes and artifacts in an inbox are skipped without a verdict.
func TestServeSkipsNonTrains(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	inbox := n.network.Inbox("a")
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"sha256-" + strings.Repeat("ab", 32), "sha256-" + strings.Repeat("cd", 32) + ".sig", "tr9.sig", "tr9.att"} {
		if _, err := n.rc.Push(n.ctx, img, inbox+":"+tag); err != nil {
			t.Fatal(err)
		}
	}
	art := mutate.MediaType(mutate.ConfigMediaType(img, "application/vnd.example.sbom.config.v1+json"), types.OCIManifestSchema1)
	if _, err := n.rc.Push(n.ctx, art, inbox+":sbom"); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})
	if _, err := n.rc.PushIndex(n.ctx, idx, inbox+":multi"); err != nil {
		t.Fatal(err)
	}
	srv := &station.Server{Station: n.stations["a"]}
	done, err := srv.PollOnce(n.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0].State != "" || !strings.Contains(done[0].Error, "not a train") {
		t.Fatalf("want only the artifact looked at, without a verdict: %+v", done)
	}
	if !metric(t, srv, `trainyard_station_stops_total{result="skipped"} 1`) {
		t.Error("the artifact is not counted as skipped")
	}
	if done, _ := srv.PollOnce(n.ctx); len(done) != 0 {
		t.Fatalf("looked at again: %+v", done)
	}
	if h := history(t, n.stations["a"], ""); len(h) != 0 {
		t.Fatalf("non-trains recorded: %+v", h)
	}
	if metric(t, srv, `result="refused"`) {
		t.Fatal("a non-train was counted as refused")
	}
}

// TestAdminAPIWhileServing: while serve runs, the operator's commands go
// through the admin socket (the database is locked), and decisions are
// recorded with the caller's user name from the kernel.
func TestAdminAPIWhileServing(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	a := n.stations["a"]
	a.Hold = true
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv := &station.Server{Station: a, Interval: 20 * time.Millisecond, AdminSocket: sock}
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, "", nil) }()
	probeTrain(t, n, "tr10", []string{"a"}, "write", "/opt/pht_results/out.txt", "ok")
	var ac *station.AdminClient
	waitFor(t, "the admin socket", 10*time.Second, func() bool {
		var err error
		ac, err = station.DialAdmin(sock)
		return err == nil
	})
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode: %v %v", fi.Mode(), err)
	}
	waitFor(t, "the held train", 10*time.Second, func() bool {
		h, err := ac.History(n.ctx, station.Filter{States: []station.State{station.Held}})
		return err == nil && len(h) == 1
	})
	if _, err := station.OpenDB(a.DB.Path()); err == nil {
		t.Fatal("the database opened twice")
	}
	if _, err := ac.Accept(n.ctx, "tr-none", "olga"); !errors.Is(err, station.ErrNoStop) {
		t.Fatalf("remote accept of nothing: %v", err)
	}
	st, err := ac.Accept(n.ctx, "tr10", "olga")
	if err != nil || st.State != station.Accepted {
		t.Fatalf("remote accept: %+v, %v", st, err)
	}
	waitFor(t, "the accepted train to finish", 30*time.Second, func() bool {
		st, _, err := ac.Stop(n.ctx, "tr10")
		return err == nil && st.State == station.Done
	})
	_, ev, err := ac.Stop(n.ctx, "tr10")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range ev {
		found = found || e.State == station.Accepted && strings.HasPrefix(e.By, "root") || e.State == station.Accepted && e.By != "" && e.By != "olga"
	}
	if !found {
		t.Fatalf("accept not recorded with the peer's user: %+v", ev)
	}
	status, err := ac.Status(n.ctx)
	if err != nil || status.Station != "a" || status.Counts[station.Done] != 1 || status.UptimeSeconds <= 0 {
		t.Fatalf("status: %+v, %v", status, err)
	}
	cancel()
	<-served
	if _, err := station.DialAdmin(sock); err == nil {
		t.Fatal("admin socket still answers after serve stopped")
	}
}

// TestFailingTrainWithoutDB: a station without a database (a library
// user's) still classes and reports a failing train.
func TestFailingTrainWithoutDB(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	a := n.stations["a"]
	a.DB = nil
	ref := probeTrain(t, n, "tr11", []string{"a"}, "exit", "1")
	st, err := a.Process(n.ctx, ref)
	if station.Classify(err) != station.ClassFailed || st.State != station.Failed {
		t.Fatalf("%+v, %v", st, err)
	}
}

// TestHealthzFailsWhenPollsFail: /healthz answers 503 once inbox polls have
// failed for longer than HealthAfter, and ok again after a good poll;
// /status names the error and the poll failures are counted.
func TestHealthzFailsWhenPollsFail(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	srv := &station.Server{Station: n.stations["a"], HealthAfter: 50 * time.Millisecond}
	health := func() int {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code
	}
	if _, err := srv.PollOnce(n.ctx); err != nil || health() != http.StatusOK {
		t.Fatalf("healthy station: %v, %d", err, health())
	}
	n.gate.failCode = http.StatusBadRequest
	n.gate.setFail(func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/tags/list") })
	if _, err := srv.PollOnce(n.ctx); err == nil {
		t.Fatal("a failing poll reported no error")
	}
	if health() != http.StatusOK {
		t.Fatal("unhealthy after one failed poll, before HealthAfter")
	}
	time.Sleep(60 * time.Millisecond)
	srv.PollOnce(n.ctx)
	if got := health(); got != http.StatusServiceUnavailable {
		t.Fatalf("healthz after failing polls: %d", got)
	}
	if s, _ := srv.Status(n.ctx); !strings.Contains(s.LastError, "injected failure") {
		t.Fatalf("status last_error %q", s.LastError)
	}
	if !metric(t, srv, "trainyard_station_poll_failures_total 2") {
		t.Error("poll failures not counted")
	}
	n.gate.setFail(nil)
	if _, err := srv.PollOnce(n.ctx); err != nil || health() != http.StatusOK {
		t.Fatalf("after recovery: %v, %d", err, health())
	}
}

// TestCorruptTransferRetried: a registry serves the state layer with one
// byte changed, so its bytes no longer match the digest the (genuine)
// manifest names. Nothing runs, and the stop is not refused for good: that
// would refuse the genuine train under the same manifest forever. It is
// transient, and the genuine bytes are processed on the next try.
func TestCorruptTransferRetried(t *testing.T) {
	n := newNet(t, needRunc(t), "a")
	a := n.stations["a"]
	ref := probeTrain(t, n, "tr12", []string{"a"}, "write", "/opt/pht_results/out.txt", "ok")
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[len(layers)-1].Digest()
	n.gate.corrupt = d.String()
	st, err := a.Process(n.ctx, ref)
	if station.Classify(err) != station.Transient || !errors.Is(err, trainimage.ErrTransfer) || st.State == station.Done || st.Log != "" {
		t.Fatalf("corrupt transfer: %+v, %v", st, err)
	}
	if h := history(t, a, ""); len(h) != 0 {
		t.Fatalf("a damaged transfer was recorded: %+v", h)
	}
	n.gate.corrupt = ""
	if st, err := a.Process(n.ctx, ref); err != nil || st.State != station.Done {
		t.Fatalf("genuine bytes afterwards: %+v, %v", st, err)
	}
}
