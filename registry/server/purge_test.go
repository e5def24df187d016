package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// upload makes an upload directory as distribution leaves one, started at
// started ("" for no startedat file).
func upload(t *testing.T, root, repo, id, started string) string {
	t.Helper()
	dir := filepath.Join(root, "docker", "registry", "v2", "repositories", repo, "_uploads", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if started != "" {
		if err := os.WriteFile(filepath.Join(dir, "startedat"), []byte(started), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// Only uploads older than the age go, in nested repositories too; one
// without a readable start time stays, as does everything else.
func TestPurgeUploads(t *testing.T) {
	root := t.TempDir()
	old := time.Now().Add(-8 * 24 * time.Hour).UTC().Format(time.RFC3339)
	recent := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	gone := []string{
		upload(t, root, "a", "11111111-1111-1111-1111-111111111111", old),
		upload(t, root, "net/stations/b", "22222222-2222-2222-2222-222222222222", old),
	}
	kept := []string{
		upload(t, root, "a", "33333333-3333-3333-3333-333333333333", recent),
		upload(t, root, "a", "44444444-4444-4444-4444-444444444444", ""),
		upload(t, root, "a", "55555555-5555-5555-5555-555555555555", "not a time"),
	}
	layer := filepath.Join(root, "docker", "registry", "v2", "repositories", "a", "_layers", "sha256", "x", "link")
	if err := os.MkdirAll(filepath.Dir(layer), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(layer, []byte("sha256:x"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := purgeUploads(root, time.Now().Add(-uploadMaxAge))
	if err != nil || n != 2 {
		t.Fatalf("purged %d, %v; want 2", n, err)
	}
	for _, p := range gone {
		if exists(p) {
			t.Errorf("%s was kept", p)
		}
	}
	for _, p := range append(kept, layer) {
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}
	// A registry nothing was pushed to yet.
	if n, err := purgeUploads(t.TempDir(), time.Now()); n != 0 || err != nil {
		t.Fatalf("empty registry: %d, %v", n, err)
	}
}

// The server purges when it starts (distribution's purger, which would
// log through logrus's global logger, is off), and stop ends the loop.
func TestServerPurgesOnStart(t *testing.T) {
	root := t.TempDir()
	dir := upload(t, root, "a", "11111111-1111-1111-1111-111111111111", time.Now().Add(-8*24*time.Hour).UTC().Format(time.RFC3339))
	rec := &recorder{}
	_, stop, err := NewHandler(context.Background(), root, WithLogger(slog.New(rec)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for i := 0; exists(dir); i++ {
		if i == 100 {
			t.Fatal("the abandoned upload is still there")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	saw := false
	for _, m := range rec.msgs {
		// distribution's purger announces itself ("Starting upload
		// purge in ...") when it runs; ours says what it removed.
		if strings.Contains(m, "Starting upload purge") {
			t.Fatalf("distribution's upload purger is on: %q", m)
		}
		saw = saw || m == "removed abandoned uploads"
	}
	if !saw {
		t.Fatalf("no record of the purge in %q", rec.msgs)
	}
}
