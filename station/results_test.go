package station_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainrun"
)

var (
	probeOnce sync.Once
	probeDir  string
	probeErr  error
)

// probeCode builds trainrun's probe train (testdata/probe), whose first
// arguments choose what it does to its results.
func probeCode(t testing.TB) string {
	t.Helper()
	probeOnce.Do(func() {
		probeDir, probeErr = os.MkdirTemp("", "station-probe-")
		if probeErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			probeErr = train.BuildStatic(ctx, "../trainrun/testdata/probe", filepath.Join(probeDir, "probe"))
		}
	})
	if probeErr != nil {
		t.Fatalf("build probe: %v", probeErr)
	}
	return probeDir
}

// hostileTrain pushes an approved train whose program does args to its
// results, and returns its inbox reference.
func hostileTrain(t *testing.T, n *net, station0 string, args ...string) string {
	t.Helper()
	code := probeCode(t)
	exec := hardened.ExecConfig{Entrypoint: append([]string{"/opt/pht_train/probe"}, args...), WorkingDir: "/opt/pht_train"}
	d, err := creator.ApprovalDigest(n.ctx, code, exec, empty.Image)
	if err != nil {
		t.Fatal(err)
	}
	n.trust.Approve(hardened.Approval{Digest: d, Approvers: []string{"alice"}})
	b, err := creator.Create(n.ctx, creator.Options{Creator: hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, Spec: hardened.Spec{ID: "t1", Route: []string{station0}, Exec: exec}, CodeDir: code, Base: empty.Image, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	ref := n.network.Inbox(station0) + ":t1"
	if _, err := n.rc.Push(n.ctx, b.Image, ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// mountsUnder lists what is mounted below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && strings.HasPrefix(fs[4], dir+"/") {
			out = append(out, fs[4])
		}
	}
	return out
}

// A stop whose train attacks the results bound is refused with the cap
// error, leaves no mount and nothing in the work dir, and pushes nothing.
func TestStationResultsBounds(t *testing.T) {
	runner := needRunc(t)
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"writes past the cap": {[]string{"fill", "/opt/pht_results/big"}, "more than 8388608 bytes"},
		"1 TiB sparse file":   {[]string{"sparse", "/opt/pht_results/huge", strconv.FormatInt(1<<40, 10)}, "huge is 1099511627776 bytes"},
		"deep tree":           {[]string{"nest", "/opt/pht_results", "200"}, "nested deeper than 64"},
	} {
		t.Run(name, func(t *testing.T) {
			n := newNet(t, runner, "st1")
			s := n.stations["st1"]
			s.MaxResults = 8 << 20
			ref := hostileTrain(t, n, "st1", c.args...)
			start := time.Now()
			st, err := s.Process(n.ctx, ref)
			if !errors.Is(err, trainrun.ErrResultsTooLarge) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want the results cap error (%s), got %v", c.want, err)
			}
			t.Logf("refused in %s: %v", time.Since(start).Round(time.Millisecond), err)
			if st.Pushed != "" {
				t.Fatalf("pushed %s", st.Pushed)
			}
			if m := mountsUnder(t, s.WorkDir); len(m) > 0 {
				t.Fatalf("left mounted: %v", m)
			}
			if ents, _ := os.ReadDir(s.WorkDir); len(ents) > 0 {
				t.Fatalf("left in the work dir: %v", ents)
			}
		})
	}
}

// A stop within the cap goes through and leaves nothing mounted either.
func TestStationResultsWithinCap(t *testing.T) {
	runner := needRunc(t)
	n := newNet(t, runner, "st1")
	s := n.stations["st1"]
	s.MaxResults = 8 << 20
	st, err := s.Process(n.ctx, hostileTrain(t, n, "st1", "alloc-file", "/opt/pht_results/r.bin", "7"))
	if err != nil {
		t.Fatalf("7 MiB of results under an 8 MiB cap: %v", err)
	}
	if st.Pushed == "" {
		t.Fatal("nothing pushed")
	}
	if m := mountsUnder(t, s.WorkDir); len(m) > 0 {
		t.Fatalf("left mounted: %v", m)
	}
	if ents, _ := os.ReadDir(s.WorkDir); len(ents) > 0 {
		t.Fatalf("left in the work dir: %v", ents)
	}
}

// slowResults is a Runner that "runs" by leaving many result files, so that
// post-run has real work to do.
type slowResults struct{ files int }

func (r slowResults) Run(ctx context.Context, img v1.Image, spec trainrun.RunSpec) (trainrun.Result, error) {
	for i := 0; i < r.files; i++ {
		if err := os.WriteFile(filepath.Join(spec.ResultsDir, "r"+strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
			return trainrun.Result{}, err
		}
	}
	return trainrun.Result{}, nil
}

// --timeout bounds post-run too, not only the container.
func TestStationPostRunDeadline(t *testing.T) {
	n := newNet(t, slowResults{files: 20000}, "st1")
	s := n.stations["st1"]
	ref := hostileTrain(t, n, "st1", "exit", "0")
	s.Timeout = time.Millisecond
	st, err := s.Process(n.ctx, ref)
	if err == nil || !strings.Contains(err.Error(), "post-run stopped by its deadline") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the post-run deadline, got %v", err)
	}
	if st.Pushed != "" {
		t.Fatalf("pushed %s", st.Pushed)
	}
	// With time enough, the same stop goes through.
	n2 := newNet(t, slowResults{files: 100}, "st1")
	if _, err := n2.stations["st1"].Process(n2.ctx, hostileTrain(t, n2, "st1", "exit", "0")); err != nil {
		t.Fatalf("stop within its deadline: %v", err)
	}
}

// Results of the previous stop that do not fit this station's cap: pre-run
// decrypts them straight into the capped filesystem, runs out of space,
// and the stop ends failed (results too large) with nothing left mounted or
// in the work dir, as the copy into the filesystem ended it before.
func TestStationPreviousResultsOverCap(t *testing.T) {
	runner := needRunc(t)
	n := newNet(t, runner, "a", "b")
	ref := probeTrain(t, n, "big1", []string{"a", "b"}, "alloc-file", "/opt/pht_results/r.bin", "7")
	st, err := n.stations["a"].Process(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	b := n.stations["b"]
	b.MaxResults = 4 << 20
	_, err = b.Process(n.ctx, st.Dest)
	if !errors.Is(err, trainrun.ErrResultsTooLarge) || station.Classify(err) != station.ClassFailed {
		t.Fatalf("7 MiB of previous results under a 4 MiB cap: %v (%s)", err, station.Classify(err))
	}
	if m := mountsUnder(t, b.WorkDir); len(m) > 0 {
		t.Fatalf("left mounted: %v", m)
	}
	if ents, _ := os.ReadDir(b.WorkDir); len(ents) > 0 {
		t.Fatalf("left in the work dir: %v", ents)
	}
}
