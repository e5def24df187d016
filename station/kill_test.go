package station_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainrun"
)

// TestHelperKilledStation is not a test: run by TestStationKilledMidRun as
// a station process (env TRAINYARD_TEST_KILLED_STATION=1), it processes a
// train that runs for ten minutes, until it is killed.
func TestHelperKilledStation(t *testing.T) {
	if os.Getenv("TRAINYARD_TEST_KILLED_STATION") != "1" {
		return // only as the helper process
	}
	runner := trainrun.NewRunc(trainrun.WithStateDir(os.Getenv("TRAINYARD_TEST_STATE")), trainrun.WithBundleDir(os.Getenv("TRAINYARD_TEST_WORK")))
	n := newNet(t, runner, "st1")
	n.stations["st1"].WorkDir = os.Getenv("TRAINYARD_TEST_WORK")
	n.stations["st1"].Timeout = time.Hour
	ref := hostileTrain(t, n, "st1", "hold", "/opt/pht_results/started", "600")
	_, err := n.stations["st1"].Process(n.ctx, ref)
	t.Fatalf("the stop ended: %v", err)
}

// The station is killed with SIGKILL while its train runs: the train dies
// with it, and the next start (Recover) leaves no plaintext, bundle or
// results filesystem in the work directory.
func TestStationKilledMidRun(t *testing.T) {
	needRunc(t)
	probeCode(t) // built here, so the station process finds it in the build cache
	work, state := t.TempDir(), t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKilledStation$", "-test.v")
	cmd.Env = append(os.Environ(), "TRAINYARD_TEST_KILLED_STATION=1", "TRAINYARD_TEST_WORK="+work, "TRAINYARD_TEST_STATE="+state)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(4 * time.Minute)
	for {
		if m, _ := filepath.Glob(filepath.Join(work, "stop-*", "results", "started")); len(m) > 0 {
			break
		}
		select {
		case <-done:
			t.Fatalf("the station ended before its train ran:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the train did not start:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	// The watchdog takes the container and its bundle down at once.
	deadline = time.Now().Add(30 * time.Second)
	for {
		ids, _ := exec.Command("runc", "--root", state, "list", "-q").Output()
		bundles, _ := filepath.Glob(filepath.Join(work, "trainyard-bundle-*"))
		if strings.TrimSpace(string(ids)) == "" && len(bundles) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the kill: containers %q, bundles %v", ids, bundles)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// What only the station itself can remove: its stop directory with the
	// decrypted code and the plaintext results on their filesystem.
	stops, _ := filepath.Glob(filepath.Join(work, "stop-*"))
	if len(stops) != 1 {
		t.Fatalf("stop directories after the kill: %v", stops)
	}
	s := &station.Station{WorkDir: work, Runner: trainrun.NewRunc(trainrun.WithStateDir(state), trainrun.WithBundleDir(work))}
	if err := s.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Fatalf("left in the work directory after Recover: %v", left)
	}
	if mounts := mountsUnder(t, work); len(mounts) != 0 {
		t.Fatalf("still mounted: %v", mounts)
	}
}
