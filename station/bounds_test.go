package station_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainimage"
)

// rawLayer is a layer given by its compressed bytes. Its diff id is made
// up: computing the real one would mean inflating a bomb in the test.
type rawLayer struct{ b []byte }

func (l rawLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.b))
	return h, err
}
func (l rawLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}, nil
}
func (l rawLayer) Compressed() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l.b)), nil }
func (l rawLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("rawLayer: uncompressed read not supported")
}
func (l rawLayer) Size() (int64, error)                { return int64(len(l.b)), nil }
func (l rawLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }

// stateHead is the start of a state layer as trains carry it (directories,
// opaque markers, the envelope) followed by raw: header bytes of further
// entries written by the caller.
func stateHead(t *testing.T, env []byte, extra func(tw *tar.Writer, buf *bytes.Buffer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"opt/", "opt/pht_train/", "opt/pht_results/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range []string{"opt/pht_train/.wh..wh..opq", "opt/pht_results/.wh..wh..opq"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: w, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: train.ConfigPath, Mode: 0o644, Size: int64(len(env))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(env)
	tw.Flush()
	if extra != nil {
		extra(tw, &buf)
	}
	return buf.Bytes()
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// peak samples the size of a directory tree and the Go heap while fn runs.
func peak(t *testing.T, dir string, fn func()) (disk, heap int64) {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapAlloc)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	sample := func() {
		var n int64
		filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
		disk = max(disk, n)
		runtime.ReadMemStats(&ms)
		heap = max(heap, int64(ms.HeapAlloc)-base)
	}
	go func() {
		defer wg.Done()
		for {
			sample()
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	return disk, heap
}

// TestStateLayerBombs replaces the state layer of a genuine train with
// hostile ones and expects the station (station run) and the creator
// (train open) to refuse each quickly, with bounded disk and memory.
func TestStateLayerBombs(t *testing.T) {
	n := newNet(t, nil, "st1")
	ref := n.create(t, "st1")
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	env, err := train.ReadFile(n.ctx, img, train.ConfigPath, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	code, err := train.ReadFile(n.ctx, img, hardened.CodeBlobPath, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	const bomb = 4 << 30
	codeHeader := func(size int64) func(tw *tar.Writer, buf *bytes.Buffer) {
		return func(tw *tar.Writer, buf *bytes.Buffer) {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: hardened.CodeBlobPath, Mode: 0o644, Size: size})
		}
	}
	forged := bytes.Replace(env, []byte(`"sig": "`), []byte(`"sig": "AAAA`), 1)
	if bytes.Equal(forged, env) {
		t.Fatal("test cannot forge the envelope's signature")
	}
	cases := []struct {
		name  string
		layer func() []byte
		want  error
		text  string
	}{
		{"gzip bomb as the code blob", func() []byte {
			return append(gz(t, stateHead(t, env, codeHeader(bomb))), testutil.GzipZeros(bomb)...)
		}, hardened.ErrTampered, "signed"},
		{"gzip bomb behind a forged envelope", func() []byte {
			return append(gz(t, stateHead(t, forged, codeHeader(bomb))), testutil.GzipZeros(bomb)...)
		}, hardened.ErrSignature, ""},
		{"gzip bomb before the envelope", func() []byte {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: hardened.CodeBlobPath, Mode: 0o644, Size: bomb})
			return append(gz(t, buf.Bytes()), testutil.GzipZeros(bomb)...)
		}, trainimage.ErrImage, "before the envelope"},
		{"gzip bomb after the tar's end", func() []byte {
			head := stateHead(t, env, func(tw *tar.Writer, buf *bytes.Buffer) {
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: hardened.CodeBlobPath, Mode: 0o644, Size: int64(len(code))})
				tw.Write(code)
				tw.Close()
			})
			return append(gz(t, head), testutil.GzipZeros(bomb)...)
		}, trainimage.ErrLimit, "uncompressed"},
		{"entry name with terminal escapes", func() []byte {
			return gz(t, stateHead(t, env, func(tw *tar.Writer, buf *bytes.Buffer) {
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "opt/pht_train/\x1b[2J\x1b]0;owned\x07", Mode: 0o644})
				tw.Close()
			}))
		}, trainimage.ErrImage, "unexpected entry"},
		{"code blob with one byte changed", func() []byte {
			bad := append([]byte(nil), code...)
			bad[len(bad)/2] ^= 1
			return gz(t, stateHead(t, env, func(tw *tar.Writer, buf *bytes.Buffer) {
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: hardened.CodeBlobPath, Mode: 0o644, Size: int64(len(bad))})
				tw.Write(bad)
				tw.Close()
			}))
		}, hardened.ErrTampered, "signed sha256:"},
		{"GNU sparse entry of 100 GiB", func() []byte {
			return gz(t, append(stateHead(t, env, nil), testutil.GNUSparse(hardened.CodeBlobPath, 100<<30)...))
		}, trainimage.ErrImage, "sparse"},
		{"PAX sparse entry of 100 GiB", func() []byte {
			return gz(t, append(stateHead(t, env, nil), testutil.PAXSparse(hardened.CodeBlobPath, 100<<30)...))
		}, trainimage.ErrImage, "sparse"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.layer()
			t.Logf("state layer: %d bytes compressed", len(b))
			evil, err := train.WithState(img, rawLayer{b})
			if err != nil {
				t.Fatal(err)
			}
			tag := n.network.Inbox("st1") + fmt.Sprintf(":bomb%d", i)
			if _, err := n.rc.Push(n.ctx, evil, tag); err != nil {
				t.Fatal(err)
			}
			s := n.stations["st1"]
			for _, who := range []string{"station run", "train open"} {
				var err error
				start := time.Now()
				disk, heap := peak(t, s.WorkDir, func() {
					if who == "station run" {
						_, err = s.Process(n.ctx, tag)
						return
					}
					pulled, perr := n.rc.Pull(n.ctx, tag)
					if perr != nil {
						t.Fatal(perr)
					}
					_, err = creator.OpenResults(n.ctx, hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, pulled, t.TempDir(), creator.WithOpenTempDir(s.WorkDir))
				})
				took := time.Since(start)
				t.Logf("%s: %v (%s, disk peak %d, heap peak +%d)", who, err, took, disk, heap)
				if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
					t.Fatalf("%s: error %v, want %v naming %q", who, err, c.want, c.text)
				}
				// The CLI prints this line: names from the layer are quoted.
				if strings.ContainsAny(err.Error(), "\x1b\x07") {
					t.Fatalf("%s: error carries control characters: %q", who, err)
				}
				// At most the genuine code blob, which is verified as it is kept.
				if disk > int64(len(code))+1<<20 {
					t.Fatalf("%s: work dir grew to %d bytes", who, disk)
				}
				if heap > 64<<20 {
					t.Fatalf("%s: heap grew by %d bytes", who, heap)
				}
				if took > 20*time.Second {
					t.Fatalf("%s: refusal took %s", who, took)
				}
			}
		})
	}
	// The genuine train is still accepted by the same reader (the checks
	// above refuse the bombs, not every train).
	if _, err := creator.OpenResults(n.ctx, hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, img, t.TempDir(), creator.WithOpenTempDir(t.TempDir())); err == nil ||
		!strings.Contains(err.Error(), "no results yet") {
		t.Fatalf("genuine train: %v", err)
	}
}

