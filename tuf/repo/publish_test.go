package repo_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/ocistore"
	"github.com/trainyard/trainyard/tuf/repo"
)

type guardEnv struct {
	t     *testing.T
	ctx   context.Context
	rc    *registry.Client
	store *ocistore.Store
	name  string
}

func newGuardEnv(t *testing.T) *guardEnv {
	host, stop := distRegistry(t, t.TempDir())
	t.Cleanup(stop)
	rc := registry.NewClient(registry.WithInsecure(true))
	store, err := ocistore.New(rc, host+"/guard/tuf")
	if err != nil {
		t.Fatal(err)
	}
	return &guardEnv{t: t, ctx: context.Background(), rc: rc, store: store, name: host + "/guard/tuf"}
}

// tags returns every tag of the repository with its manifest digest: the
// registry's bytes, to compare before and after a refused publish.
func (g *guardEnv) tags() map[string]string {
	g.t.Helper()
	repoName := g.store.Repository()
	list, err := remote.List(repoName, g.rc.RemoteOptions(g.ctx)...)
	if err != nil {
		g.t.Fatal(err)
	}
	out := map[string]string{}
	for _, tag := range list {
		d, err := remote.Head(repoName.Tag(tag), g.rc.RemoteOptions(g.ctx)...)
		if err != nil {
			g.t.Fatal(err)
		}
		out[tag] = d.Digest.String()
	}
	return out
}

func (g *guardEnv) unchanged(before map[string]string) {
	g.t.Helper()
	after := g.tags()
	if len(after) != len(before) {
		g.t.Fatalf("registry tags changed: %v -> %v", before, after)
	}
	for k, v := range before {
		if after[k] != v {
			g.t.Fatalf("tag %s changed by a refused publish", k)
		}
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// copyDir clones an admin state (a second admin machine with the same keys).
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	if out, err := exec.Command("cp", "-a", from+"/.", to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return to
}

// TestForeignRepositoryRefused: a second, unrelated state (another folder,
// a CI job) must not replace a live repository, neither at create-metadata
// nor at push-metadata, and the registry's bytes stay as they were.
func TestForeignRepositoryRefused(t *testing.T) {
	g := newGuardEnv(t)
	// an admin whose metadata was created before the live one was published
	early := newPublisher(t, g.store, t.TempDir())
	live := newPublisher(t, g.store, t.TempDir())
	mustOK(t, live.PushMetadata(g.ctx))
	before := g.tags()

	if err := early.PushMetadata(g.ctx); !errors.Is(err, tuf.ErrConflict) {
		t.Fatalf("push-metadata of a foreign state: %v", err)
	}
	g.unchanged(before)

	fresh := repo.New(g.store, t.TempDir(), repo.WithPasswords(pw))
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		_, _, err := fresh.CreateKey(role, false)
		mustOK(t, err)
	}
	if err := fresh.CreateMetadata(g.ctx, nil); !errors.Is(err, tuf.ErrConflict) {
		t.Fatalf("create-metadata against a live repository: %v", err)
	}
	g.unchanged(before)

	// --force knowingly replaces it
	forced := repo.New(g.store, t.TempDir(), repo.WithPasswords(pw), repo.WithForce(true))
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		_, _, err := forced.CreateKey(role, false)
		mustOK(t, err)
	}
	mustOK(t, forced.CreateMetadata(g.ctx, nil))
	mustOK(t, forced.PushMetadata(g.ctx))
}

// TestNewerVersionRefusedThenPull: admin A's state is behind the registry
// (admin B published): A is refused, pulls, and publishes on top of B's
// work without losing it.
func TestNewerVersionRefusedThenPull(t *testing.T) {
	g := newGuardEnv(t)
	dirA := t.TempDir()
	a := newPublisher(t, g.store, dirA)
	mustOK(t, a.PushMetadata(g.ctx))
	b := repo.New(g.store, copyDir(t, dirA), repo.WithPasswords(pw))
	mustOK(t, b.AddTarget(g.ctx, "from-b", repo.FromFile(writeFile(t, "b"))))
	mustOK(t, b.PushMetadata(g.ctx))
	before := g.tags()

	mustOK(t, a.AddTarget(g.ctx, "from-a", repo.FromFile(writeFile(t, "a"))))
	err := a.PushMetadata(g.ctx)
	if !errors.Is(err, tuf.ErrConflict) {
		t.Fatalf("stale admin published: %v", err)
	}
	g.unchanged(tagsWithoutKeeper(before, g.tags()))
	if err := a.RefreshTimestamp(g.ctx); !errors.Is(err, tuf.ErrConflict) {
		t.Fatalf("stale refresh-timestamp: %v", err)
	}

	mustOK(t, a.Pull(g.ctx, nil))
	mustOK(t, a.AddTarget(g.ctx, "from-a", repo.FromFile(writeFile(t, "a"))))
	mustOK(t, a.PushMetadata(g.ctx))
	names := clientTargets(t, g, dirA)
	if !slices.Equal(names, []string{"from-a", "from-b"}) {
		t.Fatalf("targets after pull and publish: %v", names)
	}
}

