package manifest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testImage is a docker schema2 image with real gzip layers, an empty-layer
// history entry and a matching config.
type testImage struct {
	manifest, config []byte
	blobs            map[digest.Digest][]byte
	diffIDs          []digest.Digest
	layers           []Descriptor
}

func layerBlob(t testing.TB, name, content string) (blob []byte, diffID digest.Digest) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(tb.Bytes())
	zw.Close()
	return zb.Bytes(), digest.FromBytes(tb.Bytes())
}

func newTestImage(t testing.TB, kind Kind) *testImage {
	ti := &testImage{blobs: map[digest.Digest][]byte{}}
	layerMT, cfgMT, mfMT := MediaTypeDockerLayer, MediaTypeDockerConfig, MediaTypeDockerV2
	if kind == KindOCIManifest {
		layerMT, cfgMT, mfMT = MediaTypeOCILayerGzip, MediaTypeOCIConfig, MediaTypeOCIManifest
	}
	for i, c := range []string{"base content", "app content"} {
		blob, diff := layerBlob(t, fmt.Sprintf("f%d", i), c)
		d := digest.FromBytes(blob)
		ti.blobs[d] = blob
		ti.diffIDs = append(ti.diffIDs, diff)
		ti.layers = append(ti.layers, Descriptor{MediaType: layerMT, Size: int64(len(blob)), Digest: d})
	}
	cfg := map[string]any{
		"architecture": "amd64", "os": "linux", "created": "2026-01-02T00:00:00Z",
		"config": map[string]any{"Cmd": []string{"/app"}, "Labels": map[string]string{"train": "yes"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": ti.diffIDs},
		"history": []map[string]any{
			{"created": "2026-01-01T00:00:00Z", "created_by": "ADD base /"},
			{"created": "2026-01-01T00:00:01Z", "created_by": "ENV A=b", "empty_layer": true},
			{"created": "2026-01-02T00:00:00Z", "created_by": "COPY app /app", "author": "trainyard"},
		},
	}
	ti.config, _ = json.Marshal(cfg)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mfMT,
		Config: Descriptor{MediaType: cfgMT, Size: int64(len(ti.config)), Digest: digest.FromBytes(ti.config)},
		Layers: ti.layers}
	ti.manifest, _ = json.MarshalIndent(m, "", "   ")
	return ti
}

func (ti *testImage) fetcher() BlobFetcher {
	return BlobFetcherFunc(func(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
		if d == EmptyLayerDigest {
			return io.NopCloser(bytes.NewReader(EmptyLayer())), nil
		}
		b, ok := ti.blobs[d]
		if !ok {
			return nil, fmt.Errorf("blob %s not found", d)
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}

func TestEmptyLayerConstant(t *testing.T) {
	if digest.FromBytes(EmptyLayer()) != EmptyLayerDigest {
		t.Fatal("EmptyLayer bytes do not hash to EmptyLayerDigest")
	}
}

func TestConvertRoundTrip(t *testing.T) {
	for _, kind := range []Kind{KindDockerV2, KindOCIManifest} {
		t.Run(kind.String(), func(t *testing.T) {
			ti := newTestImage(t, kind)
			m, err := Parse(ti.manifest)
			if err != nil {
				t.Fatal(err)
			}
			img := m.(*Image)
			if err := img.VerifyConfig(ti.config); err != nil {
				t.Fatal(err)
			}
			unsigned, err := ToSchema1(img, ti.config, "trainyard/app", "v1")
			if err != nil {
				t.Fatal(err)
			}
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			signed, err := SignSchema1(unsigned, key)
			if err != nil {
				t.Fatal(err)
			}
			if err := joseVerify(signed); err != nil {
				t.Fatalf("independent verify of converted schema1: %v", err)
			}
			s, err := ParseSchema1(signed)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Verify(); err != nil {
				t.Fatal(err)
			}
			layers, _ := s.Layers()
			if len(layers) != 3 || layers[1].BlobSum != EmptyLayerDigest || !layers[1].V1.Throwaway || layers[2].V1.Author != "trainyard" {
				t.Fatalf("schema1 layers %+v", layers)
			}
			if layers[2].V1.Labels["train"] != "yes" || layers[1].V1.Command != `["ENV A=b"]` {
				t.Fatalf("v1 metadata %+v / %+v", layers[2].V1, layers[1].V1)
			}
			// Back: sizes and diff ids come from streaming the blobs.
			infos, err := InspectLayers(context.Background(), s, ti.fetcher())
			if err != nil {
				t.Fatal(err)
			}
			back, cfg, err := FromSchema1(s, kind, infos)
			if err != nil {
				t.Fatal(err)
			}
			bm, err := Parse(back, WithMediaType(map[Kind]string{KindDockerV2: MediaTypeDockerV2, KindOCIManifest: MediaTypeOCIManifest}[kind]))
			if err != nil {
				t.Fatal(err)
			}
			bi := bm.(*Image)
			if err := bi.VerifyConfig(cfg); err != nil {
				t.Fatal(err)
			}
			got := bi.Layers()
			if len(got) != 2 || !sameDesc(got[0], ti.layers[0]) || !sameDesc(got[1], ti.layers[1]) {
				t.Fatalf("layers after round trip %+v, want %+v", got, ti.layers)
			}
			c, err := ParseImageConfig(cfg, 2)
			if err != nil {
				t.Fatal(err)
			}
			if c.RootFS.DiffIDs[0] != ti.diffIDs[0] || c.RootFS.DiffIDs[1] != ti.diffIDs[1] || len(c.History) != 3 || !c.History[1].EmptyLayer {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

func TestInspectLayersRefusesWrongBlob(t *testing.T) {
	ti := newTestImage(t, KindDockerV2)
	m, _ := Parse(ti.manifest)
	unsigned, err := ToSchema1(m.(*Image), ti.config, "a/b", "c")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := ParseSchema1(unsigned)
	for d := range ti.blobs {
		ti.blobs[d] = append(append([]byte{}, ti.blobs[d]...), 0) // one byte more
	}
	if _, err := InspectLayers(context.Background(), s, ti.fetcher()); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("InspectLayers = %v, want ErrDigestMismatch", err)
	}
}

func TestToSchema1RefusesBadConfig(t *testing.T) {
	m, err := Parse(readVector(t, "quay-schema2-simple.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ToSchema1(m.(*Image), readVector(t, "quay-schema2-simple.config.json"), "a/b", "c"); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("ToSchema1 = %v, want ErrDigestMismatch", err)
	}
	a, _ := Parse(readVector(t, "ggcr-oci-artifact-nomime-b544f71e.json"))
	if _, err := ToSchema1(a.(*Image), nil, "a/b", "c"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("artifact: %v", err)
	}
}

func TestConvertImageDockerOCI(t *testing.T) {
	ti := newTestImage(t, KindDockerV2)
	m, _ := Parse(ti.manifest)
	oci, err := ConvertImage(m.(*Image), KindOCIManifest)
	if err != nil {
		t.Fatal(err)
	}
	om, err := Parse(oci, WithMediaType(MediaTypeOCIManifest))
	if err != nil {
		t.Fatal(err)
	}
	if om.(*Image).Layers()[0].MediaType != MediaTypeOCILayerGzip || om.(*Image).Config().Digest != m.(*Image).Config().Digest {
		t.Fatalf("oci %s", oci)
	}
	back, err := ConvertImage(om.(*Image), KindDockerV2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, ti.manifest) {
		t.Fatalf("docker->oci->docker changed bytes:\n%s\n%s", back, ti.manifest)
	}
}

func TestRewriteInvalidImageIDs(t *testing.T) {
	s, err := ParseSchema1(readVector(t, "quay-schema1-validated_manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := s.Layers()
	same, err := s.RewriteInvalidImageIDs(map[string]digest.Digest{layers[0].V1.ID: layers[0].BlobSum})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range same {
		if v.ID != layers[i].V1.ID || v.Rewritten || string(v.Compat) != layers[i].RawV1Compatibility {
			t.Fatalf("layer %d rewritten without cause", i)
		}
	}
	// Layer 2's id is already stored with other content: 2 and everything
	// above it get content-addressed ids.
	const bad = 2
	out, err := s.RewriteInvalidImageIDs(map[string]digest.Digest{layers[bad].V1.ID: digest.FromString("other")})
	if err != nil {
		t.Fatal(err)
	}
	var run bytes.Buffer
	for i, v := range out {
		fmt.Fprintf(&run, "%s@%s|", layers[i].BlobSum, layers[i].RawV1Compatibility)
		if i < bad {
			if v.ID != layers[i].V1.ID || v.Rewritten {
				t.Fatalf("layer %d below the bad one changed", i)
			}
			continue
		}
		if want := digest.FromBytes(run.Bytes()).Encoded(); v.ID != want || !v.Rewritten {
			t.Fatalf("layer %d id %s, want %s", i, v.ID, want)
		}
		if v.Parent != out[i-1].ID {
			t.Fatalf("layer %d parent %s, want %s", i, v.Parent, out[i-1].ID)
		}
		var c map[string]any
		if err := json.Unmarshal(v.Compat, &c); err != nil || c["id"] != v.ID || c["parent"] != v.Parent {
			t.Fatalf("layer %d compat %s", i, v.Compat)
		}
		if cc, ok := c["container_config"].(map[string]any); ok {
			if _, lower := cc["image"]; lower {
				t.Fatalf("layer %d: Quay's lowercase image key bug reproduced", i)
			}
		}
	}
}

func sameDesc(a, b Descriptor) bool {
	return a.MediaType == b.MediaType && a.Digest == b.Digest && a.Size == b.Size
}
