package seal

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// rchar is the bytes this process has read through syscalls so far.
func rchar(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Skip("no rchar in /proc/self/io")
	return 0
}

// TestUnsealOnePassIntoLayout: into a layout the archive is read once, not
// twice, and the images are all there.
func TestUnsealOnePassIntoLayout(t *testing.T) {
	ctx := context.Background()
	fx := sealFixture(t)
	fi, err := os.Stat(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	before := rchar(t)
	res, err := Unseal(ctx, fx.path, fx.keys, NewLayoutTarget(dir))
	if err != nil {
		t.Fatal(err)
	}
	read := rchar(t) - before
	if read > fi.Size()*3/2 {
		t.Fatalf("read %d bytes of a %d-byte archive: more than one pass", read, fi.Size())
	}
	for _, im := range res.Images {
		ids, err := NewLayoutTarget(dir).Resolve(ctx, canonicalName(im.Name))
		if err != nil || len(ids) != 1 || ids[0] != im.Digest {
			t.Fatalf("%s: %v %v", im.Name, ids, err)
		}
	}
	// Two passes for a target outside the registry/layout pair.
	before = rchar(t)
	if _, err := Unseal(ctx, fx.path, fx.keys, &discardTarget{}); err != nil {
		t.Fatal(err)
	}
	if read := rchar(t) - before; read < fi.Size()*2 {
		t.Fatalf("discard target: read %d bytes of a %d-byte archive, want two passes", read, fi.Size())
	}
}

// TestUnsealOnePassRefusalRemovesStagedBlobs: an archive whose end does not
// authenticate (final chunk dropped) is refused after its blobs were
// written; the layout is then as it was before: the blobs it already had
// stay, the new ones are removed, and there is no index.json.
func TestUnsealOnePassRefusalRemovesStagedBlobs(t *testing.T) {
	ctx := context.Background()
	fx := sealFixture(t)
	orig, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	_, raw, _ := ReadHeader(bytes.NewReader(orig))
	chunk := 4096 + tagSize
	body := len(orig) - len(raw)
	cut := writeCopy(t, orig[:len(raw)+chunk*(body/chunk-1)])

	dir := t.TempDir()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(blobs, strings.Repeat("ab", 32))
	if err := os.WriteFile(keep, []byte("an older blob"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Unseal(ctx, cut, fx.keys, NewLayoutTarget(dir))
	if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated archive: %v", err)
	}
	assertEmptyLayout(t, dir)
	ents, _ := os.ReadDir(blobs)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != filepath.Base(keep) {
		t.Fatalf("blobs after a refused unseal: %v, want only the older one", names)
	}
	// The same layout then takes the intact archive.
	if _, err := Unseal(ctx, fx.path, fx.keys, NewLayoutTarget(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("older blob gone: %v", err)
	}
}

// TestUnsealFallsBackToTwoPasses: an archive that puts a config before a
// later image's manifest (valid, but one pass could not know every blob's
// users yet) still unseals, through the two passes, into a registry and a
// layout.
func TestUnsealFallsBackToTwoPasses(t *testing.T) {
	ctx := context.Background()
	fx := sealFixture(t)
	plain, err := decryptForTest(fx)
	if err != nil {
		t.Fatal(err)
	}
	// Reorder: each manifest directly followed by its config, then layers.
	type entry struct {
		hdr  *tar.Header
		body []byte
	}
	var ents []entry
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		ents = append(ents, entry{hdr, b})
	}
	rank := map[string]int{ociLayoutFile: 0, indexFile: 1}
	for i, im := range fx.sealed.Header.Images {
		h := strings.TrimPrefix(im.Digest, "sha256:")
		if _, ok := rank[blobPath(mustHash(t, "sha256:"+h))]; !ok {
			rank[blobPath(mustHash(t, "sha256:"+h))] = 2 + 2*i
		}
		cfg := mustConfigOf(t, fx, i)
		if _, ok := rank[blobPath(cfg)]; !ok {
			rank[blobPath(cfg)] = 3 + 2*i
		}
	}
	sort.SliceStable(ents, func(a, b int) bool {
		ra, oka := rank[ents[a].hdr.Name]
		rb, okb := rank[ents[b].hdr.Name]
		if !oka {
			ra = 1 << 20
		}
		if !okb {
			rb = 1 << 20
		}
		return ra < rb
	})
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range ents {
		if err := tw.WriteHeader(e.hdr); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(e.body)
	}
	_ = tw.Close()

	orig, _ := os.ReadFile(fx.path)
	h, raw, _ := ReadHeader(bytes.NewReader(orig))
	key, err := openKeys(h, fx.keys.DeviceKey, fx.keys.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.NewBuffer(bytes.Clone(raw))
	cw, err := newChunkWriter(out, key, h.NoncePrefix, headerHash(raw), h.ChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = cw.Write(tb.Bytes())
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	p := writeCopy(t, out.Bytes())

	// One pass must give up here, before writing anything.
	f, _ := os.Open(p)
	defer f.Close()
	_, raw2, _ := ReadHeader(f)
	cr, _ := newChunkReader(f, key, h.NoncePrefix, headerHash(raw2), h.ChunkSize)
	rt := &recordTarget{}
	if _, err := scan(ctx, cr, h, nil, nil, &onePass{t: rt}); !errors.Is(err, errTwoPasses) || len(rt.calls) != 0 {
		t.Fatalf("reordered archive in one pass: %v, target saw %v", err, rt.calls)
	}

	host := newRegistry(t)
	if _, err := Unseal(ctx, p, fx.keys, NewRegistryTarget(host, nil)); err != nil {
		t.Fatalf("registry: %v", err)
	}
	if _, err := Unseal(ctx, p, fx.keys, NewLayoutTarget(t.TempDir())); err != nil {
		t.Fatalf("layout: %v", err)
	}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustConfigOf(t *testing.T, fx *sealedFixture, i int) v1.Hash {
	t.Helper()
	h, err := fx.images[i].Image.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestLayoutSyncFailureRemovesStagedBlobs: a blob that cannot be made
// durable (its sync fails on the syncer goroutine, after the unseal has
// moved on to the next blob) fails the unseal, and the layout is as it was:
// no index.json, none of the blobs this unseal wrote.
func TestLayoutSyncFailureRemovesStagedBlobs(t *testing.T) {
	ctx := context.Background()
	fx := sealFixture(t)
	dir := t.TempDir()
	var n atomic.Int32
	syncBlob = func(f *os.File) error {
		if n.Add(1) == 2 {
			return errors.New("disk full (test)")
		}
		return f.Sync()
	}
	t.Cleanup(func() { syncBlob = (*os.File).Sync })
	_, err := Unseal(ctx, fx.path, fx.keys, NewLayoutTarget(dir))
	if err == nil || !strings.Contains(err.Error(), "disk full (test)") {
		t.Fatalf("unseal with a failing sync: %v", err)
	}
	if n.Load() < 2 {
		t.Fatalf("only %d blobs synced: the failure was not met", n.Load())
	}
	assertEmptyLayout(t, dir)
	if ents, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256")); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("blobs left after a failed sync: %v", names)
	}
	// With syncs working again the same layout takes the archive.
	syncBlob = (*os.File).Sync
	if _, err := Unseal(ctx, fx.path, fx.keys, NewLayoutTarget(dir)); err != nil {
		t.Fatal(err)
	}
}

// TestLayoutUnsealInterrupted: an unseal into a layout cancelled after its
// first blob was synced (the syncer still holding others) ends with the
// context's error and leaves the layout as it was.
func TestLayoutUnsealInterrupted(t *testing.T) {
	fx := sealFixture(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int32
	syncBlob = func(f *os.File) error {
		if n.Add(1) == 1 {
			cancel()
		}
		return f.Sync()
	}
	t.Cleanup(func() { syncBlob = (*os.File).Sync })
	_, err := Unseal(ctx, fx.path, fx.keys, NewLayoutTarget(dir))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled unseal: %v", err)
	}
	assertEmptyLayout(t, dir)
	if ents, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256")); len(ents) != 0 {
		t.Fatalf("%d blobs left after an interrupted unseal", len(ents))
	}
	// The layout's lock was released: the next unseal takes it.
	syncBlob = (*os.File).Sync
	if _, err := Unseal(context.Background(), fx.path, fx.keys, NewLayoutTarget(dir)); err != nil {
		t.Fatalf("the layout after an interrupted unseal: %v", err)
	}
}
