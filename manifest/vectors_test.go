package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectorSizes guards against a reformatted copy: every expectation below
// is over the exact bytes.
func TestVectorSizes(t *testing.T) {
	sizes := map[string]int{
		"quay-schema1-validated_manifest.json":            4786,
		"quay-schema1-unencoded_unicode.json":             3261,
		"quay-schema1-simple-badsig.json":                 3026,
		"moby-schema1-good_manifest.json":                 3844,
		"moby-schema1-bad_manifest.json":                  3845,
		"cimage-schema1-v2s1.manifest.json":               6125,
		"cimage-schema1-invalid-signatures.manifest.json": 166,
		"quay-schema2-simple.json":                        754,
		"quay-schema2-simple.config.json":                 1977,
		"cimage-schema2-v2s2.manifest.json":               995,
		"cimage-list-v2list.manifest.json":                1797,
		"ggcr-oci-index-05f95b26.json":                    314,
		"ggcr-docker-manifest-eebff607.json":              423,
		"ggcr-oci-artifact-nomime-b544f71e.json":          391,
	}
	for name, want := range sizes {
		if got := len(readVector(t, name)); got != want {
			t.Errorf("%s: %d bytes, want %d (vector reformatted?)", name, got, want)
		}
	}
}

func TestSchema1Vectors(t *testing.T) {
	tests := []struct {
		file         string
		digest       string
		formatLength int
		sigValid     bool
		layers       int
	}{
		{"quay-schema1-validated_manifest.json", "sha256:b5dc4f63fdbd64f34f2314c0747ef81008f9fcddce4edfc3fd0e8ec8b358d571", 4139, true, 6},
		{"quay-schema1-unencoded_unicode.json", "sha256:5d8a0f34744a39bf566ba430251adc0cc86587f86aed3ac2acfb897f349777bc", 2614, true, 3},
		{"moby-schema1-good_manifest.json", "sha256:02fee8c3220ba806531f606525eceb83f4feb654f62b207191b1c9209188dedd", 3197, true, 2},
		{"cimage-schema1-v2s1.manifest.json", "sha256:7364fea9d84ee548ab67d4c46c6006289800c98de3fbf8c0a97138dfcc23f000", 5478, false, 3},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw := readVector(t, tc.file)
			s, err := ParseSchema1(raw)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got := s.Digest().String(); got != tc.digest {
				t.Fatalf("digest %s, want %s", got, tc.digest)
			}
			if len(s.Payload()) != tc.formatLength+2 || !bytes.Equal(s.Payload()[:tc.formatLength], raw[:tc.formatLength]) {
				t.Fatalf("payload length %d, want %d", len(s.Payload()), tc.formatLength+2)
			}
			if s.MediaType() != MediaTypeSchema1Signed {
				t.Fatalf("media type %s", s.MediaType())
			}
			_, err = s.Verify()
			if tc.sigValid && err != nil {
				t.Fatalf("verify: %v", err)
			}
			if !tc.sigValid && !errors.Is(err, ErrSignature) {
				t.Fatalf("verify = %v, want ErrSignature", err)
			}
			layers, err := s.Layers()
			if err != nil || len(layers) != tc.layers {
				t.Fatalf("layers %d, %v; want %d", len(layers), err, tc.layers)
			}
			d, err := Digest(raw)
			if err != nil || d.String() != tc.digest {
				t.Fatalf("Digest() = %s, %v", d, err)
			}
		})
	}
}

