package creator_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainrun"
)

type testNet struct {
	ctx     context.Context
	rc      *registry.Client
	trust   *hardened.MemoryTrust
	network station.Network
	alice   *hardened.PrivateKey
	keys    map[string]*hardened.PrivateKey
	exec    hardened.ExecConfig
	built   *creator.Built
}

func newTestNet(t *testing.T, route ...string) *testNet {
	t.Helper()
	srv := testutil.Registry(t)
	t.Cleanup(srv.Close)
	n := &testNet{ctx: context.Background(), rc: registry.NewClient(), trust: hardened.NewMemoryTrust(),
		network: station.Network{Prefix: strings.TrimPrefix(srv.URL, "http://") + "/net"}, keys: map[string]*hardened.PrivateKey{},
		exec: hardened.ExecConfig{Entrypoint: []string{"/opt/pht_train/aggregate"}, WorkingDir: "/opt/pht_train"}}
	n.alice = mustKey(t)
	n.trust.AddUser("alice", n.alice.Public())
	for _, id := range route {
		n.keys[id] = mustKey(t)
		n.trust.AddStation(id, n.keys[id].Public())
	}
	return n
}

func mustKey(t *testing.T) *hardened.PrivateKey {
	t.Helper()
	k, err := hardened.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// create approves and pushes train t1 (code in dir) to the first inbox.
func (n *testNet) create(t *testing.T, code string, route ...string) string {
	t.Helper()
	d, err := creator.ApprovalDigest(n.ctx, code, n.exec, empty.Image)
	if err != nil {
		t.Fatal(err)
	}
	n.trust.Approve(hardened.Approval{Digest: d, Approvers: []string{"board"}})
	b, err := creator.Create(n.ctx, creator.Options{Creator: hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, Spec: hardened.Spec{ID: "t1", Route: route, Exec: n.exec}, CodeDir: code, Base: empty.Image, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Release)
	n.built = b
	ref := n.network.Inbox(route[0]) + ":t1"
	if _, err := n.rc.Push(n.ctx, b.Image, ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// station is a v1 station with its own stop database.
func (n *testNet) station(t *testing.T, id string, runner station.Runner, data string) *station.Station {
	t.Helper()
	db, err := station.OpenDB(filepath.Join(t.TempDir(), "station.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &station.Station{ID: id, Protocol: station.V1{Key: n.keys[id]}, Trust: n.trust, Runner: runner, Client: n.rc, Network: n.network,
		DataDir: data, WorkDir: t.TempDir(), DB: db, ReviewDir: t.TempDir(), Timeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func smallCode(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "aggregate"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (n *testNet) status(t *testing.T, opts ...creator.Option) *creator.TrainStatus {
	t.Helper()
	s, err := creator.Status(n.ctx, station.Outbox{Client: n.rc, Network: n.network, User: "alice"}, n.trust, "t1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (n *testNet) notice(t *testing.T, st string, nt hardened.Notice) {
	t.Helper()
	nt.Train = "t1"
	if nt.Station == "" {
		nt.Station = st
	}
	if _, err := (station.Outbox{Client: n.rc, Network: n.network, User: "alice"}).PushNotice(n.ctx, n.keys[st], nt); err != nil {
		t.Fatal(err)
	}
}

// states renders the stops as "station:state" for comparison.
func states(s *creator.TrainStatus) string {
	var out []string
	for _, st := range s.Stops {
		out = append(out, st.Station+":"+st.State)
	}
	return strings.Join(out, " ")
}

// TestStatusWaitingAtFirstStop: a train just created waits in the first
// station's inbox; its other stops are pending. Without a hint where to
// look, nothing is found.
func TestStatusWaitingAtFirstStop(t *testing.T) {
	n := newTestNet(t, "st1", "st2", "other")
	n.create(t, smallCode(t), "st1", "st2")
	s := n.status(t, creator.WithStations("other", "st2", "st1"))
	if s.Where != "station:st1" || states(s) != "st1:waiting st2:pending" || s.Complete || len(s.Warnings) != 0 {
		t.Fatalf("status %+v", s)
	}
	created := n.built.Verified.Statement.Created
	if !s.Stops[0].Time.Equal(created) || !s.Stops[1].Time.IsZero() || s.TrainDigest != n.built.Verified.TrainDigest ||
		strings.Join(s.Route, ",") != "st1,st2" || s.Ref != n.network.Inbox("st1")+":t1" {
		t.Fatalf("status %+v", s)
	}
	if s := n.status(t); s.Where != creator.Unknown || s.Found() {
		t.Fatalf("without hints: %+v", s)
	}
	// Another creator's outbox: not alice's train.
	s, err := creator.Status(n.ctx, station.Outbox{Client: n.rc, Network: n.network, User: "bob"}, n.trust, "t1", creator.WithStations("st1"))
	if err != nil || s.Where != creator.Unknown || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], `creator "alice"`) {
		t.Fatalf("bob's status: %+v, %v", s, err)
	}
}

// TestStatusFailedAtFirstStop: a failed notice from station 0 marks the
// stop failed with its reason and exit code; the train still sits in that
// inbox. The notice's tag is enough to find the train. Notices that are
// forged, older than the train, or about another train are not believed.
func TestStatusFailedAtFirstStop(t *testing.T) {
	n := newTestNet(t, "st1", "st2")
	n.create(t, smallCode(t), "st1", "st2")
	v := n.built.Verified

	// Older than the train's arrival: an earlier train of the same id.
	n.notice(t, "st1", hardened.Notice{Index: 0, Outcome: "failed", Reason: "old", Time: v.Statement.Created.Add(-time.Hour)})
	if s := n.status(t, creator.WithStations("st1")); states(s) != "st1:waiting st2:pending" {
		t.Fatalf("old notice believed: %+v", s)
	}
	// Signed for another train digest under the same id.
	n.notice(t, "st1", hardened.Notice{TrainDigest: "sha256:" + strings.Repeat("0", 64), Index: 0, Outcome: "failed", Reason: "other"})
	if s := n.status(t, creator.WithStations("st1")); states(s) != "st1:waiting st2:pending" {
		t.Fatalf("notice of another train believed: %+v", s)
	}
	// st2 signs a notice in st1's name: not believed, and said so.
	n.notice(t, "st2", hardened.Notice{Station: "st1", TrainDigest: v.TrainDigest, Index: 0, Outcome: "failed", Reason: "forged"})
	s := n.status(t, creator.WithStations("st1"))
	if states(s) != "st1:waiting st2:pending" || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "does not verify") {
		t.Fatalf("forged notice: %+v", s)
	}

	// Naming this train's digest, a notice counts even from a station
	// whose clock is behind the creator's.
	n.notice(t, "st1", hardened.Notice{TrainDigest: v.TrainDigest, Index: 0, Outcome: "refused", Reason: "skewed", Time: v.Statement.Created.Add(-time.Hour)})
	if s := n.status(t, creator.WithStations("st1")); states(s) != "st1:refused st2:pending" {
		t.Fatalf("notice with this train's digest from a slow clock: %+v", s)
	}
	n.notice(t, "st1", hardened.Notice{TrainDigest: v.TrainDigest, Index: 0, Outcome: "failed", Reason: "train exited with status 3", ExitCode: 3})
	for _, opts := range [][]creator.Option{{creator.WithStations("st1")}, nil} {
		s := n.status(t, opts...)
		if s.Where != "station:st1" || states(s) != "st1:failed st2:pending" || len(s.Warnings) != 0 {
			t.Fatalf("status %+v", s)
		}
		if st := s.Stops[0]; st.Reason != "train exited with status 3" || st.ExitCode != 3 || time.Since(st.Time) > time.Minute {
			t.Fatalf("stop 0: %+v", st)
		}
	}
	// A notice that names the wrong position is not believed either.
	n.notice(t, "st2", hardened.Notice{Index: 0, Outcome: "refused", Reason: "x"})
	if s := n.status(t); s.Stops[1].State != creator.StatePending || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "stop 0") {
		t.Fatalf("misplaced notice: %+v", s)
	}
}

// TestStatusUnknownWithNotice: a train that no station could read (no
// copy verifies) is reported from its notices alone.
func TestStatusUnknownWithNotice(t *testing.T) {
	n := newTestNet(t, "st1")
	n.notice(t, "st1", hardened.Notice{Index: -1, Outcome: "refused", Reason: "not a trainyard/v1 train image"})
	s := n.status(t)
	if s.Where != creator.Unknown || !s.Found() || states(s) != "st1:refused" || s.Stops[0].Index != -1 || len(s.Route) != 0 {
		t.Fatalf("status %+v", s)
	}
}

// TestStatusFinishedRoute runs a real train with runc over two stations:
// after each stop the status follows it, a refused re-delivery does not
// undo a done stop, and the finished train is home.
func TestStatusFinishedRoute(t *testing.T) {
	runner := trainrun.NewRunc(trainrun.WithStateDir(t.TempDir()), trainrun.WithBundleDir(t.TempDir()))
	if err := runner.Available(); err != nil {
		testutil.SkipUnlessCI(t, "runc not usable here: %v", err)
	}
	code := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := train.BuildStatic(ctx, "../demo/aggregate", filepath.Join(code, "aggregate")); err != nil {
		t.Fatal(err)
	}
	route := []string{"st1", "st2"}
	n := newTestNet(t, route...)
	ref := n.create(t, code, route...)
	for i, id := range route {
		data := t.TempDir()
		if err := os.WriteFile(filepath.Join(data, "patients.csv"), []byte("id,age,diagnosis\n1,50,flu\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s := n.station(t, id, runner, data)
		stop, err := s.Process(n.ctx, ref)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		ref = strings.SplitN(stop.Pushed, "@", 2)[0]
		if i == 0 {
			got := n.status(t, creator.WithStations("st1"))
			if got.Where != "station:st2" || states(got) != "st1:done st2:waiting" || !got.Stops[1].Time.Equal(got.Stops[0].Time) {
				t.Fatalf("after stop 0: %+v", got)
			}
			// st1 refuses a re-delivery later: the signed record stands.
			n.notice(t, "st1", hardened.Notice{TrainDigest: got.TrainDigest, Index: 0, Outcome: "refused", Reason: "replayed train"})
			if got := n.status(t, creator.WithStations("st1")); states(got) != "st1:done st2:waiting" {
				t.Fatalf("a notice undid a done stop: %+v", got)
			}
		}
	}
	got := n.status(t)
	if got.Where != creator.Home || !got.Complete || states(got) != "st1:done st2:done" || got.Ref != n.network.Outbox("alice")+":t1" {
		t.Fatalf("finished: %+v", got)
	}
	for _, st := range got.Stops {
		if st.Time.IsZero() || st.Reason != "" {
			t.Fatalf("finished stop %+v", st)
		}
	}
}

// TestStatusFailingTrainTellsCreator: a real train that exits non-zero at
// its second stop (runc) is recorded by the station, which signs a
// "failed" notice to the creator: train status shows stop 0 done and
// stop 1 failed with the exit code, the train still in that inbox.
func TestStatusFailingTrainTellsCreator(t *testing.T) {
	runner := trainrun.NewRunc(trainrun.WithStateDir(t.TempDir()), trainrun.WithBundleDir(t.TempDir()))
	if err := runner.Available(); err != nil {
		testutil.SkipUnlessCI(t, "runc not usable here: %v", err)
	}
	code := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := train.BuildStatic(ctx, "../demo/aggregate", filepath.Join(code, "aggregate")); err != nil {
		t.Fatal(err)
	}
	route := []string{"st1", "st2"}
	n := newTestNet(t, route...)
	ref := n.create(t, code, route...)
	// st2's data is a CSV the train cannot parse: it exits with status 1.
	csv := map[string]string{"st1": "id,age,diagnosis\n1,50,flu\n", "st2": "id,age\n\"broken\n"}
	for _, id := range route {
		data := t.TempDir()
		if err := os.WriteFile(filepath.Join(data, "patients.csv"), []byte(csv[id]), 0o644); err != nil {
			t.Fatal(err)
		}
		s := n.station(t, id, runner, data)
		stop, err := s.Process(n.ctx, ref)
		if id == "st2" {
			if err == nil {
				t.Fatal("a failing train passed")
			}
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		ref = strings.SplitN(stop.Pushed, "@", 2)[0]
	}
	got := n.status(t)
	if got.Where != "station:st2" || states(got) != "st1:done st2:failed" || len(got.Warnings) != 0 {
		t.Fatalf("status %+v", got)
	}
	if st := got.Stops[1]; st.ExitCode != 1 || st.Reason == "" || st.Time.Before(got.Stops[0].Time) {
		t.Fatalf("failed stop %+v", st)
	}
}
