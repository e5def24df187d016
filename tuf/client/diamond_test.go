package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/ocistore"
)

// diamond builds a repository where role R is delegated by both A (paths
// "a-*", R's key kR) and B (paths "b-*", another key kX), and R is signed
// with kR only: R may sign a-* targets, never b-* ones. R lists both.
// It returns the metadata files (consistent names) and the target bodies.
func diamond(t *testing.T, expires time.Time) (map[string][]byte, map[string]string) {
	t.Helper()
	gen := func() *keys.PrivateKey {
		k, err := keys.Generate("")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	top, kA, kB, kR, kX := gen(), gen(), gen(), gen(), gen()
	files := map[string][]byte{}
	bodies := map[string]string{"a-1": "a target R may sign", "b-1": "a target R may not sign"}
	tf := func(name string) *metadata.TargetFiles {
		sum := sha256.Sum256([]byte(bodies[name]))
		return &metadata.TargetFiles{Length: int64(len(bodies[name])), Hashes: metadata.Hashes{"sha256": sum[:]}, Path: name}
	}
	delegate := func(md *metadata.Metadata[metadata.TargetsType], role string, k *keys.PrivateKey, paths ...string) {
		if md.Signed.Delegations == nil {
			md.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
		}
		md.Signed.Delegations.Roles = append(md.Signed.Delegations.Roles, metadata.DelegatedRole{Name: role, Threshold: 1, Paths: paths, KeyIDs: []string{}})
		if err := md.Signed.AddKey(k.Public(), role); err != nil {
			t.Fatal(err)
		}
	}
	root := metadata.Root(expires)
	root.Signed.ConsistentSnapshot = true
	for _, r := range []string{"root", "targets", "snapshot", "timestamp"} {
		if err := root.Signed.AddKey(top.Public(), r); err != nil {
			t.Fatal(err)
		}
	}
	files["1.root.json"] = sign(t, root, top)
	tg := metadata.Targets(expires)
	delegate(tg, "A", kA, "*")
	delegate(tg, "B", kB, "*")
	files["1.targets.json"] = sign(t, tg, top)
	a := metadata.Targets(expires)
	delegate(a, "R", kR, "a-*")
	files["1.A.json"] = sign(t, a, kA)
	b := metadata.Targets(expires)
	delegate(b, "R", kX, "b-*")
	files["1.B.json"] = sign(t, b, kB)
	r := metadata.Targets(expires)
	r.Signed.Targets["a-1"], r.Signed.Targets["b-1"] = tf("a-1"), tf("b-1")
	files["1.R.json"] = sign(t, r, kR)
	sn := metadata.Snapshot(expires)
	for _, role := range []string{"targets", "A", "B", "R"} {
		sn.Signed.Meta[role+".json"] = metadata.MetaFile(1)
	}
	files["1.snapshot.json"] = sign(t, sn, top)
	ts := metadata.Timestamp(expires)
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(1)
	files["timestamp.json"] = sign(t, ts, top)
	return files, bodies
}

// TestDelegationDiamondHTTP: through the conformance client, b-1 is
// refused whether it is looked up alone or after a-1 (which loads R
// through A first: go-tuf's updater would then accept R through B).
func TestDelegationDiamondHTTP(t *testing.T) {
	files, bodies := diamond(t, time.Now().Add(time.Hour))
	h := &httpRepo{files: map[string][]byte{}}
	for name, b := range files {
		h.files["/metadata/"+name] = b
	}
	for name, body := range bodies {
		sum := sha256.Sum256([]byte(body))
		h.files["/targets/"+hex.EncodeToString(sum[:])+"."+name] = []byte(body)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	fresh := func() client.HTTPConfig {
		dir := t.TempDir()
		cfg := client.HTTPConfig{MetadataDir: filepath.Join(dir, "meta"), MetadataURL: srv.URL + "/metadata",
			TargetDir: filepath.Join(dir, "targets"), TargetBaseURL: srv.URL + "/targets"}
		if err := client.HTTPInit(cfg.MetadataDir, files["1.root.json"]); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := fresh()
	if err := client.HTTPDownload(cfg, "a-1"); err != nil {
		t.Fatalf("a-1 through A: %v", err)
	}
	for name, names := range map[string][]string{"alone": {"b-1"}, "after a-1": {"a-1", "b-1"}} {
		cfg := fresh()
		err := client.HTTPDownload(cfg, names...)
		if !errors.Is(err, tuf.ErrSignature) || !strings.Contains(err.Error(), "b-1") {
			t.Fatalf("%s: b-1 through B: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(cfg.TargetDir, "b-1")); err == nil {
			t.Fatalf("%s: b-1 written", name)
		}
	}
}

// TestDelegationDiamondOCI: the same through the OCI client, as
// `tuf pull-target REPO a-1 b-1` does.
func TestDelegationDiamondOCI(t *testing.T) {
	ctx := context.Background()
	srv := testutil.Registry(t)
	defer srv.Close()
	store, err := ocistore.New(registry.NewClient(registry.WithInsecure(true)), strings.TrimPrefix(srv.URL, "http://")+"/tuf/diamond")
	if err != nil {
		t.Fatal(err)
	}
	files, bodies := diamond(t, time.Now().Add(time.Hour))
	for _, name := range []string{"1.root.json", "1.A.json", "1.B.json", "1.R.json", "1.targets.json", "1.snapshot.json"} {
		var extra []string
		if name == "1.root.json" {
			extra = []string{ocistore.RootTag}
		}
		if err := store.PutMetadata(ctx, name, files[name], extra...); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.PutMetadata(ctx, "1.timestamp.json", files["timestamp.json"], ocistore.TimestampTag); err != nil {
		t.Fatal(err)
	}
	for _, body := range bodies {
		if _, err := store.PushTargetBytes(ctx, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	c := client.New(store, t.TempDir())
	if _, err := c.Bootstrap(ctx, files["1.root.json"]); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := c.WriteTo(ctx, &out, nil, "a-1"); err != nil || out.String() != bodies["a-1"] {
		t.Fatalf("a-1: %q %v", out.String(), err)
	}
	out.Reset()
	err = c.WriteTo(ctx, &out, nil, "a-1", "b-1")
	if !errors.Is(err, tuf.ErrSignature) || out.Len() != 0 {
		t.Fatalf("a-1 b-1: wrote %q, %v", out.String(), err)
	}
	if _, err := c.TargetInfo(ctx, "b-1"); !errors.Is(err, tuf.ErrSignature) {
		t.Fatalf("b-1 alone: %v", err)
	}
	// the listing of the trusted copy does not offer b-1 either
	if _, err := c.PullMetadata(ctx); err != nil {
		t.Fatal(err)
	}
	names, err := c.TargetNames()
	if err != nil || strings.Join(names, ",") != "a-1" {
		t.Fatalf("listed %v, %v", names, err)
	}
}

// TestDelegationWalkOrder: the walk visits roles as TUF's pre-order
// depth-first search does and fetches each role once per lookup (what the
// conformance suite counts): A, then R through A, then B, and not R again
// through B.
func TestDelegationWalkOrder(t *testing.T) {
	files, _ := diamond(t, time.Now().Add(time.Hour))
	h := &httpRepo{files: map[string][]byte{}}
	for name, b := range files {
		h.files["/metadata/"+name] = b
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	cfg := client.HTTPConfig{MetadataDir: filepath.Join(dir, "meta"), MetadataURL: srv.URL + "/metadata",
		TargetDir: filepath.Join(dir, "targets"), TargetBaseURL: srv.URL + "/targets"}
	if err := client.HTTPInit(cfg.MetadataDir, files["1.root.json"]); err != nil {
		t.Fatal(err)
	}
	if err := client.HTTPRefresh(cfg); err != nil {
		t.Fatal(err)
	}
	h.requests = nil
	if err := client.HTTPDownload(cfg, "a-missing"); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("missing target: %v", err)
	}
	var roles []string
	for _, r := range h.requests {
		if strings.HasPrefix(r, "/metadata/1.") && r != "/metadata/1.root.json" {
			roles = append(roles, strings.TrimSuffix(strings.TrimPrefix(r, "/metadata/1."), ".json"))
		}
	}
	if strings.Join(roles, ",") != "A,R,B" {
		t.Fatalf("visited %v (requests %v)", roles, h.requests)
	}
}
