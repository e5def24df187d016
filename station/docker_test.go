package station_test

import (
	"os"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainrun"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.StopDockerd()
	os.Exit(code)
}

// TestStationStopWithDocker: a whole stop with the Docker Engine backend
// (a private dockerd): the runnable image, with its uncompressed code
// layer, loads and runs, and a failing train is failed there too.
func TestStationStopWithDocker(t *testing.T) {
	d, err := trainrun.NewDocker(trainrun.WithDockerHost(testutil.Dockerd(t)))
	if err != nil {
		t.Fatal(err)
	}
	n := newNet(t, d, "a")
	a := n.stations["a"]
	ref := probeTrain(t, n, "dk1", []string{"a"}, "write", "/opt/pht_results/out.txt", "ok")
	if st, err := a.Process(n.ctx, ref); err != nil || st.State != station.Done {
		t.Fatalf("docker stop: %+v, %v", st, err)
	}
	ref = probeTrain(t, n, "dk2", []string{"a"}, "exit", "4")
	if st, err := a.Process(n.ctx, ref); station.Classify(err) != station.ClassFailed || st.ExitCode != 4 {
		t.Fatalf("failing train under docker: %+v, %v", st, err)
	}
}
