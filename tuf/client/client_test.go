package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/ocistore"
	"github.com/trainyard/trainyard/tuf/repo"
)

func init() { kdftest.Fast() } // fast KDF in tests only

type env struct {
	t      *testing.T
	srv    *httptest.Server
	rc     *registry.Client
	repo   string
	store  *ocistore.Store
	pub    *repo.Publisher
	master string
	ctx    context.Context
}

func newEnv(t *testing.T, opts ...repo.Option) *env {
	t.Helper()
	srv := testutil.Registry(t)
	t.Cleanup(srv.Close)
	rc := registry.NewClient(registry.WithInsecure(true))
	name := strings.TrimPrefix(srv.URL, "http://") + "/tuf/demo"
	store, err := ocistore.New(rc, name)
	if err != nil {
		t.Fatal(err)
	}
	master := t.TempDir()
	opts = append([]repo.Option{repo.WithPasswords(func(role string) ([]byte, error) { return []byte("pw-" + role), nil })}, opts...)
	e := &env{t: t, srv: srv, rc: rc, repo: name, store: store, master: master, ctx: context.Background(),
		pub: repo.New(store, master, opts...)}
	return e
}

func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// setup creates keys and metadata and publishes one target.
func (e *env) setup(th repo.Thresholds, keysPerRole map[string]int) {
	e.t.Helper()
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		n := keysPerRole[role]
		if n == 0 {
			n = 1
		}
		for i := 0; i < n; i++ {
			_, _, err := e.pub.CreateKey(role, i > 0)
			e.must(err)
		}
	}
	e.must(e.pub.CreateMetadata(e.ctx, th))
	e.pushFile("hello.txt", "hello, world\n")
	e.must(e.pub.PushMetadata(e.ctx))
}

func (e *env) pushFile(name, content string) {
	e.t.Helper()
	p := filepath.Join(e.t.TempDir(), "f")
	e.must(os.WriteFile(p, []byte(content), 0o644))
	e.must(e.pub.AddTarget(e.ctx, name, repo.FromFile(p)))
}

func (e *env) rootJSON() []byte {
	data, err := os.ReadFile(e.pub.RootPath())
	e.must(err)
	return data
}

func (e *env) newClient(opts ...client.Option) *client.Client {
	return client.New(e.store, e.t.TempDir(), opts...)
}