// lyingLayer serves other bytes than its digest names (a registry or a
// cache that swapped the blob): the same tar, compressed differently.
type lyingLayer struct {
	rawLayer
	digest v1.Hash
}

func (l lyingLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// TestStateLayerDigestChecked: the state layer is read against the digest
// the manifest names, even when every blob inside it is genuine.
func TestStateLayerDigestChecked(t *testing.T) {
	n := newNet(t, nil, "st1")
	img, err := n.rc.Pull(n.ctx, n.create(t, "st1"))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	state := layers[len(layers)-1]
	want, _ := state.Digest()
	rc, err := state.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	evil, err := train.WithState(img, lyingLayer{rawLayer{gz(t, plain)}, want})
	if err != nil {
		t.Fatal(err)
	}
	_, err = creator.OpenResults(n.ctx, hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, evil, t.TempDir(), creator.WithOpenTempDir(t.TempDir()))
	if !errors.Is(err, hardened.ErrTampered) || !strings.Contains(err.Error(), "the manifest names") {
		t.Fatalf("swapped state layer blob: %v", err)
	}
}

// TestOversizedImageConfig gives a genuine train a 24 MiB image config:
// refused from the manifest's descriptor, before the config is fetched.
func TestOversizedImageConfig(t *testing.T) {
	n := newNet(t, nil, "st1")
	ref := n.create(t, "st1")
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	c.Labels = map[string]string{"padding": strings.Repeat("a", 24<<20)}
	big, err := mutate.Config(img, c)
	if err != nil {
		t.Fatal(err)
	}
	tag := n.network.Inbox("st1") + ":bigconfig"
	if _, err := n.rc.Push(n.ctx, big, tag); err != nil {
		t.Fatal(err)
	}
	big, c = nil, v1.Config{}
	s := n.stations["st1"]
	var perr error
	_, heap := peak(t, s.WorkDir, func() { _, perr = s.Process(n.ctx, tag) })
	t.Logf("station run: %v (heap peak +%d)", perr, heap)
	if !errors.Is(perr, trainimage.ErrLimit) || !strings.Contains(perr.Error(), "image config") {
		t.Fatalf("error %v, want %v", perr, trainimage.ErrLimit)
	}
	if heap > 16<<20 {
		t.Fatalf("heap grew by %d bytes: the config was read", heap)
	}
	pulled, err := n.rc.Pull(n.ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := creator.OpenResults(n.ctx, hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, pulled, t.TempDir(), creator.WithOpenTempDir(t.TempDir())); !errors.Is(err, trainimage.ErrLimit) {
		t.Fatalf("train open: %v", err)
	}
}

// TestOversizedManifest gives a genuine train a 5 MiB manifest (one large
// annotation): the station refuses it from the HEAD response's size.
func TestOversizedManifest(t *testing.T) {
	n := newNet(t, nil, "st1")
	ref := n.create(t, "st1")
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	big := mutate.Annotations(img, map[string]string{"padding": strings.Repeat("a", 5<<20)}).(v1.Image)
	tag := n.network.Inbox("st1") + ":bigmanifest"
	if _, err := n.rc.Push(n.ctx, big, tag); err != nil {
		t.Fatal(err)
	}
	_, err = n.stations["st1"].Process(n.ctx, tag)
	if !errors.Is(err, trainimage.ErrLimit) || !strings.Contains(err.Error(), "manifest") {
		t.Fatalf("error %v, want %v", err, trainimage.ErrLimit)
	}
}
