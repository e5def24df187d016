package seal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// genLayer is a layer of size pseudo-random bytes generated on every read,
// so that GiB-sized images never exist in memory or on disk.
type genLayer struct {
	size int64
	seed uint64
	d    v1.Hash
}

type genReader struct {
	rng  *rand.ChaCha8
	left int64
}

func (g *genReader) Read(b []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > g.left {
		b = b[:g.left]
	}
	n, _ := g.rng.Read(b)
	g.left -= int64(n)
	return n, nil
}

func newGenLayer(t testing.TB, size int64, seed uint64) *genLayer {
	l := &genLayer{size: size, seed: seed}
	h := sha256.New()
	rc, _ := l.Compressed()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatal(err)
	}
	l.d = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	return l
}

func (l *genLayer) Digest() (v1.Hash, error) { return l.d, nil }
func (l *genLayer) DiffID() (v1.Hash, error) { return l.d, nil }
func (l *genLayer) Size() (int64, error)     { return l.size, nil }
func (l *genLayer) MediaType() (types.MediaType, error) {
	return types.OCIUncompressedLayer, nil
}
func (l *genLayer) Compressed() (io.ReadCloser, error) {
	var seed [32]byte
	seed[0] = byte(l.seed)
	return io.NopCloser(&genReader{rng: rand.NewChaCha8(seed), left: l.size}), nil
}
func (l *genLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

func bigImage(t testing.TB, size int64) v1.Image {
	img, err := mutate.AppendLayers(empty.Image, newGenLayer(t, size, 1))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// discardTarget verifies (through Unseal) and throws blobs away.
type discardTarget struct {
	n   int64
	inv *Inventory
}

func (d *discardTarget) Prepare(_ context.Context, inv *Inventory) error { d.inv = inv; return nil }
func (d *discardTarget) WriteBlob(_ context.Context, _ v1.Descriptor, r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	d.n += n
	return err
}
func (d *discardTarget) Commit(context.Context) error { return nil }
func (d *discardTarget) Abort(context.Context)        {}
func (d *discardTarget) Resolve(_ context.Context, n string) ([]string, error) {
	for _, im := range d.inv.Images {
		if im.Name == n {
			return []string{im.Digest}, nil
		}
	}
	return nil, nil
}

// TestStreamingMemoryBounded seals and unseals a 64 MiB image and checks
// that the heap never holds more than a few chunks of it.
func TestStreamingMemoryBounded(t *testing.T) {
	const size = 64 << 20
	img := bigImage(t, size)
	path := filepath.Join(t.TempDir(), "big.sealed")
	var sealed *Sealed
	runtime.GC()
	sealPeak := testutil.PeakHeap(func() {
		var err error
		sealed, err = SealFile(context.Background(), path, []Source{{Name: "big/image:1", Image: img}})
		if err != nil {
			t.Fatal(err)
		}
	})
	keys := Keys{DeviceKey: sealed.Shares[0].DeviceKey, Fragment: sealed.Shares[0].Fragment}
	dir := t.TempDir()
	runtime.GC()
	unsealPeak := testutil.PeakHeap(func() {
		if _, err := Unseal(context.Background(), path, keys, NewLayoutTarget(dir)); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("64 MiB image: peak heap seal %d MiB, unseal %d MiB", sealPeak>>20, unsealPeak>>20)
	if sealPeak > 24<<20 || unsealPeak > 24<<20 {
		t.Fatalf("heap grew with the archive: seal %d MiB, unseal %d MiB", sealPeak>>20, unsealPeak>>20)
	}
}

// TestUnseal2GiB is the streaming check on a 2 GiB archive: it asserts a
// peak heap and a peak process RSS (VmHWM) under 100 MiB. It writes 4 GiB to
// the temp dir and takes about 20 s, so -short leaves it out
// (TRAINYARD_SEAL_BIG_MIB changes the size).
func TestUnseal2GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the 2 GiB streaming test writes 4 GiB")
	}
	size := int64(2048) << 20
	if s := os.Getenv("TRAINYARD_SEAL_BIG_MIB"); s != "" {
		n, _ := strconv.Atoi(s)
		size = int64(n) << 20
	}
	img := bigImage(t, size)
	dir := t.TempDir()
	path := filepath.Join(dir, "big.sealed")
	start := time.Now()
	sealed, err := SealFile(context.Background(), path, []Source{{Name: "big/image:1", Image: img}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sealed %d MiB in %s (%.0f MiB/s)", size>>20, time.Since(start).Round(time.Millisecond), float64(size>>20)/time.Since(start).Seconds())
	keys := Keys{DeviceKey: sealed.Shares[0].DeviceKey, Fragment: sealed.Shares[0].Fragment}
	runtime.GC()
	start = time.Now()
	out := filepath.Join(dir, "layout")
	peak := testutil.PeakHeap(func() {
		if _, err := Unseal(context.Background(), path, keys, NewLayoutTarget(out)); err != nil {
			t.Fatal(err)
		}
	})
	el := time.Since(start)
	hwm := vmHWM()
	t.Logf("unsealed %d MiB (two passes + layout write) in %s (%.0f MiB/s of archive); peak heap %d MiB, peak RSS %d MiB",
		size>>20, el.Round(time.Millisecond), float64(size>>20)/el.Seconds(), peak>>20, hwm>>20)
	if peak > 100<<20 {
		t.Fatalf("peak heap %d MiB", peak>>20)
	}
	// The RSS high-water mark is the whole process's, and the race
	// detector's shadow memory multiplies it; the heap bound above holds
	// either way.
	if hwm > 100<<20 && !testutil.RaceEnabled {
		t.Fatalf("peak RSS %d MiB", hwm>>20)
	}
}

// vmHWM returns the process's peak resident set size (Linux), or 0.
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseUint(f[1], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

func benchSize() int64 {
	if s := os.Getenv("TRAINYARD_BENCH_MIB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return int64(n) << 20
		}
	}
	return 256 << 20
}

// BenchmarkSeal measures seal throughput (generation of the layer included;
// ChaCha8 runs at several GB/s). TRAINYARD_BENCH_MIB sets the size.
func BenchmarkSeal(b *testing.B) {
	size := benchSize()
	img := bigImage(b, size)
	dir := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := SealFile(context.Background(), filepath.Join(dir, "b.sealed"), []Source{{Name: "big/image:1", Image: img}}); err != nil {
			b.Fatal(err)
		}
	}
}

// sealedForBench seals a benchSize image and starts the timer with the
// bytes per op set.
func sealedForBench(b *testing.B) (string, Keys) {
	size := benchSize()
	img := bigImage(b, size)
	path := filepath.Join(b.TempDir(), "b.sealed")
	s, err := SealFile(context.Background(), path, []Source{{Name: "big/image:1", Image: img}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	return path, Keys{DeviceKey: s.Shares[0].DeviceKey, Fragment: s.Shares[0].Fragment}
}

// BenchmarkUnsealLayout measures the one-pass unseal into a fresh OCI
// layout (blobs staged, fsynced and published as in `unseal --to oci:DIR`).
//
// Beside it, measured in the same run, are the machine's limits: one
// AES-256-GCM and SHA-256 pass on one core (limit-MB/s) and writing and
// syncing the same bytes in the same directory (disk-MB/s); of-limit is the
// fraction of the lower one reached. With TMPDIR on a tmpfs the disk drops
// out and the crypto limit is the one that binds.
func BenchmarkUnsealLayout(b *testing.B) {
	path, keys := sealedForBench(b)
	tmp := b.TempDir()
	peak := testutil.SampleHeap()
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(tmp, "oci")
		if _, err := Unseal(context.Background(), path, keys, NewLayoutTarget(dir)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MiB")
	testutil.ReportLimits(b, benchSize(), tmp)
}

// BenchmarkUnseal measures the two-pass unseal (verify everything, then
// load; what a Docker target gets) into a discarding target, so disk writes
// do not count.
func BenchmarkUnseal(b *testing.B) {
	path, keys := sealedForBench(b)
	for i := 0; i < b.N; i++ {
		if _, err := Unseal(context.Background(), path, keys, &discardTarget{}); err != nil {
			b.Fatal(err)
		}
	}
}
