package station

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/trainrun"
)

// What a station killed mid-stop leaves in its work directory goes at the
// next start; what a live station holds stays.
func TestRecoverRemovesAbandonedStops(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		t.Skip("needs root (runc, a results filesystem)")
	}
	work := t.TempDir()
	mk := func(name string, files map[string]string) string {
		dir := filepath.Join(work, name)
		for p, body := range files {
			os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
			if err := os.WriteFile(filepath.Join(dir, p), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	plaintext := map[string]string{"code/analysis.py": "decrypted code", "results/rows.csv": "patient rows"}
	// Killed: its lock file is there, nobody holds it.
	killed := mk("stop-killed", plaintext)
	os.WriteFile(filepath.Join(killed, stopLock), nil, 0o600)
	// Killed before it took its lock, a while ago.
	old := mk("stop-old", plaintext)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)
	// Live: held by a running stop (this process, another open file).
	live := mk("stop-live", plaintext)
	release, err := holdWork(live)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	// Just created by a live station that has not locked it yet.
	fresh := mk("stop-fresh", plaintext)
	// A killed stop whose results filesystem is still mounted.
	mounted := mk("stop-mounted", map[string]string{"code/analysis.py": "decrypted code"})
	os.WriteFile(filepath.Join(mounted, stopLock), nil, 0o600)
	os.Mkdir(filepath.Join(mounted, "results"), 0o755)
	ctx := context.Background()
	rfs, err := trainrun.MountResults(ctx, filepath.Join(mounted, "results"), trainrun.MinMaxResults)
	if err != nil {
		t.Fatalf("mounting a results filesystem: %v", err)
	}
	_ = rfs // left mounted, as a killed station leaves it
	os.WriteFile(filepath.Join(mounted, "results/rows.csv"), []byte("patient rows"), 0o600)
	// The runner's own leftovers: an abandoned bundle with decrypted code.
	bundles := t.TempDir()
	stale := filepath.Join(bundles, "trainyard-bundle-stale")
	os.MkdirAll(filepath.Join(stale, "rootfs/opt/pht_train"), 0o755)
	os.WriteFile(filepath.Join(stale, "rootfs/opt/pht_train/analysis.py"), []byte("decrypted code"), 0o600)
	os.WriteFile(filepath.Join(stale, "trainyard.lock"), nil, 0o600)
	r := trainrun.NewRunc(trainrun.WithStateDir(t.TempDir()), trainrun.WithBundleDir(bundles))
	if err := r.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}

	s := &Station{WorkDir: work, Runner: r}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{killed, old, mounted, stale} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s survived Recover", gone)
		}
	}
	for _, kept := range []string{live, fresh} {
		if b, err := os.ReadFile(filepath.Join(kept, "results/rows.csv")); err != nil || string(b) != "patient rows" {
			t.Errorf("%s was touched: %v", kept, err)
		}
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), mounted) {
		t.Error("the killed stop's results filesystem is still mounted")
	}
}
