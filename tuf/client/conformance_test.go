package client_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/keys"
)

// httpRepo is a tiny static TUF repository served over HTTP, like the
// tuf-conformance simulator: metadata at /metadata/, targets at /targets/.
type httpRepo struct {
	mu       sync.Mutex
	files    map[string][]byte
	requests []string
	key      *keys.PrivateKey
	root     *metadata.Metadata[metadata.RootType]
}

func (h *httpRepo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = append(h.requests, r.URL.Path)
	b, ok := h.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(b)
}

func sign[T metadata.Roles](t *testing.T, md *metadata.Metadata[T], k *keys.PrivateKey) []byte {
	t.Helper()
	md.ClearSignatures()
	if err := keys.SignMetadata(md, k); err != nil {
		t.Fatal(err)
	}
	b, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newHTTPRepo(t *testing.T, expires time.Time) *httpRepo {
	k, err := keys.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	h := &httpRepo{files: map[string][]byte{}, key: k}
	root := metadata.Root(expires)
	root.Signed.ConsistentSnapshot = true
	for _, r := range []string{"root", "targets", "snapshot", "timestamp"} {
		if err := root.Signed.AddKey(k.Public(), r); err != nil {
			t.Fatal(err)
		}
	}
	h.root = root
	h.files["/metadata/1.root.json"] = sign(t, root, k)
	h.publish(t, 1, expires, map[string]string{"file.txt": "conformance target"})
	return h
}

func (h *httpRepo) publish(t *testing.T, v int64, expires time.Time, targets map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tg := metadata.Targets(expires)
	tg.Signed.Version = v
	for name, content := range targets {
		sum := sha256.Sum256([]byte(content))
		tg.Signed.Targets[name] = &metadata.TargetFiles{Length: int64(len(content)), Hashes: metadata.Hashes{"sha256": sum[:]}, Path: name}
		h.files["/targets/"+hex.EncodeToString(sum[:])+"."+name] = []byte(content)
	}
	h.files[fmt.Sprintf("/metadata/%d.targets.json", v)] = sign(t, tg, h.key)
	sn := metadata.Snapshot(expires)
	sn.Signed.Version = v
	sn.Signed.Meta["targets.json"] = metadata.MetaFile(v)
	h.files[fmt.Sprintf("/metadata/%d.snapshot.json", v)] = sign(t, sn, h.key)
	ts := metadata.Timestamp(expires)
	ts.Signed.Version = v
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(v)
	h.files["/metadata/timestamp.json"] = sign(t, ts, h.key)
}

func TestConformanceContract(t *testing.T) {
	now := time.Now()
	h := newHTTPRepo(t, now.Add(24*time.Hour))
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	cfg := client.HTTPConfig{MetadataDir: filepath.Join(dir, "meta"), MetadataURL: srv.URL + "/metadata",
		TargetDir: filepath.Join(dir, "targets"), TargetBaseURL: srv.URL + "/targets"}
	if err := client.HTTPInit(cfg.MetadataDir, h.files["/metadata/1.root.json"]); err != nil {
		t.Fatal(err)
	}
	if err := client.HTTPRefresh(cfg); err != nil {
		t.Fatal(err)
	}
	want := "[/metadata/2.root.json /metadata/timestamp.json /metadata/1.snapshot.json /metadata/1.targets.json]"
	if fmt.Sprint(h.requests) != want {
		t.Fatalf("requests %v, want %s", h.requests, want)
	}
	for _, f := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
		if _, err := os.Stat(filepath.Join(cfg.MetadataDir, f)); err != nil {
			t.Fatalf("unversioned %s not stored: %v", f, err)
		}
	}
	h.requests = nil
	if err := client.HTTPDownload(cfg, "file.txt"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(cfg.TargetDir, "file.txt"))
	if err != nil || string(got) != "conformance target" {
		t.Fatalf("target %q, %v", got, err)
	}
	// cached: a second download fetches no target
	h.requests = nil
	if err := client.HTTPDownload(cfg, "file.txt"); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.requests {
		if strings.HasPrefix(r, "/targets/") {
			t.Fatalf("cached target downloaded again: %v", h.requests)
		}
	}
	// the time is settable: two days later everything has expired
	later := cfg
	later.Now = now.Add(48 * time.Hour)
	if err := client.HTTPRefresh(later); !errors.Is(err, tuf.ErrExpired) {
		t.Fatalf("want ErrExpired, got %v", err)
	}
	if err := client.HTTPDownload(cfg, "missing"); err == nil {
		t.Fatal("missing target downloaded")
	}
}
