package hardened

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"
)

// BenchmarkPostRunPreRun seals a large results tree at one station (post-run)
// and verifies and decrypts it at the next (pre-run), through files, and
// reports the peak heap and, measured in the same run, the machine's limit
// the issue compares it with: one AES-256-GCM pass and one SHA-256 pass over
// the same bytes on one core (limit-MB/s, of-limit). Size:
// TRAINYARD_BENCH_MB (default 64).
//
//	TRAINYARD_BENCH_MB=1024 go test -run '^$' -bench PostRunPreRun ./protocol/hardened/
func BenchmarkPostRunPreRun(b *testing.B) {
	mb := 64
	if v, err := strconv.Atoi(os.Getenv("TRAINYARD_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	ctx := context.Background()
	n := newTestNet(b)
	env, code := n.create(b)
	work := b.TempDir()
	big := filepath.Join(work, "results")
	// One big file plus a few small ones; content from a random block.
	block := make([]byte, 1<<20)
	rand.Read(block)
	if err := os.MkdirAll(big, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(big, "model.bin"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < mb; i++ {
		block[0] = byte(i)
		f.Write(block)
	}
	f.Close()
	for i := 0; i < 10; i++ {
		writeFile(b, filepath.Join(big, "stats", strconv.Itoa(i)+".csv"), "n,mean\n10,3.5\n", 0o644)
	}
	runtime.GC()
	b.SetBytes(int64(mb) << 20)
	stop := testutil.SampleHeap()
	cpu := testutil.StartCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		it := filepath.Join(work, strconv.Itoa(i))
		s, err := PreRun(ctx, Party{ID: "st-a", Key: n.stations["st-a"], Trust: n.trust}, Train{Envelope: env, Code: bytesReader(code)}, Dirs{Code: filepath.Join(it, "a-code"), Results: filepath.Join(it, "a-res")})
		if err != nil {
			b.Fatal(err)
		}
		blob, err := os.Create(filepath.Join(it, "blob"))
		if err != nil {
			b.Fatal(err)
		}
		env2, err := s.PostRun(ctx, big, blob)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := blob.Seek(0, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := PreRun(ctx, Party{ID: "st-b", Key: n.stations["st-b"], Trust: n.trust}, Train{Envelope: env2, Code: bytesReader(code), Results: blob}, Dirs{Code: filepath.Join(it, "b-code"), Results: filepath.Join(it, "b-res")}); err != nil {
			b.Fatal(err)
		}
		blob.Close()
		b.StopTimer()
		os.RemoveAll(it)
		b.StartTimer()
	}
	b.StopTimer()
	user, sys := cpu()
	// CPU of the whole benchmark loop (the untimed removals included):
	// user is hashing and sealing, sys the file reads and writes.
	b.ReportMetric(user.Seconds()/float64(b.N), "user-s/op")
	b.ReportMetric(sys.Seconds()/float64(b.N), "sys-s/op")
	b.ReportMetric(float64(stop())/(1<<20), "peak-heap-MiB")
	testutil.ReportLimits(b, int64(mb)<<20, "")
}
