package cli

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/trainyard/trainyard/registry/server"
)

const vecDir = "../../manifest/testdata"

func vec(n string) string { return filepath.Join(vecDir, n) }

// oneLineErr asserts the CLI failed with exit 1 and a single error line.
func oneLineErr(t *testing.T, code int, stderr, want string, args []string) {
	t.Helper()
	if code != 1 {
		t.Fatalf("%v: exit %d, want 1 (stderr %q)", args, code, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "trainyard: ") {
		t.Fatalf("%v: stderr %q is not one error line", args, stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Fatalf("%v: stderr %q does not name %q", args, stderr, want)
	}
}

func TestManifestDigestVectors(t *testing.T) {
	for file, want := range map[string]string{
		"quay-schema1-validated_manifest.json":   "sha256:b5dc4f63fdbd64f34f2314c0747ef81008f9fcddce4edfc3fd0e8ec8b358d571",
		"quay-schema1-unencoded_unicode.json":    "sha256:5d8a0f34744a39bf566ba430251adc0cc86587f86aed3ac2acfb897f349777bc",
		"moby-schema1-good_manifest.json":        "sha256:02fee8c3220ba806531f606525eceb83f4feb654f62b207191b1c9209188dedd",
		"cimage-schema1-v2s1.manifest.json":      "sha256:7364fea9d84ee548ab67d4c46c6006289800c98de3fbf8c0a97138dfcc23f000",
		"quay-schema2-simple.json":               "sha256:1f0aa5e75dcaae21d3514eaa8f70bc33bb7e7dd00f755863c8ae2f40a7105f2e",
		"cimage-schema2-v2s2.manifest.json":      "sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55",
		"cimage-list-v2list.manifest.json":       "sha256:ae55d2bdfcc9f24b2ac571f0081a64d6e6089b2c5e503ff3b718a646c26cbd3d",
		"ggcr-oci-index-05f95b26.json":           "sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5",
		"ggcr-docker-manifest-eebff607.json":     "sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650",
		"ggcr-oci-artifact-nomime-b544f71e.json": "sha256:b544f71ecd82372bc9a3c0dbef378abfd2734fe437df81ff6e242a0d720d8e3e",
	} {
		code, out, stderr := execRoot(t, "", "manifest", "digest", vec(file))
		if code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("%s: exit %d out %q stderr %q, want %s", file, code, out, stderr, want)
		}
	}
	raw, _ := os.ReadFile(vec("quay-schema2-simple.json"))
	code, out, _ := execRoot(t, string(raw), "manifest", "digest", "--algorithm", "sha512", "-")
	if code != 0 || !strings.HasPrefix(out, "sha512:") || len(strings.TrimSpace(out)) != 7+128 {
		t.Fatalf("sha512 digest: %d %q", code, out)
	}
}

func TestManifestVerifyVerdicts(t *testing.T) {
	ok := [][]string{
		{"manifest", "verify", vec("quay-schema1-validated_manifest.json")},
		{"manifest", "verify", vec("moby-schema1-good_manifest.json"), "--digest", "sha256:02fee8c3220ba806531f606525eceb83f4feb654f62b207191b1c9209188dedd"},
		{"manifest", "verify", vec("quay-schema1-unencoded_unicode.json")},
		{"manifest", "verify", vec("quay-schema2-simple.json")},
		{"manifest", "verify", vec("ggcr-oci-index-05f95b26.json")},
		{"manifest", "verify", vec("cimage-list-v2list.manifest.json")},
	}
	for _, args := range ok {
		if code, out, stderr := execRoot(t, "", args...); code != 0 || !strings.HasPrefix(out, "verified ") {
			t.Errorf("%v: exit %d out %q stderr %q", args, code, out, stderr)
		}
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"manifest", "verify", vec("quay-schema1-simple-badsig.json")}, "signature"},
		{[]string{"manifest", "verify", vec("moby-schema1-bad_manifest.json")}, "schemaVersion"},
		{[]string{"manifest", "verify", vec("cimage-schema1-v2s1.manifest.json")}, "signature"},
		{[]string{"manifest", "verify", vec("cimage-schema1-invalid-signatures.manifest.json")}, "signatures is not an array"},
		{[]string{"manifest", "verify", vec("quay-schema2-simple.json"), "--config", vec("quay-schema2-simple.config.json")}, "digest mismatch"},
		{[]string{"manifest", "verify", vec("ggcr-docker-manifest-eebff607.json"), "--media-type", "application/vnd.oci.image.manifest.v1+json"}, "media type"},
		{[]string{"manifest", "verify", vec("quay-schema1-validated_manifest.json"), "--digest", "sha256:02fee8c3220ba806531f606525eceb83f4feb654f62b207191b1c9209188dedd"}, "digest mismatch"},
		{[]string{"manifest", "verify", vec("quay-schema1-validated_manifest.json"), "--max-size", "100"}, "too large"},
		{[]string{"manifest", "verify", "-"}, "empty document"},
		{[]string{"manifest", "verify", "no-such-file.json"}, "no such file"},
	}
	for _, tc := range bad {
		code, _, stderr := execRoot(t, "", tc.args...)
		oneLineErr(t, code, stderr, tc.want, tc.args)
	}
	for _, junk := range []string{"{", "[]", "null", `{"schemaVersion":2,"config":{},"manifests":[]}`, "\xff\xfe", `{"schemaVersion":1,"signatures":[]}`} {
		args := []string{"manifest", "verify", "-"}
		code, _, stderr := execRoot(t, junk, args...)
		oneLineErr(t, code, stderr, "", append(args, junk))
	}
	good, _ := os.ReadFile(vec("moby-schema1-good_manifest.json"))
	extra := bytes.Replace(good, []byte(`"signatures"`), []byte(`"fsLayers": [{"blobSum": "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"}],
   "signatures"`), 1)
	code, _, stderr := execRoot(t, string(extra), "manifest", "verify", "-")
	oneLineErr(t, code, stderr, "duplicate JSON key", []string{"extra_data"})
}

