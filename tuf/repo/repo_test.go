package repo_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/registry/server"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/ocistore"
	"github.com/trainyard/trainyard/tuf/repo"
)

func init() { kdftest.Fast() }

// distRegistry serves dataDir with the embedded distribution registry.
func distRegistry(t *testing.T, dataDir string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h, stop, err := server.NewHandler(ctx, dataDir)
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

// freshPublisher is a publisher with keys and metadata for repository
// path of a registry of its own, stopped when the test ends.
func freshPublisher(t *testing.T, path string) (*ocistore.Store, *repo.Publisher) {
	t.Helper()
	host, stop := distRegistry(t, t.TempDir())
	t.Cleanup(stop)
	store, err := ocistore.New(registry.NewClient(registry.WithInsecure(true)), host+"/"+path)
	if err != nil {
		t.Fatal(err)
	}
	return store, newPublisher(t, store, t.TempDir())
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
	must(p.AddTarget(ctx, "a", repo.FromFile(writeFile(t, "shared content"))))
	must(p.AddTarget(ctx, "b", repo.FromTarget("a")))
	must(p.AddTarget(ctx, "c", repo.FromFile(writeFile(t, "only c"))))
	must(p.PushMetadata(ctx))
	must(p.AddTarget(ctx, "staged", repo.FromFile(writeFile(t, "staged, not yet published"))))
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
	host, stop := distRegistry(t, t.TempDir())
	defer stop()
	store, err := ocistore.New(registry.NewClient(registry.WithInsecure(true)), host+"/none")
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
	_, p := freshPublisher(t, "add/tuf")
	if err := p.AddTarget(ctx, "doc.json", repo.FromBytes([]byte(`{"a":1}`))); err != nil {
		t.Fatal(err)
	}
	tf, _ := metadata.TargetFile().FromBytes("x", []byte(`{"a":1}`), "sha256")
	lie := *tf
	lie.Length++
	if err := p.AddTarget(ctx, "lie", repo.FromBlob(lie)); !errors.Is(err, tuf.ErrTampered) {
		t.Fatalf("wrong length accepted: %v", err)
	}
	missing, _ := metadata.TargetFile().FromBytes("x", []byte("not pushed"), "sha256")
	if err := p.AddTarget(ctx, "m", repo.FromBlob(*missing)); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("missing blob accepted: %v", err)
	}
	if err := p.AddTarget(ctx, "alias.json", repo.FromBlob(*tf)); err != nil {
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

// TestGarbageCollectionMultiPart: parts of multi-part targets survive
// distribution's mark-and-sweep; a part another target still uses is never
// dropped when its first target goes; a deleted multi-part target's own
// parts are collected.
func TestGarbageCollectionMultiPart(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	host, stop := distRegistry(t, data)
	rc := registry.NewClient(registry.WithInsecure(true))
	store, err := ocistore.New(rc, host+"/gc/multi")
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
	must(p.AddTarget(ctx, "a", repo.FromFile(writeFile(t, "shared part"))))
	// m reuses a's blob as its middle part; gone's parts: one shared with m, one its own
	must(p.AddTarget(ctx, "m", repo.Concat(repo.FromFile(writeFile(t, "head ")), repo.FromTarget("a"), repo.FromFile(writeFile(t, " tail")))))
	must(p.AddTarget(ctx, "gone", repo.Concat(repo.FromFile(writeFile(t, "only gone")), repo.FromFile(writeFile(t, " tail")))))
	must(p.PushMetadata(ctx))
	must(p.AddTarget(ctx, "staged", repo.Concat(repo.FromFile(writeFile(t, "staged one")), repo.FromFile(writeFile(t, "staged two")))))
	must(p.DelTarget(ctx, "a", "gone"))
	must(p.PushMetadata(ctx))
	stop()

	d, err := filesystem.FromParameters(map[string]any{"rootdirectory": data})
	must(err)
	ns, err := storage.NewRegistry(ctx, d, storage.EnableDelete)
	must(err)
	must(storage.MarkAndSweep(ctx, d, ns, storage.GCOpts{RemoveUntagged: true, Quiet: true}))

	host2, stop2 := distRegistry(t, data)
	defer stop2()
	store2, err := ocistore.New(rc, host2+"/gc/multi")
	must(err)
	sum := func(s string) string {
		tf, err := metadata.TargetFile().FromBytes("x", []byte(s), "sha256")
		must(err)
		return tf.Hashes["sha256"].String()
	}
	for _, s := range []string{"head ", "shared part", " tail", "staged one", "staged two"} {
		if _, err := store2.BlobSize(ctx, sum(s)); err != nil {
			t.Fatalf("part %q still in use was collected: %v", s, err)
		}
	}
	if _, err := store2.BlobSize(ctx, sum("only gone")); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("part of deleted target gone survived GC: %v", err)
	}
	c := client.New(store2, t.TempDir())
	root, err := os.ReadFile(p.RootPath())
	must(err)
	changed, err := c.Bootstrap(ctx, root)
	must(err)
	if strings.Join(changed, ",") != "m,staged" {
		t.Fatalf("targets after GC: %v", changed)
	}
	got, err := c.Fetch(ctx, "m", 100)
	must(err)
	if string(got) != "head shared part tail" {
		t.Fatalf("m = %q", got)
	}
	got, err = c.Fetch(ctx, "staged", 100)
	must(err)
	if string(got) != "staged onestaged two" {
		t.Fatalf("staged = %q", got)
	}
}

func TestAddTargetsMultiPart(t *testing.T) {
	ctx := context.Background()
	store, p := freshPublisher(t, "add/multi")
	for _, s := range []string{"one", "two"} {
		if _, err := store.PushTargetBytes(ctx, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	part := func(s string) tuf.Part {
		tf, _ := metadata.TargetFile().FromBytes("x", []byte(s), "sha256")
		return tuf.Part{SHA256: tf.Hashes["sha256"].String(), Length: int64(len(s))}
	}
	whole, _ := metadata.TargetFile().FromBytes("x", []byte("onetwo"), "sha256")
	if err := tuf.SetParts(whole, []tuf.Part{part("one"), part("two")}); err != nil {
		t.Fatal(err)
	}
	missing := *whole
	if err := tuf.SetParts(&missing, []tuf.Part{part("one"), part("owt")}); err != nil {
		t.Fatal(err)
	}
	if err := p.AddTarget(ctx, "m", repo.FromBlob(missing)); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("missing part accepted: %v", err)
	}
	short := *whole
	short.Length--
	if err := p.AddTarget(ctx, "m", repo.FromBlob(short)); !errors.Is(err, tuf.ErrTampered) {
		t.Fatalf("parts not adding up to the length accepted: %v", err)
	}
	if err := p.AddTarget(ctx, "m", repo.FromBlob(*whole)); err != nil {
		t.Fatal(err)
	}
	if err := p.PushMetadata(ctx); err != nil {
		t.Fatal(err)
	}
	c := client.New(store, t.TempDir())
	root, _ := os.ReadFile(p.RootPath())
	if _, err := c.Bootstrap(ctx, root); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(ctx, "m", 100)
	if err != nil || string(got) != "onetwo" {
		t.Fatalf("m = %q, %v", got, err)
	}
}

// Every kind of Source, alone and as a part, signs what a client then
// reads back; a batch stages all its targets; an empty source is refused.
func TestAddTargetSources(t *testing.T) {
	ctx := context.Background()
	store, p := freshPublisher(t, "add/sources")
	must := func(err error) { t.Helper(); mustOK(t, err) }
	if _, err := store.PushTargetBytes(ctx, []byte("blob")); err != nil {
		t.Fatal(err)
	}
	blob, _ := metadata.TargetFile().FromBytes("x", []byte("blob"), "sha256")
	must(p.AddTargets(ctx, map[string]repo.Source{
		"file":  repo.FromFile(writeFile(t, "file")),
		"bytes": repo.FromBytes([]byte("bytes")),
		"blob":  repo.FromBlob(*blob),
	}))
	must(p.AddTarget(ctx, "copy", repo.FromTarget("bytes")))
	must(p.AddTarget(ctx, "one", repo.Concat(repo.FromBytes([]byte("alone")))))
	must(p.AddTarget(ctx, "all", repo.Concat(repo.FromBytes([]byte("a-")),
		repo.Concat(repo.FromFile(writeFile(t, "b-")), repo.FromBlob(*blob)), repo.FromTarget("file"))))
	for _, bad := range []repo.Source{{}, repo.Concat(), repo.Concat(repo.FromBytes([]byte("x")), repo.Source{})} {
		if err := p.AddTarget(ctx, "bad", bad); err == nil || !strings.Contains(err.Error(), "source") {
			t.Fatalf("empty source %+v: %v", bad, err)
		}
	}
	must(p.PushMetadata(ctx))
	want := map[string]string{"file": "file", "bytes": "bytes", "blob": "blob", "copy": "bytes",
		"one": "alone", "all": "a-b-blobfile"}
	for name, w := range want {
		got, err := p.ReadTarget(ctx, name, 100)
		must(err)
		if string(got) != w {
			t.Fatalf("%s = %q, want %q", name, got, w)
		}
	}
	names, err := p.ListTargets()
	must(err)
	if len(names) != len(want) {
		t.Fatalf("targets %v", names)
	}
}

// TestUnlock: Unlock fails on a wrong password before anything is staged,
// and after it the keys sign without asking again.
func TestUnlock(t *testing.T) {
	ctx := context.Background()
	store, p := freshPublisher(t, "unlock/tuf")
	dir := t.TempDir()
	// A second publisher over the same state (copied), asked for passwords
	// through a counter; first with a wrong one.
	if out, err := exec.Command("cp", "-a", p.Dir()+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	asked, password := 0, "wrong"
	q := repo.New(store, dir, repo.WithPasswords(func(string) ([]byte, error) { asked++; return []byte(password), nil }))
	if err := q.Unlock(repo.Targets, repo.Snapshot, repo.Timestamp); err == nil {
		t.Fatal("Unlock with a wrong password succeeded")
	}
	password = "pw"
	q = repo.New(store, dir, repo.WithPasswords(func(string) ([]byte, error) { asked++; return []byte(password), nil }))
	asked = 0
	if err := q.Unlock(repo.Targets, repo.Snapshot, repo.Timestamp); err != nil {
		t.Fatal(err)
	}
	unlocked := asked
	if err := q.AddTarget(ctx, "a", repo.FromBytes([]byte("a"))); err != nil {
		t.Fatal(err)
	}
	if err := q.PushMetadata(ctx); err != nil {
		t.Fatal(err)
	}
	if unlocked != 3 || asked != unlocked {
		t.Fatalf("asked %d times to unlock and %d in all; want 3 and no more after Unlock", unlocked, asked)
	}
}
