package phtv2

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trainyard/trainyard/train"
)

// BenchmarkPostRunPreRun seals a train with many result files at one
// station (post-run) and opens it at the next (pre-run). Defaults: 1,000
// files, 1 GiB in total (bench/pht.sh uses 256 MiB); TRAINYARD_BENCH_PHT_BYTES and
// TRAINYARD_BENCH_PHT_FILES scale it. It reports the peak Go heap during the
// timed part and the process's peak RSS: both must stay far below the
// result size, because every stage streams through disk. Run it with
// bench/pht.sh.
func BenchmarkPostRunPreRun(b *testing.B) {
	total := envInt("TRAINYARD_BENCH_PHT_BYTES", 1<<30)
	files := envInt("TRAINYARD_BENCH_PHT_FILES", 1000)
	ctx := context.Background()
	tmp := b.TempDir()

	// Setup (not timed): a train decrypted at s1 whose run wrote the results.
	pre, err := PreRun(ctx, buildTrain(b), station(b, "s1"), WithTempDir(tmp))
	if err != nil {
		b.Fatal(err)
	}
	defer pre.Close()
	dir := filepath.Join(tmp, "results")
	rng := rand.NewChaCha8([32]byte{1})
	per := total / files
	buf := make([]byte, per)
	for i := 0; i < files; i++ {
		p := filepath.Join(dir, "part"+strconv.Itoa(i/100), "r"+strconv.Itoa(i)+".bin")
		os.MkdirAll(filepath.Dir(p), 0o755)
		rng.Read(buf)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	ran, layer, err := train.ReplaceResults(ctx, pre.Image, dir, tmp)
	if err != nil {
		b.Fatal(err)
	}
	defer layer.Remove()
	os.RemoveAll(dir)

	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	b.SetBytes(int64(per * files))
	// CPU seconds (user + system) of the timed part: on a shared machine
	// wall time swings with the load, CPU time much less.
	cpu0 := cpuSeconds()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		post, err := PostRun(ctx, ran, station(b, "s1"), WithTempDir(tmp))
		if err != nil {
			b.Fatal(err)
		}
		next, err := PreRun(ctx, post.Image, station(b, "s2"), WithTempDir(tmp))
		if err != nil {
			b.Fatal(err)
		}
		if n := len(next.Config.Route); n != 3 {
			b.Fatal("route lost")
		}
		next.Close()
		post.Close()
	}
	b.StopTimer()
	cpu := cpuSeconds() - cpu0
	close(stop)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-rss-MiB")
	b.ReportMetric(float64(files), "files")
	b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