func TestManifestInspect(t *testing.T) {
	code, out, stderr := execRoot(t, "", "manifest", "inspect", vec("quay-schema1-unencoded_unicode.json"))
	if code != 0 || !strings.Contains(out, `"author": "Sômé guy"`) || !strings.Contains(out, `"alg": "ES256"`) {
		t.Fatalf("exit %d stderr %q out %s", code, stderr, out)
	}
	code, out, _ = execRoot(t, "", "manifest", "inspect", vec("ggcr-oci-artifact-nomime-b544f71e.json"))
	if code != 0 || !strings.Contains(out, `"artifactType": "application/vnd.cncf.helm.config.v1+json"`) {
		t.Fatalf("artifact inspect: %s", out)
	}
}

func TestManifestSignVerifyTamper(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"ES256", "RS256"} {
		key := filepath.Join(dir, alg+".pem")
		if code, _, stderr := execRoot(t, "", "manifest", "keygen", "--alg", alg, "-o", key); code != 0 {
			t.Fatalf("keygen: %s", stderr)
		}
		signed := filepath.Join(dir, alg+".json")
		code, _, stderr := execRoot(t, "", "manifest", "sign", vec("cimage-schema1-v2s1.manifest.json"), "--key", key, "-o", signed)
		if code != 0 {
			t.Fatalf("sign: %s", stderr)
		}
		code, out, stderr := execRoot(t, "", "manifest", "verify", signed, "--digest", "sha256:7364fea9d84ee548ab67d4c46c6006289800c98de3fbf8c0a97138dfcc23f000")
		if code != 0 || !strings.Contains(out, "signature "+alg) {
			t.Fatalf("verify re-signed: %d %q %q", code, out, stderr)
		}
		b, _ := os.ReadFile(signed)
		i := bytes.Index(b, []byte(`"busybox"`))
		if i < 0 {
			i = bytes.Index(b, []byte(`"name": "`)) + 9
		}
		b[i+1] ^= 0x01
		code, _, stderr = execRoot(t, string(b), "manifest", "verify", "-")
		oneLineErr(t, code, stderr, "", []string{"tampered", alg})
	}
	code, _, stderr := execRoot(t, "", "manifest", "sign", vec("quay-schema2-simple.json"), "--key", filepath.Join(dir, "ES256.pem"))
	oneLineErr(t, code, stderr, "only schema1", []string{"sign schema2"})
}

