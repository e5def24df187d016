package testutil

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The machine's limits the performance benchmarks report beside their own
// figures, measured in the same run so that a loaded or throttled machine
// moves both.

// CryptoLimit times one decrypt-and-digest pass on one core over n bytes:
// AES-256-GCM and SHA-256, in memory, in 1 MiB chunks (the formats' chunk).
// Every byte a station or an unseal receives needs at least this much.
func CryptoLimit(n int64) time.Duration {
	block := make([]byte, 1<<20)
	rand.Read(block)
	c, _ := aes.NewCipher(make([]byte, 32))
	g, _ := cipher.NewGCM(c)
	nonce := make([]byte, g.NonceSize())
	out := make([]byte, 0, len(block)+g.Overhead())
	h := sha256.New()
	start := time.Now()
	for left := n; left > 0; left -= int64(len(block)) {
		out = g.Seal(out[:0], nonce, block, nil)
		h.Write(out[:len(block)])
	}
	return time.Since(start)
}

// DiskLimit times writing n bytes to a new file in dir in 1 MiB writes and
// syncing it: the floor for anything that must make n bytes durable there.
func DiskLimit(tb testing.TB, dir string, n int64) time.Duration {
	tb.Helper()
	block := make([]byte, 1<<20)
	rand.Read(block)
	path := filepath.Join(dir, ".disk-limit")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer os.Remove(path)
	start := time.Now()
	for left := n; left > 0; left -= int64(len(block)) {
		if _, err := f.Write(block); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	d := time.Since(start)
	f.Close()
	return d
}

// ReportLimits reports, for a benchmark that moved n bytes per op, the
// crypto limit (limit-MB/s), the disk limit in dir when dir is not ""
// (disk-MB/s), and the fraction of the lower of the two reached (of-limit).
func ReportLimits(b *testing.B, n int64, dir string) {
	b.Helper()
	elapsed := b.Elapsed()
	got := float64(n) * float64(b.N) / elapsed.Seconds()
	limit := float64(n) / CryptoLimit(n).Seconds()
	b.ReportMetric(limit/1e6, "limit-MB/s")
	floor := limit
	if dir != "" {
		disk := float64(n) / DiskLimit(b, dir, n).Seconds()
		b.ReportMetric(disk/1e6, "disk-MB/s")
		floor = min(floor, disk)
	}
	b.ReportMetric(got/floor, "of-limit")
}

// StartCPU starts counting this process's CPU time; the returned func gives
// the user and system time since (all goroutines, no child processes).
func StartCPU() func() (user, sys time.Duration) {
	var r0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	return func() (user, sys time.Duration) {
		var r1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		return time.Duration(r1.Utime.Nano() - r0.Utime.Nano()), time.Duration(r1.Stime.Nano() - r0.Stime.Nano())
	}
}
