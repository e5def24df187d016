package train

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/registry"
)

// TestStateLayerUncompressed: a state layer is plain tar with the
// uncompressed media type of its image's manifest kind, its digest is its
// diff id and the sha256 of the stored bytes, and it survives a push to a
// real registry and a pull back; the base layers keep their gzip bytes,
// digests and media types.
func TestStateLayerUncompressed(t *testing.T) {
	srv := testutil.Registry(t)
	defer srv.Close()
	ctx := context.Background()
	c := registry.NewClient()
	oci := imageOf(t, []ent{{"bin/sh", "f", "shell"}})
	docker := mutate.MediaType(oci, types.DockerManifestSchema2)
	docker = mutate.ConfigMediaType(docker, types.DockerConfigJSON)
	for _, tc := range []struct {
		name string
		img  v1.Image
		want types.MediaType
	}{{"oci", oci, types.OCIUncompressedLayer}, {"docker", docker, types.DockerUncompressedLayer}} {
		t.Run(tc.name, func(t *testing.T) {
			l := stateLayer(t, tc.img, map[string]string{"r.bin": strings.Repeat("\x9c", 3<<20)})
			if mt, _ := l.MediaType(); mt != tc.want {
				t.Fatalf("media type %s, want %s", mt, tc.want)
			}
			d, _ := l.Digest()
			diff, _ := l.DiffID()
			if d != diff {
				t.Fatalf("digest %s != diff id %s", d, diff)
			}
			rc, _ := l.Compressed()
			raw, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != d.Hex {
				t.Fatal("digest is not the sha256 of the stored bytes")
			}
			if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
				t.Fatal("state layer is gzip")
			}
			if _, err := tar.NewReader(bytes.NewReader(raw)).Next(); err != nil {
				t.Fatalf("stored bytes are not a tar: %v", err)
			}
			img, err := WithState(tc.img, l)
			if err != nil {
				t.Fatal(err)
			}
			ref := strings.TrimPrefix(srv.URL, "http://") + "/t/" + tc.name + ":1"
			if _, err := c.Push(ctx, img, ref); err != nil {
				t.Fatal(err)
			}
			back, err := Load(ctx, ref, c)
			if err != nil {
				t.Fatal(err)
			}
			m, err := back.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Layers) != 2 || m.Layers[0].MediaType != types.DockerLayer && m.Layers[0].MediaType != types.OCILayer || m.Layers[1].MediaType != tc.want {
				t.Fatalf("pulled layers %+v", m.Layers)
			}
			base, _ := tc.img.Layers()
			bd, _ := base[0].Digest()
			if m.Layers[0].Digest != bd {
				t.Fatal("base layer bytes changed")
			}
			if m.Layers[1].Digest != d {
				t.Fatal("state layer digest changed in the registry")
			}
			if got := merged(t, back, ResultsDir); !strings.HasPrefix(got, "=d r.bin=f:\x9c\x9c") {
				t.Fatalf("results %.40q", got)
			}
		})
	}
}

// TestLayerWriterGzipStillCompresses: a gzip media type still gives a gzip
// layer whose diff id is the sha256 of the tar inside.
func TestLayerWriterGzipStillCompresses(t *testing.T) {
	w, err := NewLayerWriter(t.TempDir(), types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("compressible ", 1<<16)
	if err := w.File("a.txt", 0o644, int64(len(body)), strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	l, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Remove()
	rc, _ := l.Compressed()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, gz); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	diff, _ := l.DiffID()
	if hex.EncodeToString(h.Sum(nil)) != diff.Hex {
		t.Fatal("diff id is not the sha256 of the tar")
	}
	if size, _ := l.Size(); size >= int64(len(body)) {
		t.Fatalf("gzip layer of %d bytes for %d bytes of text", size, len(body))
	}
	u, _ := l.Uncompressed()
	tr := tar.NewReader(u)
	if hdr, err := tr.Next(); err != nil || hdr.Name != "a.txt" {
		t.Fatalf("%v %v", hdr, err)
	}
	u.Close()
}

// BenchmarkLayerWriter writes 64 MiB of random bytes (what ciphertext looks
// like) as one layer, uncompressed and at gzip.BestSpeed: the cost gzip
// adds to a state layer and what it saves (compressed-%).
func BenchmarkLayerWriter(b *testing.B) {
	const size = 64 << 20
	data := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{7}).Read(data)
	for _, mt := range []types.MediaType{types.OCIUncompressedLayer, types.OCILayer} {
		b.Run(string(mt[strings.LastIndexByte(string(mt), '.')+1:]), func(b *testing.B) {
			b.SetBytes(size)
			var pct float64
			for i := 0; i < b.N; i++ {
				w, err := NewLayerWriter(b.TempDir(), mt)
				if err != nil {
					b.Fatal(err)
				}
				err = w.FileFunc("r.bin", 0o644, size, func(dst io.Writer) error {
					for n := 0; n < size; n += len(data) {
						if _, err := dst.Write(data); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				l, err := w.Close()
				if err != nil {
					b.Fatal(err)
				}
				n, _ := l.Size()
				pct = 100 * float64(n) / size
				l.Remove()
			}
			b.ReportMetric(pct, "compressed-%")
		})
	}
}