// TestManifestRegistryConvert fetches a pushed image by reference, converts
// it to signed schema1 and back to OCI, reading blobs from the registry.
func TestManifestRegistryConvert(t *testing.T) {
	srv := testutil.Registry(t)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/trains/demo:v1"
	r, _ := name.ParseReference(ref, name.Insecure)
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	code, out, stderr := execRoot(t, "", "manifest", "digest", "--insecure", host+"/trains/demo@"+d.String())
	if code != 0 || strings.TrimSpace(out) != d.String() {
		t.Fatalf("digest by ref: %d %q %q", code, out, stderr)
	}
	code, _, stderr = execRoot(t, "", "manifest", "verify", "--insecure", ref)
	if code != 0 {
		t.Fatalf("verify by ref: %q", stderr)
	}
	// A tag that ends in .json (trainyard's TUF tags) is a reference, not a file.
	tuf, _ := name.ParseReference(host+"/trains/demo:1.root.json", name.Insecure)
	if err := remote.Write(tuf, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = execRoot(t, "", "manifest", "digest", "--insecure", tuf.String())
	if code != 0 || strings.TrimSpace(out) != d.String() {
		t.Fatalf("digest of %s: %d %q %q", tuf, code, out, stderr)
	}
	// A plain missing file name ending in .json stays a file error.
	code, _, stderr = execRoot(t, "", "manifest", "digest", "missing.json")
	if code == 0 || !strings.Contains(stderr, "missing.json") || !strings.Contains(stderr, "no such file") {
		t.Fatalf("missing file: %d %q", code, stderr)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	execRoot(t, "", "manifest", "keygen", "-o", key)
	s1 := filepath.Join(dir, "s1.json")
	code, _, stderr = execRoot(t, "", "manifest", "convert", "--insecure", ref, "--to", "schema1", "--key", key, "-o", s1)
	if code != 0 {
		t.Fatalf("convert to schema1: %s", stderr)
	}
	code, out, stderr = execRoot(t, "", "manifest", "verify", s1)
	if code != 0 || !strings.Contains(out, "docker schema1") {
		t.Fatalf("verify converted: %d %q %q", code, out, stderr)
	}
	oci := filepath.Join(dir, "oci.json")
	cfg := filepath.Join(dir, "config.json")
	code, _, stderr = execRoot(t, "", "manifest", "convert", s1, "--to", "oci", "--config-out", cfg, "-o", oci, "--insecure", "--blobs-from", host+"/trains/demo")
	if code != 0 {
		t.Fatalf("convert to oci: %s", stderr)
	}
	code, out, stderr = execRoot(t, "", "manifest", "verify", oci, "--config", cfg)
	if code != 0 || !strings.Contains(out, "config sha256:") {
		t.Fatalf("verify oci with config: %d %q %q", code, out, stderr)
	}
	// The layers survive the round trip by digest.
	layers, _ := img.Layers()
	got, _ := os.ReadFile(oci)
	for _, l := range layers {
		ld, _ := l.Digest()
		if !bytes.Contains(got, []byte(ld.String())) {
			t.Fatalf("layer %s missing after round trip", ld)
		}
	}
	code, _, stderr = execRoot(t, "", "manifest", "convert", s1, "--to", "oci", "--config-out", cfg)
	oneLineErr(t, code, stderr, "no blob source", []string{"convert without blobs"})
}

// TestManifestEmbeddedRegistry reads manifests from the real embedded
// registry (distribution/v3): an OCI image and an index, by tag and by digest.
func TestManifestEmbeddedRegistry(t *testing.T) {
	h, closeFn, err := server.NewHandler(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	srv := httptest.NewServer(h)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})
	r, _ := name.ParseReference(host+"/emb/idx:v1", name.Insecure)
	if err := remote.WriteIndex(r, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	id, _ := idx.Digest()
	md, _ := img.Digest()
	code, out, stderr := execRoot(t, "", "manifest", "inspect", "--insecure", host+"/emb/idx:v1")
	if code != 0 || !strings.Contains(out, `"kind": "OCI index"`) || !strings.Contains(out, md.String()) || !strings.Contains(out, id.String()) {
		t.Fatalf("inspect index: %d %s %s", code, out, stderr)
	}
	code, out, stderr = execRoot(t, "", "manifest", "verify", "--insecure", host+"/emb/idx@"+md.String())
	if code != 0 || !strings.Contains(out, "OCI manifest "+md.String()) {
		t.Fatalf("verify child by digest: %d %s %s", code, out, stderr)
	}
}