func (e *env) bootstrapped(opts ...client.Option) *client.Client {
	e.t.Helper()
	c := e.newClient(opts...)
	if _, err := c.Bootstrap(e.ctx, e.rootJSON()); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// snapshotDir returns every file of the client's trusted metadata.
func snapshotDir(t *testing.T, c *client.Client, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, _ := os.ReadDir(filepath.Join(dir, "metadata"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "metadata", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestPublishPullUpdate(t *testing.T) {
	e := newEnv(t)
	e.setup(nil, nil)
	dir := t.TempDir()
	c := client.New(e.store, dir)
	changed, err := c.Bootstrap(e.ctx, e.rootJSON())
	e.must(err)
	if fmt.Sprint(changed) != "[hello.txt]" {
		t.Fatalf("changed = %v", changed)
	}
	out := filepath.Join(t.TempDir(), "out.txt")
	_, err = c.Download(e.ctx, "hello.txt", out)
	e.must(err)
	if b, _ := os.ReadFile(out); string(b) != "hello, world\n" {
		t.Fatalf("content %q", b)
	}
	// update: a new target, a changed one, reuse with @
	e.pushFile("hello.txt", "hello again\n")
	e.pushFile("b.bin", "bbbb")
	e.must(e.pub.AddTarget(e.ctx, "c.bin", repo.FromTarget("b.bin")))
	e.must(e.pub.PushMetadata(e.ctx))
	changed, err = c.PullMetadata(e.ctx)
	e.must(err)
	if fmt.Sprint(changed) != "[b.bin c.bin hello.txt]" {
		t.Fatalf("changed = %v", changed)
	}
	changed, err = c.PullMetadata(e.ctx)
	e.must(err)
	if len(changed) != 0 {
		t.Fatalf("nothing changed, got %v", changed)
	}
	var buf bytes.Buffer
	e.must(c.WriteTo(e.ctx, &buf, nil, "hello.txt", "c.bin"))
	if buf.String() != "hello again\nbbbb" {
		t.Fatalf("stdout %q", buf.String())
	}
	// delete a target sharing a blob: the other keeps its blob referenced
	e.must(e.pub.DelTarget(e.ctx, "b.bin"))
	e.must(e.pub.PushMetadata(e.ctx))
	names, err := c.PullMetadata(e.ctx)
	e.must(err)
	_ = names
	list, err := c.TargetNames()
	e.must(err)
	if fmt.Sprint(list) != "[c.bin hello.txt]" {
		t.Fatalf("targets = %v", list)
	}
	kept, err := e.store.Keeper(e.ctx)
	e.must(err)
	if len(kept) != 2 {
		t.Fatalf("keeper = %+v", kept)
	}
	data, err := c.Fetch(e.ctx, "c.bin", 100)
	e.must(err)
	if string(data) != "bbbb" {
		t.Fatalf("fetch %q", data)
	}
	if _, err := c.Fetch(e.ctx, "c.bin", 3); !errors.Is(err, tuf.ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	if _, err := c.Fetch(e.ctx, "nope", 3); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
	exps, err := c.Expirations()
	e.must(err)
	if len(exps) != 4 {
		t.Fatalf("expirations %v", exps)
	}
	good := filepath.Join(t.TempDir(), "c")
	e.must(os.WriteFile(good, []byte("bbbb"), 0o644))
	e.must(c.CheckTarget(e.ctx, "c.bin", good))
	e.must(os.WriteFile(good, []byte("bbbc"), 0o644))
	if err := c.CheckTarget(e.ctx, "c.bin", good); !errors.Is(err, tuf.ErrTampered) {
		t.Fatalf("want ErrTampered, got %v", err)
	}
}

func TestRefreshTimestamp(t *testing.T) {
	e := newEnv(t, repo.WithLifetime(repo.Timestamp, time.Hour))
	e.setup(nil, nil)
	c := e.bootstrapped()
	e.must(e.pub.RefreshTimestamp(e.ctx))
	_, err := c.PullMetadata(e.ctx)
	e.must(err)
	exps, err := c.Expirations()
	e.must(err)
	for _, x := range exps {
		if x.Role == repo.Timestamp && time.Until(x.Expires) > time.Hour {
			t.Fatalf("timestamp lifetime not applied: %v", x.Expires)
		}
	}
	// the new timestamp is version 2
	data, err := e.store.GetMetadata(e.ctx, "timestamp.json", 0)
	e.must(err)
	ts, err := metadata.Timestamp().FromBytes(data)
	e.must(err)
	if ts.Signed.Version != 2 {
		t.Fatalf("timestamp version %d", ts.Signed.Version)
	}
}

func TestRootRotationFollowed(t *testing.T) {
	e := newEnv(t)
	e.setup(nil, nil)
	dir := t.TempDir()
	c := client.New(e.store, dir)
	_, err := c.Bootstrap(e.ctx, e.rootJSON())
	e.must(err)
	oldRoot := e.rootJSON()
	// rotate every key: new root signed by old and new root keys
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		_, _, err := e.pub.CreateKey(role, false)
		e.must(err)
	}
	e.must(e.pub.ResetKeys(e.ctx, nil))
	e.pushFile("after-rotation", "v2")
	e.must(e.pub.PushMetadata(e.ctx))
	// existing client follows without being given the new key
	changed, err := c.PullMetadata(e.ctx)
	e.must(err)
	if fmt.Sprint(changed) != "[after-rotation]" {
		t.Fatalf("changed %v", changed)
	}
	root, err := metadata.Root().FromFile(filepath.Join(dir, "metadata", "root.json"))
	e.must(err)
	if root.Signed.Version != 2 {
		t.Fatalf("trusted root version %d", root.Signed.Version)
	}
	// a fresh client bootstrapped with the old root walks the chain too
	c2 := e.newClient()
	_, err = c2.Bootstrap(e.ctx, oldRoot)
	e.must(err)
	// a fresh client pinned to the new root public key
	pubs, _ := filepath.Glob(filepath.Join(e.master, "keys", "root", "*.pub"))
	newKey, err := os.ReadFile(pubs[0])
	e.must(err)
	_, err = e.newClient().Bootstrap(e.ctx, newKey)
	e.must(err)
	// and a second rotation
	_, _, err = e.pub.CreateKey(repo.Root, false)
	e.must(err)
	e.must(e.pub.ResetKeys(e.ctx, nil))
	e.must(e.pub.PushMetadata(e.ctx))
	_, err = c.PullMetadata(e.ctx)
	e.must(err)
	_, err = c2.PullMetadata(e.ctx)
	e.must(err)
	// the first root key, retired twice, still bootstraps through the chain
	first, err := os.ReadFile(filepath.Join(e.master, "keys", "retired", firstRootID(t, oldRoot)+".pub"))
	e.must(err)
	c3dir := t.TempDir()
	_, err = client.New(e.store, c3dir).Bootstrap(e.ctx, first)
	e.must(err)
	r3, err := metadata.Root().FromFile(filepath.Join(c3dir, "metadata", "root.json"))
	e.must(err)
	if r3.Signed.Version != 3 {
		t.Fatalf("bootstrapped from the first key to root v%d, want 3", r3.Signed.Version)
	}
}

func firstRootID(t *testing.T, root []byte) string {
	md, err := metadata.Root().FromBytes(root)
	if err != nil {
		t.Fatal(err)
	}
	return md.Signed.Roles[repo.Root].KeyIDs[0]
}

func TestDelegation(t *testing.T) {
	e := newEnv(t, repo.WithKeyType(keys.ECDSA))
	e.setup(nil, nil)
	_, _, err := e.pub.CreateKey("releases", false)
	e.must(err)
	e.must(e.pub.AddDelegation(e.ctx, "releases", []string{"releases/*"}, 1, true))
	p := filepath.Join(t.TempDir(), "r")
	e.must(os.WriteFile(p, []byte("release 1"), 0o644))
	if err := e.pub.AddTarget(e.ctx, "other/x", repo.FromFile(p), repo.InRole("releases")); err == nil {
		t.Fatal("target outside the delegated paths accepted")
	}
	e.must(e.pub.AddTarget(e.ctx, "releases/v1", repo.FromFile(p), repo.InRole("releases")))
	e.must(e.pub.PushMetadata(e.ctx))
	c := e.bootstrapped()
	names, err := c.TargetNames()
	e.must(err)
	if fmt.Sprint(names) != "[hello.txt releases/v1]" {
		t.Fatalf("names %v", names)
	}
	data, err := c.Fetch(e.ctx, "releases/v1", 100)
	e.must(err)
	if string(data) != "release 1" {
		t.Fatalf("got %q", data)
	}
	list, err := e.pub.ListTargets()
	e.must(err)
	if fmt.Sprint(list) != "[hello.txt releases/v1]" {
		t.Fatalf("master list %v", list)
	}
}

func TestRSAKeysAndThresholds(t *testing.T) {
	e := newEnv(t, repo.WithKeyType(keys.RSA))
	e.setup(repo.Thresholds{repo.Targets: 2}, map[string]int{repo.Targets: 2})
	c := e.bootstrapped()
	data, err := c.Fetch(e.ctx, "hello.txt", 100)
	e.must(err)
	if string(data) != "hello, world\n" {
		t.Fatalf("got %q", data)
	}
}

// TestThresholdRootRotation: root is 2-of-2; one root key is replaced.
// Root v2 must carry 2 signatures of v1's keys and 2 of its own.
func TestThresholdRootRotation(t *testing.T) {
	e := newEnv(t)
	e.setup(repo.Thresholds{repo.Root: 2}, map[string]int{repo.Root: 2})
	dir := t.TempDir()
	c := client.New(e.store, dir)
	_, err := c.Bootstrap(e.ctx, e.rootJSON())
	e.must(err)
	// retire one of the two root keys by hand, add a new one
	ids, _ := filepath.Glob(filepath.Join(e.master, "keys", "root", "*.key"))
	e.must(os.MkdirAll(filepath.Join(e.master, "keys", "retired"), 0o700))
	e.must(os.Rename(ids[0], filepath.Join(e.master, "keys", "retired", filepath.Base(ids[0]))))
	_, _, err = e.pub.CreateKey(repo.Root, true)
	e.must(err)
	e.must(e.pub.ResetKeys(e.ctx, nil))
	root2, err := metadata.Root().FromBytes(e.rootJSON())
	e.must(err)
	if len(root2.Signatures) != 3 || root2.Signed.Roles[repo.Root].Threshold != 2 {
		t.Fatalf("root v2: %d signatures, threshold %d", len(root2.Signatures), root2.Signed.Roles[repo.Root].Threshold)
	}
	e.must(e.pub.PushMetadata(e.ctx))
	_, err = c.PullMetadata(e.ctx)
	e.must(err)
	// a threshold the keys cannot meet is refused
	if err := e.pub.ResetKeys(e.ctx, repo.Thresholds{repo.Root: 3}); !errors.Is(err, repo.ErrThreshold) {
		t.Fatalf("threshold 3 with 2 keys: %v", err)
	}
}

// pushParts stages a target made of parts: file contents, or "@name".
func (e *env) pushParts(name string, srcs ...string) {
	e.t.Helper()
	var parts []repo.Source
	for i, s := range srcs {
		if other, ok := strings.CutPrefix(s, "@"); ok {
			parts = append(parts, repo.FromTarget(other))
			continue
		}
		p := filepath.Join(e.t.TempDir(), fmt.Sprintf("part%d", i))
		e.must(os.WriteFile(p, []byte(s), 0o644))
		parts = append(parts, repo.FromFile(p))
	}
	e.must(e.pub.AddTarget(e.ctx, name, repo.Concat(parts...)))
}

func sha256hex(s string) string {
	tf, _ := metadata.TargetFile().FromBytes("x", []byte(s), "sha256")
	return tf.Hashes["sha256"].String()
}

func TestMultiPartTarget(t *testing.T) {
	e := newEnv(t)
	e.setup(nil, nil)
	e.pushFile("b.bin", "BBBB")
	// three parts, the middle one reused from b.bin
	e.pushParts("multi", "first part\n", "@b.bin", "third")
	// a multi-part target reused whole, and as parts of a longer one
	e.must(e.pub.AddTarget(e.ctx, "copy", repo.FromTarget("multi")))
	e.pushParts("longer", "@multi", "!")
	e.must(e.pub.PushMetadata(e.ctx))
	c := e.bootstrapped()
	tfs, err := c.TargetInfo(e.ctx, "multi", "copy", "longer", "b.bin", "hello.txt")
	e.must(err)
	whole := "first part\nBBBBthird"
	if tfs[0].Length != int64(len(whole)) || tfs[0].Hashes["sha256"].String() != sha256hex(whole) {
		t.Fatalf("multi: length %d hash %s: not the concatenation", tfs[0].Length, tfs[0].Hashes["sha256"])
	}
	parts, err := tuf.Parts(tfs[0])
	e.must(err)
	want := []tuf.Part{{SHA256: sha256hex("first part\n"), Length: 11}, {SHA256: sha256hex("BBBB"), Length: 4}, {SHA256: sha256hex("third"), Length: 5}}
	if fmt.Sprint(parts) != fmt.Sprint(want) {
		t.Fatalf("parts %v, want %v", parts, want)
	}
	if tfs[1].Length != tfs[0].Length || !tfs[1].Hashes.Equal(tfs[0].Hashes) || string(*tfs[1].Custom) != string(*tfs[0].Custom) {
		t.Fatal("@multi did not copy the target")
	}
	if lp, err := tuf.Parts(tfs[2]); err != nil || len(lp) != 4 || tfs[2].Hashes["sha256"].String() != sha256hex(whole+"!") {
		t.Fatalf("longer: %v %v", lp, err)
	}
	// single-file targets stay as they were: no custom field, one part
	for _, tf := range tfs[3:] {
		if tf.Custom != nil {
			t.Fatalf("%s has a custom field: %s", tf.Path, *tf.Custom)
		}
	}
	// download to a file and to a writer, with blob info per part
	out := filepath.Join(t.TempDir(), "out")
	_, err = c.Download(e.ctx, "multi", out)
	e.must(err)
	if b, _ := os.ReadFile(out); string(b) != whole {
		t.Fatalf("download %q", b)
	}
	var buf bytes.Buffer
	e.must(c.WriteTo(e.ctx, &buf, nil, "multi", "b.bin"))
	if buf.String() != whole+"BBBB" {
		t.Fatalf("stdout %q", buf.String())
	}
	buf.Reset()
	e.must(c.WriteTo(e.ctx, &buf, &buf, "multi", "longer"))
	var wantInfo strings.Builder
	for _, ps := range [][]string{{"first part\n", "BBBB", "third"}, {"first part\n", "BBBB", "third", "!"}} {
		for _, p := range ps {
			fmt.Fprintf(&wantInfo, "sha256:%s %d\n%s", sha256hex(p), len(p), p)
		}
	}
	if buf.String() != wantInfo.String() {
		t.Fatalf("blob info output %q\nwant %q", buf.String(), wantInfo.String())
	}
	data, err := c.Fetch(e.ctx, "longer", 100)
	e.must(err)
	if string(data) != whole+"!" {
		t.Fatalf("fetch %q", data)
	}
	// check-target: one file per part, in order
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		e.must(os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	p1, p2, p3 := file("1", "first part\n"), file("2", "BBBB"), file("3", "third")
	e.must(c.CheckTarget(e.ctx, "multi", p1, p2, p3))
	e.must(c.CheckTarget(e.ctx, "b.bin", p2))
	for what, paths := range map[string][]string{
		"changed":   {p1, file("2x", "BBBC"), p3},
		"reordered": {p2, p1, p3},
		"moved":     {file("1x", "first part\nB"), file("2y", "BBB"), p3}, // same concatenation
		"too few":   {p1, p2},
		"too many":  {p1, p2, p3, p3},
		"one file":  {file("w", whole)},
	} {
		if err := c.CheckTarget(e.ctx, "multi", paths...); !errors.Is(err, tuf.ErrTampered) {
			t.Fatalf("%s files: want ErrTampered, got %v", what, err)
		}
	}
	if err := c.CheckTarget(e.ctx, "b.bin", p2, p2); !errors.Is(err, tuf.ErrTampered) {
		t.Fatalf("two files for a single-part target: %v", err)
	}
	// the keeper references each distinct part blob, never the whole
	kept, err := e.store.Keeper(e.ctx)
	e.must(err)
	got := map[string]bool{}
	for _, k := range kept {
		got[k.SHA256] = true
	}
	for _, s := range []string{"hello, world\n", "BBBB", "first part\n", "third", "!"} {
		if !got[sha256hex(s)] {
			t.Fatalf("keeper lacks the blob of %q: %+v", s, kept)
		}
	}
	if len(kept) != 5 {
		t.Fatalf("keeper = %+v", kept)
	}
	// a missing @target and a reserved name are refused
	if err := e.pub.AddTarget(e.ctx, "x", repo.Concat(repo.FromTarget("nope"), repo.FromFile(p1))); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("@nope: %v", err)
	}
	if err := e.pub.AddTarget(e.ctx, "../x", repo.Concat(repo.FromFile(p1), repo.FromFile(p2))); !errors.Is(err, tuf.ErrReserved) {
		t.Fatalf("reserved name: %v", err)
	}
}