// tagsWithoutKeeper drops the keeper tag, which staging (not publishing)
// rewrites to protect a staged blob from GC.
func tagsWithoutKeeper(before, now map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range before {
		out[k] = v
	}
	out[ocistore.KeeperTag] = now[ocistore.KeeperTag]
	return out
}

func clientTargets(t *testing.T, g *guardEnv, masterDir string) []string {
	t.Helper()
	root, err := os.ReadFile(masterDir + "/metadata/root-history/1.root.json")
	mustOK(t, err)
	c := client.New(g.store, t.TempDir())
	_, err = c.Bootstrap(g.ctx, root)
	mustOK(t, err)
	names, err := c.TargetNames()
	mustOK(t, err)
	return names
}

// TestVersionedTagNeverOverwritten: a versioned file already in the
// registry with other bytes is never replaced.
func TestVersionedTagNeverOverwritten(t *testing.T) {
	g := newGuardEnv(t)
	p := newPublisher(t, g.store, t.TempDir())
	mustOK(t, p.PushMetadata(g.ctx))
	// someone else's 2.targets.json (the timestamp still says version 1)
	mustOK(t, g.store.PutMetadata(g.ctx, "2.targets.json", []byte(`{"not":"ours"}`)))
	before := g.tags()
	mustOK(t, p.AddTarget(g.ctx, "x", repo.FromFile(writeFile(t, "x"))))
	if err := p.PushMetadata(g.ctx); !errors.Is(err, tuf.ErrConflict) {
		t.Fatalf("versioned tag overwritten: %v", err)
	}
	g.unchanged(tagsWithoutKeeper(before, g.tags()))
}

