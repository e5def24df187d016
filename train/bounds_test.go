package train

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/registry"
)

func rawTarImage(t *testing.T, data []byte) v1.Image {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(ScratchImage(), l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func hdrOnly(t *testing.T, hs ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(make([]byte, h.Size))
	}
	tw.Close()
	return buf.Bytes()
}

// TestReadStateRefusesHostileEntries: entries that would cost the reader
// more than their bytes in the layer, or reach outside the train's
// directories, are refused before anything is spooled.
func TestReadStateRefusesHostileEntries(t *testing.T) {
	cases := []struct {
		name string
		tar  []byte
		opts []ReadOption
		want error
		text string
	}{
		{"GNU sparse result of 100 GiB", testutil.GNUSparse(ResultsDir+"/big", 100<<30), nil, ErrLayout, "sparse"},
		{"PAX sparse result of 100 GiB", testutil.PAXSparse(ResultsDir+"/big", 100<<30), nil, ErrLayout, "sparse"},
		{"character device", hdrOnly(t, tar.Header{Typeflag: tar.TypeChar, Name: ResultsDir + "/null", Devmajor: 1, Devminor: 3}), nil, ErrLayout, "device"},
		{"fifo", hdrOnly(t, tar.Header{Typeflag: tar.TypeFifo, Name: TrainDir + "/pipe"}), nil, ErrLayout, "fifo"},
		{"hard link out of the results", hdrOnly(t, tar.Header{Typeflag: tar.TypeLink, Name: ResultsDir + "/shadow", Linkname: "etc/shadow"}), nil, ErrLayout, "hard link"},
		{"file over the byte bound", hdrOnly(t, tar.Header{Typeflag: tar.TypeReg, Name: ResultsDir + "/a", Size: 600, Mode: 0o644},
			tar.Header{Typeflag: tar.TypeReg, Name: ResultsDir + "/b", Size: 600, Mode: 0o644}), []ReadOption{WithMaxStateBytes(1000)}, ErrTooLarge, "/b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := ReadState(context.Background(), rawTarImage(t, c.tar), t.TempDir(), c.opts...)
			if err == nil {
				st.Close()
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("error %v, want %v naming %q", err, c.want, c.text)
			}
		})
	}
	// Within the bound and with a hard link inside its directory, the same
	// shapes are read.
	ok := hdrOnly(t, tar.Header{Typeflag: tar.TypeReg, Name: ResultsDir + "/a", Size: 600, Mode: 0o644},
		tar.Header{Typeflag: tar.TypeLink, Name: ResultsDir + "/b", Linkname: ResultsDir + "/a"})
	st, err := ReadState(context.Background(), rawTarImage(t, ok), t.TempDir(), WithMaxStateBytes(1000))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := ReadFile(context.Background(), rawTarImage(t, testutil.GNUSparse(ConfigPath, 100<<30)), ConfigPath, MaxConfigSize); !errors.Is(err, ErrLayout) {
		t.Fatalf("sparse config: %v", err)
	}
}

// gzLayer is a gzip layer given by its bytes, with a made-up diff id:
// the real one would mean inflating the bomb in the test.
type gzLayer struct {
	b    []byte
	read *int64 // uncompressed bytes handed out
}

func (l gzLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.b))
	return h, err
}
func (l gzLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("cd", 32)}, nil
}
func (l gzLayer) Compressed() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l.b)), nil }
func (l gzLayer) Uncompressed() (io.ReadCloser, error) {
	zr, err := gzip.NewReader(bytes.NewReader(l.b))
	return io.NopCloser(&countReader{zr, l.read}), err
}

type countReader struct {
	r io.Reader
	n *int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}
func (l gzLayer) Size() (int64, error)                { return int64(len(l.b)), nil }
func (l gzLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }

// TestReadFileStopsAfterTheFile: a config followed by 4 GiB of zeros in the
// same layer is read without inflating the zeros.
func TestReadFileStopsAfterTheFile(t *testing.T) {
	var head bytes.Buffer
	zw := gzip.NewWriter(&head)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: ConfigPath, Size: 2, Mode: 0o644})
	tw.Write([]byte("{}"))
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Size: 4 << 30, Mode: 0o644})
	tw.Flush()
	zw.Close()
	var read int64
	img, err := mutate.AppendLayers(ScratchImage(), gzLayer{append(head.Bytes(), testutil.GzipZeros(4<<30)...), &read})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b, err := ReadFile(context.Background(), img, ConfigPath, MaxConfigSize)
	if err != nil || string(b) != "{}" {
		t.Fatalf("%q %v", b, err)
	}
	if d := time.Since(start); d > 2*time.Second || read > 1<<20 {
		t.Fatalf("ReadFile took %s and inflated %d bytes: it read past the file", d, read)
	}
}

// TestLoadRefusesOversizedManifest: a registry image whose manifest is
// 5 MiB (one large annotation) is refused from the HEAD response, as
// `train open` and every other Load of a registry reference see it.
func TestLoadRefusesOversizedManifest(t *testing.T) {
	srv := testutil.Registry(t)
	defer srv.Close()
	ctx := context.Background()
	c := registry.NewClient()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/t/big:1"
	img := mutate.Annotations(imageOf(t, []ent{{ConfigPath, "f", "{}"}}), map[string]string{"padding": strings.Repeat("a", 5<<20)}).(v1.Image)
	if _, err := c.Push(ctx, img, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, ref, c); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "manifest") {
		t.Fatalf("Load: %v", err)
	}
	small := strings.TrimPrefix(srv.URL, "http://") + "/t/small:1"
	if _, err := c.Push(ctx, imageOf(t, []ent{{ConfigPath, "f", "{}"}}), small); err != nil {
		t.Fatal(err)
	}
	got, err := Load(ctx, small, c)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(ctx, got, ConfigPath, MaxConfigSize); err != nil || string(b) != "{}" {
		t.Fatalf("%q %v", b, err)
	}
}