func TestQuayValidatedManifestContent(t *testing.T) {
	s, err := ParseSchema1(readVector(t, "quay-schema1-validated_manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := s.Layers()
	empty := 0
	for _, l := range layers {
		if l.BlobSum == EmptyLayerDigest {
			empty++
		}
	}
	if empty < 2 {
		t.Fatalf("%d empty-layer blobs, want several", empty)
	}
	leaf := layers[len(layers)-1].V1
	if !strings.HasPrefix(leaf.Created, "2018-08-13") {
		t.Fatalf("leaf created %q", leaf.Created)
	}
	if s.Labels()["foo"] != "bar" {
		t.Fatalf("leaf labels %v", s.Labels())
	}
	for i := 1; i < len(layers); i++ {
		if layers[i].V1.Parent != layers[i-1].V1.ID {
			t.Fatalf("layer %d parent chain broken", i)
		}
	}
}

func TestUnencodedUnicode(t *testing.T) {
	raw := readVector(t, "quay-schema1-unencoded_unicode.json")
	if !bytes.Contains(raw, []byte("Sômé guy")) {
		t.Fatal("vector lost its raw UTF-8")
	}
	s, err := ParseSchema1(raw)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := s.Layers()
	if got := layers[len(layers)-1].V1.Author; got != "Sômé guy" {
		t.Fatalf("leaf author %q", got)
	}
}

func TestSimpleBadSig(t *testing.T) {
	raw := readVector(t, "quay-schema1-simple-badsig.json")
	s, err := ParseSchema1(raw)
	if err != nil {
		t.Fatalf("parse must succeed: %v", err)
	}
	if got := s.Digest(); !strings.HasPrefix(got.String(), "sha256:7681597a") || !strings.HasSuffix(got.String(), "d44ae") {
		t.Fatalf("payload digest %s", got)
	}
	if _, err := s.Verify(); !errors.Is(err, ErrSignature) {
		t.Fatalf("verify = %v, want ErrSignature", err)
	}
	if _, err := s.Layers(); err == nil {
		t.Fatal("layers of an unverifiable payload must not be exposed")
	}
	if s.Name() != "" || len(s.References()) != 0 {
		t.Fatal("fields of an unverifiable payload must not be exposed")
	}
}

func TestMobyBadManifest(t *testing.T) {
	raw := readVector(t, "moby-schema1-bad_manifest.json")
	p, err := Schema1Payload(raw)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(p)
	if !strings.HasPrefix(d.String(), "sha256:4e995822") || !strings.HasSuffix(d.String(), "3927") {
		t.Fatalf("payload digest %s", d)
	}
	if d.String() == "sha256:02fee8c3220ba806531f606525eceb83f4feb654f62b207191b1c9209188dedd" {
		t.Fatal("tampered manifest kept the good digest")
	}
	if _, err := ParseSchema1(raw); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "schemaVersion") {
		t.Fatalf("parse = %v, want schemaVersion ErrInvalid", err)
	}
}

// extraData builds moby's extra_data_manifest: good_manifest with a second
// fsLayers key after the signed region (CVE-2014-8179).
func extraData(t testing.TB) []byte {
	good := readVector(t, "moby-schema1-good_manifest.json")
	i := bytes.Index(good, []byte(`"signatures"`))
	if i < 0 {
		t.Fatal("no signatures key")
	}
	inj := []byte(`"fsLayers": [
      {
         "blobSum": "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      },
      {
         "blobSum": "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      }
   ],
   `)
	out := append(append(append([]byte{}, good[:i]...), inj...), good[i:]...)
	return out
}

func TestCVE2014_8179ExtraData(t *testing.T) {
	raw := extraData(t)
	if len(raw) != 4089 {
		t.Logf("built extra_data_manifest is %d bytes (moby's is 4089)", len(raw))
	}
	// The permissive payload rebuild (what libtrust does) shows the injection
	// sits outside the signed region; Schema1Payload itself refuses duplicates.
	var outer struct {
		Signatures json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &outer); err != nil {
		t.Fatal(err)
	}
	p, _, err := jwsPayload(raw, outer.Signatures)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Schema1Payload(raw); !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("Schema1Payload = %v, want ErrDuplicateKey", err)
	}
	if d := digest.FromBytes(p).String(); d != "sha256:02fee8c3220ba806531f606525eceb83f4feb654f62b207191b1c9209188dedd" {
		t.Fatalf("payload digest %s: the injection must sit outside the signed region", d)
	}
	s, err := ParseSchema1(raw)
	if err == nil {
		layers, _ := s.Layers()
		for _, l := range layers {
			if strings.Contains(l.BlobSum.String(), "ffff") {
				t.Fatalf("unsigned layer %s reported next to digest %s", l.BlobSum, s.Digest())
			}
		}
		return
	}
	if !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("parse = %v, want ErrDuplicateKey", err)
	}
}

func TestInvalidSignaturesContainer(t *testing.T) {
	raw := readVector(t, "cimage-schema1-invalid-signatures.manifest.json")
	if _, err := Digest(raw); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Digest = %v, want ErrInvalid", err)
	}
	if _, err := Schema1Payload(raw); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Schema1Payload = %v, want ErrInvalid", err)
	}
}