// TestRetryAfterFailedPublish: a publish that died after writing some
// versioned files may be retried by the same state (its own leftovers are
// recognised), even though the retry signs other bytes.
func TestRetryAfterFailedPublish(t *testing.T) {
	g := newGuardEnv(t)
	dir := t.TempDir()
	p := newPublisher(t, g.store, dir)
	mustOK(t, p.PushMetadata(g.ctx))
	mustOK(t, p.AddTarget(g.ctx, "x", repo.FromFile(writeFile(t, "x"))))
	ctx, cancel := context.WithCancel(g.ctx)
	slow := repo.New(g.store, dir, repo.WithPasswords(pw), repo.WithSettle(time.Second))
	// Cancelled while it settles: once the new targets version is written
	// (polled, not guessed: a slow machine takes longer to get there).
	go func() {
		for ctx.Err() == nil {
			if _, err := g.store.TagDigest(g.ctx, "2.targets.json"); err == nil {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if err := slow.PushMetadata(ctx); err == nil {
		t.Fatal("cancelled publish succeeded")
	}
	if _, err := g.store.TagDigest(g.ctx, "2.targets.json"); err != nil {
		t.Fatalf("leftover not written: %v", err)
	}
	later := repo.New(g.store, dir, repo.WithPasswords(pw), repo.WithClock(func() time.Time { return time.Now().Add(time.Minute) }))
	mustOK(t, later.PushMetadata(g.ctx))
	if names := clientTargets(t, g, dir); !slices.Equal(names, []string{"x"}) {
		t.Fatalf("targets %v", names)
	}
}

// TestConcurrentPublishers: two admins with the same state publish
// different changes at the same moment: one wins, the other is refused,
// the registry holds the winner's complete repository, and the loser's
// change is published after a pull.
func TestConcurrentPublishers(t *testing.T) {
	for round := 0; round < 3; round++ {
		g := newGuardEnv(t)
		dirA := t.TempDir()
		a := newPublisher(t, g.store, dirA)
		mustOK(t, a.PushMetadata(g.ctx))
		dirB := copyDir(t, dirA)
		b := repo.New(g.store, dirB, repo.WithPasswords(pw))
		mustOK(t, a.AddTarget(g.ctx, "from-a", repo.FromFile(writeFile(t, "a"))))
		mustOK(t, b.AddTarget(g.ctx, "from-b", repo.FromFile(writeFile(t, "b"))))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i, p := range []*repo.Publisher{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = p.PushMetadata(g.ctx)
			}()
		}
		close(start)
		wg.Wait()
		var winner, loser *repo.Publisher
		var winDir, want string
		switch {
		case errs[0] == nil && errors.Is(errs[1], tuf.ErrConflict):
			winner, loser, winDir, want = a, b, dirA, "from-a"
		case errs[1] == nil && errors.Is(errs[0], tuf.ErrConflict):
			winner, loser, winDir, want = b, a, dirB, "from-b"
		default:
			t.Fatalf("round %d: want one winner and one refusal, got %v / %v", round, errs[0], errs[1])
		}
		_ = winner
		if names := clientTargets(t, g, winDir); !slices.Equal(names, []string{want}) {
			t.Fatalf("round %d: registry holds %v, winner published %s", round, names, want)
		}
		mustOK(t, loser.Pull(g.ctx, nil))
		other := "from-b"
		if want == "from-b" {
			other = "from-a"
		}
		mustOK(t, loser.AddTarget(g.ctx, other, repo.FromFile(writeFile(t, other))))
		mustOK(t, loser.PushMetadata(g.ctx))
		if names := clientTargets(t, g, winDir); !slices.Equal(names, []string{"from-a", "from-b"}) {
			t.Fatalf("round %d: after the loser's retry: %v", round, names)
		}
	}
}

// TestRefreshKeepsRepositoryAlive: with a short timestamp lifetime and a
// fake clock, a client fails loudly (ErrExpired) once the timestamp
// expires without a refresh, and keeps working when Refresh runs.
func TestRefreshKeepsRepositoryAlive(t *testing.T) {
	g := newGuardEnv(t)
	now := time.Now().UTC()
	clock := func() time.Time { return now }
	dir := t.TempDir()
	p := repo.New(g.store, dir, repo.WithPasswords(pw), repo.WithClock(clock), repo.WithLifetime(repo.Timestamp, time.Hour))
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		_, _, err := p.CreateKey(role, false)
		mustOK(t, err)
	}
	mustOK(t, p.CreateMetadata(g.ctx, nil))
	mustOK(t, p.PushMetadata(g.ctx))
	root, err := os.ReadFile(p.RootPath())
	mustOK(t, err)
	c := client.New(g.store, t.TempDir(), client.WithClock(clock))
	_, err = c.Bootstrap(g.ctx, root)
	mustOK(t, err)

	roles, err := p.Refresh(g.ctx)
	mustOK(t, err)
	if len(roles) != 0 {
		t.Fatalf("fresh repository refreshed %v", roles)
	}
	// 40 minutes: the timestamp has less than half its hour left
	now = now.Add(40 * time.Minute)
	roles, err = p.Refresh(g.ctx)
	mustOK(t, err)
	if !slices.Equal(roles, []string{repo.Timestamp}) {
		t.Fatalf("refreshed %v, want timestamp", roles)
	}
	// far past the first timestamp's expiry: still usable
	now = now.Add(50 * time.Minute)
	_, err = c.PullMetadata(g.ctx)
	mustOK(t, err)
	// 8 days on without refresh: the snapshot (7 days) is due, and the
	// client refuses the expired metadata loudly
	now = now.Add(8 * 24 * time.Hour)
	if _, err := c.PullMetadata(g.ctx); !errors.Is(err, tuf.ErrExpired) {
		t.Fatalf("expired repository: %v", err)
	}
	// the targets key stays offline: snapshot and timestamp keys suffice
	tkeys, err := filepath.Glob(filepath.Join(dir, "keys", "targets", "*.key"))
	mustOK(t, err)
	offline := t.TempDir()
	for _, k := range tkeys {
		mustOK(t, os.Rename(k, filepath.Join(offline, filepath.Base(k))))
	}
	roles, err = p.Refresh(g.ctx)
	mustOK(t, err)
	if !slices.Equal(roles, []string{repo.Snapshot, repo.Timestamp}) {
		t.Fatalf("refreshed %v, want snapshot and timestamp", roles)
	}
	for _, k := range tkeys {
		mustOK(t, os.Rename(filepath.Join(offline, filepath.Base(k)), k))
	}
	_, err = c.PullMetadata(g.ctx)
	mustOK(t, err)
	next, err := p.NextDue()
	mustOK(t, err)
	if !next.After(now) {
		t.Fatalf("next due %v is not after now %v", next, now)
	}
	// half a year on: the root is due too; a new root version (same keys)
	// is published and the client follows it
	now = now.Add(200 * 24 * time.Hour)
	roles, err = p.Refresh(g.ctx)
	mustOK(t, err)
	if !slices.Contains(roles, repo.Root) {
		t.Fatalf("refreshed %v, want root", roles)
	}
	_, err = c.PullMetadata(g.ctx)
	mustOK(t, err)
	exps, err := c.Expirations()
	mustOK(t, err)
	for _, e := range exps {
		if !e.Expires.After(now.Add(12*time.Hour)) && e.Role != repo.Timestamp {
			t.Fatalf("%s expires %v, soon after %v", e.Role, e.Expires, now)
		}
	}
}
