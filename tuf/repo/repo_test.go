package repo_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/ocistore"
	"github.com/trainyard/trainyard/tuf/repo"
)

func init() { keys.ScryptN = 1 << 10 }

// distRegistry serves dataDir with the embedded distribution registry.
func distRegistry(t *testing.T, dataDir string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h, stop, err := registry.NewHandler(ctx, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	return strings.TrimPrefix(srv.URL, "http://"), func() { srv.Close(); stop(); cancel() }
}

func pw(role string) ([]byte, error) { return []byte("pw"), nil }

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newPublisher(t *testing.T, store *ocistore.Store, dir string) *repo.Publisher {
	t.Helper()
	p := repo.New(store, dir, repo.WithPasswords(pw))
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		if _, _, err := p.CreateKey(role, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.CreateMetadata(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGarbageCollection runs distribution's real mark-and-sweep (with
// untagged manifests removed) and checks that published and staged
// targets survive, that a blob shared by a deleted target and a live one
// survives, and that only the blob no target uses is collected.
func TestGarbageCollection(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	host, stop := distRegistry(t, data)
	rc := registry.NewClient(registry.WithInsecure(true))
	store, err := ocistore.New(rc, host+"/gc/tuf")
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, store, t.TempDir())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.PushTarget(ctx, "a", writeFile(t, "shared content"), ""))
	must(p.PushTarget(ctx, "b", "@a", ""))
	must(p.PushTarget(ctx, "c", writeFile(t, "only c"), ""))
	must(p.PushMetadata(ctx))
	must(p.PushTarget(ctx, "staged", writeFile(t, "staged, not yet published"), ""))
	must(p.DelTarget(ctx, "a"))
	must(p.DelTarget(ctx, "c"))
	if err := p.DelTarget(ctx, "nope"); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("deleting a missing target: %v", err)
	}
	must(p.PushMetadata(ctx))
	stop()

	gc := func() {
		d, err := filesystem.FromParameters(map[string]any{"rootdirectory": data})
		must(err)
		ns, err := storage.NewRegistry(ctx, d, storage.EnableDelete)
		must(err)
		must(storage.MarkAndSweep(ctx, d, ns, storage.GCOpts{RemoveUntagged: true, Quiet: true}))
	}
	gc()
	host2, stop2 := distRegistry(t, data)
	defer stop2()
	store2, err := ocistore.New(rc, host2+"/gc/tuf")
	must(err)
	sum := func(s string) string {
		tf, err := metadata.TargetFile().FromBytes("x", []byte(s), "sha256")
		must(err)
		return tf.Hashes["sha256"].String()
	}
	if _, err := store2.BlobSize(ctx, sum("shared content")); err != nil {
		t.Fatalf("blob still used by b was collected: %v", err)
	}
	if _, err := store2.BlobSize(ctx, sum("staged, not yet published")); err != nil {
		t.Fatalf("staged blob was collected: %v", err)
	}
	if _, err := store2.BlobSize(ctx, sum("only c")); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("blob of deleted target c survived GC: %v", err)
	}
	// a client still gets everything published after GC
	c := client.New(store2, t.TempDir())
	root, err := os.ReadFile(p.RootPath())
	must(err)
	changed, err := c.Bootstrap(ctx, root)
	must(err)
	if strings.Join(changed, ",") != "b,staged" {
		t.Fatalf("targets after GC: %v", changed)
	}
	got, err := c.Fetch(ctx, "b", 100)
	must(err)
	if string(got) != "shared content" {
		t.Fatalf("b = %q", got)
	}
}

func TestPublisherRefusals(t *testing.T) {
	ctx := context.Background()
	store, err := ocistore.New(registry.NewClient(registry.WithInsecure(true)), "127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := repo.New(store, dir, repo.WithPasswords(pw))
	if err := p.PushMetadata(ctx); !errors.Is(err, repo.ErrNoMetadata) {
		t.Fatalf("push before create: %v", err)
	}
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		if _, _, err := p.CreateKey(role, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.CreateMetadata(ctx, repo.Thresholds{repo.Root: 2}); !errors.Is(err, repo.ErrThreshold) {
		t.Fatalf("threshold 2 with one key: %v", err)
	}
	if err := p.CreateMetadata(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateMetadata(ctx, nil); err == nil {
		t.Fatal("metadata created twice")
	}
	wrong := repo.New(store, dir, repo.WithPasswords(func(string) ([]byte, error) { return []byte("bad"), nil }))
	if err := wrong.ResetKeys(ctx, nil); !errors.Is(err, keys.ErrPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	for _, bad := range []string{"", "/abs", "a/../b", "..", "../x", "a//b", "a\\b", "./a", "a/"} {
		if err := repo.ValidTargetName(bad); !errors.Is(err, tuf.ErrReserved) {
			t.Fatalf("name %q accepted", bad)
		}
	}
	for _, good := range []string{"a", "dir/file.tar.gz", "x.json"} {
		if err := repo.ValidTargetName(good); err != nil {
			t.Fatalf("name %q refused: %v", good, err)
		}
	}
	if err := p.AddDelegation(ctx, "targets", []string{"*"}, 1, false); err == nil {
		t.Fatal("top-level role accepted as delegation")
	}
	if err := p.AddDelegation(ctx, "nokeys", []string{"*"}, 1, false); err == nil {
		t.Fatal("delegation without keys accepted")
	}
}

func TestAddTargetsChecksBlob(t *testing.T) {
	ctx := context.Background()
	host, stop := distRegistry(t, t.TempDir())
	defer stop()
	store, err := ocistore.New(registry.NewClient(registry.WithInsecure(true)), host+"/add/tuf")
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, store, t.TempDir())
	if err := p.PutTargetBytes(ctx, "doc.json", "", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	tf, _ := metadata.TargetFile().FromBytes("x", []byte(`{"a":1}`), "sha256")
	lie := *tf
	lie.Length++
	if err := p.AddTargets(ctx, "", map[string]*metadata.TargetFiles{"lie": &lie}); !errors.Is(err, tuf.ErrTampered) {
		t.Fatalf("wrong length accepted: %v", err)
	}
	missing, _ := metadata.TargetFile().FromBytes("x", []byte("not pushed"), "sha256")
	if err := p.AddTargets(ctx, "", map[string]*metadata.TargetFiles{"m": missing}); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("missing blob accepted: %v", err)
	}
	if err := p.AddTargets(ctx, "", map[string]*metadata.TargetFiles{"alias.json": tf}); err != nil {
		t.Fatal(err)
	}
	if err := p.PushMetadata(ctx); err != nil {
		t.Fatal(err)
	}
	names, err := p.ListTargets()
	if err != nil || strings.Join(names, ",") != "alias.json,doc.json" {
		t.Fatalf("targets %v %v", names, err)
	}
}