func TestSchema2Vectors(t *testing.T) {
	for _, tc := range []struct{ file, digest string }{
		{"quay-schema2-simple.json", "sha256:1f0aa5e75dcaae21d3514eaa8f70bc33bb7e7dd00f755863c8ae2f40a7105f2e"},
		{"cimage-schema2-v2s2.manifest.json", "sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55"},
	} {
		m, err := Parse(readVector(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if m.Kind() != KindDockerV2 || m.Digest().String() != tc.digest {
			t.Fatalf("%s: kind %s digest %s", tc.file, m.Kind(), m.Digest())
		}
		if _, err := Parse(readVector(t, tc.file), WithMediaType(MediaTypeDockerV2)); err != nil {
			t.Fatalf("%s with declared type: %v", tc.file, err)
		}
	}
}

func TestSchema2ConfigDigestNotSize(t *testing.T) {
	m, err := Parse(readVector(t, "quay-schema2-simple.json"))
	if err != nil {
		t.Fatal(err)
	}
	img := m.(*Image)
	cfg := readVector(t, "quay-schema2-simple.config.json")
	if img.Config().Size != int64(len(cfg)) || img.Config().Size != 1977 {
		t.Fatalf("config size %d vs %d: the vector is about size matching", img.Config().Size, len(cfg))
	}
	if !strings.HasPrefix(img.Config().Digest.String(), "sha256:e7a06c2e") {
		t.Fatalf("config digest %s", img.Config().Digest)
	}
	if d := digest.FromBytes(cfg).String(); d != "sha256:6ae52d9ed6d471cb8c8819a419063f9eb2f3ab4da4b5fef835445ecd64a84e4c" {
		t.Fatalf("config bytes digest %s", d)
	}
	if err := img.VerifyConfig(cfg); !errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("VerifyConfig = %v, want a digest (not size) mismatch", err)
	}
}

func TestManifestListVector(t *testing.T) {
	raw := readVector(t, "cimage-list-v2list.manifest.json")
	m, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind() != KindDockerList || m.Digest().String() != "sha256:ae55d2bdfcc9f24b2ac571f0081a64d6e6089b2c5e503ff3b718a646c26cbd3d" {
		t.Fatalf("kind %s digest %s", m.Kind(), m.Digest())
	}
	idx := m.(*Index)
	var plats []string
	for _, c := range idx.Manifests() {
		if c.MediaType != MediaTypeSchema1 {
			t.Fatalf("child type %s", c.MediaType)
		}
		p := c.Platform.Architecture
		if c.Platform.Variant != "" {
			p += "/" + c.Platform.Variant
		}
		plats = append(plats, p)
	}
	if got := strings.Join(plats, ","); got != "ppc64le,amd64,s390x,arm/armv7,arm64/armv8" {
		t.Fatalf("platforms %s", got)
	}
	d, err := idx.Select(Platform{OS: "linux", Architecture: "amd64"})
	if err != nil || d.Platform.Architecture != "amd64" {
		t.Fatalf("select amd64: %+v, %v", d, err)
	}
}

func TestOCIIndexAndMismatchedChild(t *testing.T) {
	raw := readVector(t, "ggcr-oci-index-05f95b26.json")
	m, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind() != KindOCIIndex || m.Digest().String() != "sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5" {
		t.Fatalf("kind %s digest %s", m.Kind(), m.Digest())
	}
	idx := m.(*Index)
	kids := idx.Manifests()
	if len(kids) != 1 || kids[0].Size != 423 || kids[0].Annotations["org.opencontainers.image.ref.name"] != "1" {
		t.Fatalf("children %+v", kids)
	}
	child := readVector(t, "ggcr-docker-manifest-eebff607.json")
	if d := digest.FromBytes(child).String(); d != "sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650" {
		t.Fatalf("child digest %s", d)
	}
	// Size and digest match, but the body says docker v2 while the index
	// says OCI manifest: refused.
	if _, err := idx.Child(kids[0], child); !errors.Is(err, ErrMediaType) {
		t.Fatalf("Child = %v, want ErrMediaType", err)
	}
	// On its own the child is a fine docker v2 manifest.
	cm, err := Parse(child)
	if err != nil || cm.Kind() != KindDockerV2 {
		t.Fatalf("child alone: %v", err)
	}
}

func TestOCIArtifactNoMime(t *testing.T) {
	raw := readVector(t, "ggcr-oci-artifact-nomime-b544f71e.json")
	m, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind() != KindOCIManifest || m.Digest().String() != "sha256:b544f71ecd82372bc9a3c0dbef378abfd2734fe437df81ff6e242a0d720d8e3e" {
		t.Fatalf("kind %s digest %s", m.Kind(), m.Digest())
	}
	img := m.(*Image)
	if !img.IsArtifact() || img.ArtifactType() != "application/vnd.cncf.helm.config.v1+json" {
		t.Fatalf("artifact %v %q", img.IsArtifact(), img.ArtifactType())
	}
	if img.Config().Size != 3 || img.Layers()[0].MediaType != "application/tar+gzip" {
		t.Fatalf("descriptors %+v %+v", img.Config(), img.Layers())
	}
	if err := img.VerifyConfig([]byte("{}\n")); !errors.Is(err, ErrDigestMismatch) {
		t.Logf("helm config guess: %v", err)
	}
}
