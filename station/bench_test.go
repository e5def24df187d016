package station_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/registry/server"
	"github.com/trainyard/trainyard/trainrun"
)

// timedRunner measures the time spent in the runtime itself: unpacking
// the bundle and running the train (what `runc run` of the same bundle
// costs), against which a whole stop is compared.
type timedRunner struct {
	*trainrun.Runc
	spent time.Duration
}

func (r *timedRunner) Run(ctx context.Context, img v1.Image, spec trainrun.RunSpec) (trainrun.Result, error) {
	start := time.Now()
	res, err := r.Runc.Run(ctx, img, spec)
	r.spent += time.Since(start)
	return res, err
}

// BenchmarkStationStop is stop 1 of a two-station route with 256 MiB of
// results in (from stop 0) and 256 MiB out, with runc and the embedded
// distribution registry on disk (ggcr's in-memory test registry would
// measure its own buffer growth): pull, verify, decrypt, run, seal, state
// layer, push. It
// reports the stop's time over the runtime's own (unpack and run of the
// same bundle: the floor) as x_runc; the goal is at most 3.
//
//	go test ./station -run '^$' -bench StationStop -benchtime 3x
func BenchmarkStationStop(b *testing.B) {
	for _, mib := range []int{256} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			// The whole Runc (MountResults, Cleanup), only Run timed.
			r := &timedRunner{Runc: needRunc(b)}
			reg, closeReg, err := server.NewHandler(context.Background(), b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer closeReg()
			n := newNetOn(b, reg, r, "a", "b")
			var stop, run, user, sys time.Duration
			var peak uint64
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("bench%d", i)
				ref := probeTrain(b, n, id, []string{"a", "b"}, "alloc-file", "/opt/pht_results/out.bin", fmt.Sprint(mib))
				st, err := n.stations["a"].Process(n.ctx, ref)
				if err != nil {
					b.Fatal(err)
				}
				r.spent = 0
				// The disk's backlog of dirty pages from setting up (and
				// from stop 0) would otherwise throttle this stop's writes
				// by up to a second: each timed stop starts clean.
				syscall.Sync()
				cpu := testutil.StartCPU()
				start := time.Now()
				heap := testutil.SampleHeap()
				if _, err := n.stations["b"].Process(n.ctx, st.Dest); err != nil {
					b.Fatal(err)
				}
				stop += time.Since(start)
				peak = max(peak, heap())
				u, sy := cpu()
				user, sys = user+u, sys+sy
				run += r.spent
			}
			b.ReportMetric(stop.Seconds()/float64(b.N), "s/stop")
			b.ReportMetric(run.Seconds()/float64(b.N), "s/runc")
			b.ReportMetric(stop.Seconds()/run.Seconds(), "x_runc")
			// This process's CPU during the stop (the registry's included,
			// runc's not): user is the hashing and sealing, sys mostly
			// page-cache writes.
			b.ReportMetric(user.Seconds()/float64(b.N), "user-s/stop")
			b.ReportMetric(sys.Seconds()/float64(b.N), "sys-s/stop")
			// The registry's heap included.
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.SetBytes(int64(2 * mib << 20))
		})
	}
}
