package client_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/registry/server"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/ocistore"
	"github.com/trainyard/trainyard/tuf/repo"
)

// benchRepo publishes on the embedded distribution registry (filesystem
// storage) so that big blobs live on disk, not in this process's heap.
func benchRepo(b *testing.B) (*ocistore.Store, *repo.Publisher) {
	b.Helper()
	kdftest.Fast()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	h, stop, err := server.NewHandler(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(stop)
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	store, err := ocistore.New(registry.NewClient(registry.WithInsecure(true)), strings.TrimPrefix(srv.URL, "http://")+"/bench/tuf")
	if err != nil {
		b.Fatal(err)
	}
	p := repo.New(store, b.TempDir(), repo.WithPasswords(func(string) ([]byte, error) { return []byte("pw"), nil }))
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		if _, _, err := p.CreateKey(role, false); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.CreateMetadata(ctx, nil); err != nil {
		b.Fatal(err)
	}
	return store, p
}

// BenchmarkPullMetadata10000Targets: a first pull-metadata of a repository
// with 10,000 targets (root, timestamp, snapshot, a targets.json of about 2 MB).
func BenchmarkPullMetadata10000Targets(b *testing.B) {
	ctx := context.Background()
	store, p := benchRepo(b)
	if err := p.AddTarget(ctx, "seed", repo.FromBytes([]byte("seed"))); err != nil {
		b.Fatal(err)
	}
	tf, err := metadata.TargetFile().FromBytes("seed", []byte("seed"), "sha256")
	if err != nil {
		b.Fatal(err)
	}
	many := map[string]repo.Source{}
	for i := 0; i < 10000; i++ {
		many[fmt.Sprintf("dir%02d/target-%05d.bin", i%100, i)] = repo.FromBlob(*tf)
	}
	if err := p.AddTargets(ctx, many); err != nil {
		b.Fatal(err)
	}
	if err := p.PushMetadata(ctx); err != nil {
		b.Fatal(err)
	}
	root, err := os.ReadFile(p.RootPath())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var peak uint64
	for i := 0; i < b.N; i++ {
		c := client.New(store, b.TempDir())
		peak = max(peak, testutil.PeakHeap(func() {
			changed, err := c.Bootstrap(ctx, root)
			if err != nil || len(changed) != 10001 {
				b.Fatalf("%d changed, %v", len(changed), err)
			}
		}))
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.StopTimer()
	// The anchor of the same run: fetching the files the pull fetched
	// (2.root.json, absent; timestamp, snapshot, targets), nothing verified.
	start := time.Now()
	files := fetchRaw(b, store)
	b.ReportMetric(time.Since(start).Seconds(), "fetch-s")
	if dir := os.Getenv("TRAINYARD_TUF_BENCH_DUMP"); dir != "" {
		files["root.json"] = root
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// fetchRaw fetches a repository's current timestamp, snapshot and targets
// the way a first pull does, without verifying them; keyed by role file.
func fetchRaw(b *testing.B, store *ocistore.Store) map[string][]byte {
	b.Helper()
	ctx := context.Background()
	if _, err := store.GetMetadata(ctx, "2.root.json", 1<<20); err == nil {
		b.Fatal("a second root version appeared")
	}
	get := func(name string) []byte {
		data, err := store.GetMetadata(ctx, name, 64<<20)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	version := func(data []byte, file string) int64 {
		var md struct {
			Signed struct {
				Meta map[string]struct{ Version int64 } `json:"meta"`
			} `json:"signed"`
		}
		if err := json.Unmarshal(data, &md); err != nil {
			b.Fatal(err)
		}
		return md.Signed.Meta[file].Version
	}
	ts := get("timestamp.json")
	snap := get(strconv.FormatInt(version(ts, "snapshot.json"), 10) + ".snapshot.json")
	targets := get(strconv.FormatInt(version(snap, "targets.json"), 10) + ".targets.json")
	return map[string][]byte{"timestamp.json": ts, "snapshot.json": snap, "targets.json": targets}
}

// BenchmarkPullTarget1GiB: pull-target of a 1 GiB target into a file
// (TRAINYARD_TUF_BENCH_SIZE overrides the size in bytes). Peak heap must
// not grow with the target size.
func BenchmarkPullTarget1GiB(b *testing.B) {
	size := int64(1 << 30)
	if v := os.Getenv("TRAINYARD_TUF_BENCH_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	ctx := context.Background()
	store, p := benchRepo(b)
	src := filepath.Join(b.TempDir(), "big.bin")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(w, rng, size); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	if err := p.AddTarget(ctx, "big.bin", repo.FromFile(src)); err != nil {
		b.Fatal(err)
	}
	os.Remove(src)
	if err := p.PushMetadata(ctx); err != nil {
		b.Fatal(err)
	}
	root, err := os.ReadFile(p.RootPath())
	if err != nil {
		b.Fatal(err)
	}
	c := client.New(store, b.TempDir())
	if _, err := c.Bootstrap(ctx, root); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "out.bin")
	b.SetBytes(size)
	b.ResetTimer()
	var peak uint64
	for i := 0; i < b.N; i++ {
		peak = max(peak, testutil.PeakHeap(func() {
			if _, err := c.Download(ctx, "big.bin", out); err != nil {
				b.Fatal(err)
			}
		}))
		os.Remove(out)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkPullTargetBesideCraneBlob: pull-target of one target
// (TRAINYARD_TUF_BENCH_SIZE bytes, default 256 MiB) beside its anchor, in
// the same iteration: -o FILE (Download), to stdout (WriteTo into a file,
// as `> file` does), and `crane blob REPO@DIGEST > file` of the same blob
// (the crane binary at $TRAINYARD_CRANE, else the same go-containerregistry
// call in process). Reports seconds per op of each and the ratios.
func BenchmarkPullTargetBesideCraneBlob(b *testing.B) {
	size := int64(256 << 20)
	if v := os.Getenv("TRAINYARD_TUF_BENCH_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	ctx := context.Background()
	store, p := benchRepo(b)
	src := filepath.Join(b.TempDir(), "big.bin")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{2}), size); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	if err := p.AddTarget(ctx, "big.bin", repo.FromFile(src)); err != nil {
		b.Fatal(err)
	}
	os.Remove(src)
	if err := p.PushMetadata(ctx); err != nil {
		b.Fatal(err)
	}
	root, err := os.ReadFile(p.RootPath())
	if err != nil {
		b.Fatal(err)
	}
	c := client.New(store, b.TempDir())
	if _, err := c.Bootstrap(ctx, root); err != nil {
		b.Fatal(err)
	}
	tfs, err := c.TargetInfo(ctx, "big.bin")
	if err != nil {
		b.Fatal(err)
	}
	ref := fmt.Sprintf("%s@sha256:%s", store.Repository(), hex.EncodeToString(tfs[0].Hashes["sha256"]))
	crane := os.Getenv("TRAINYARD_CRANE")
	out := filepath.Join(b.TempDir(), "out.bin")
	timed := func(f func() error) float64 {
		os.Remove(out)
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0).Seconds()
	}
	toFile := func(f func(*os.File) error) func() error {
		return func() error {
			o, err := os.Create(out)
			if err != nil {
				return err
			}
			defer o.Close()
			return f(o)
		}
	}
	var dl, so, cb float64
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dl += timed(func() error { _, err := c.Download(ctx, "big.bin", out); return err })
		so += timed(toFile(func(o *os.File) error { return c.WriteTo(ctx, o, nil, "big.bin") }))
		cb += timed(toFile(func(o *os.File) error {
			if crane != "" {
				cmd := exec.Command(crane, "blob", "--insecure", ref)
				cmd.Stdout = o
				return cmd.Run()
			}
			return craneBlob(ctx, ref, o)
		}))
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(dl/n, "download-s/op")
	b.ReportMetric(so/n, "stdout-s/op")
	b.ReportMetric(cb/n, "crane-blob-s/op")
	b.ReportMetric(dl/cb, "download/crane")
	b.ReportMetric(so/cb, "stdout/crane")
}

// craneBlob is what `crane blob` does: remote.Layer(ref).Compressed() to w.
func craneBlob(ctx context.Context, ref string, w io.Writer) error {
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		return err
	}
	l, err := remote.Layer(d, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}
