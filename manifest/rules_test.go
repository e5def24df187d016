package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

const (
	dgA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dgB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func ociManifest(extra string) []byte {
	return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":10,"digest":"` + dgA + `"},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":20,"digest":"` + dgB + `"}]` + extra + `}`)
}

func TestStrictRules(t *testing.T) {
	good := ociManifest("")
	if _, err := Parse(good); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	rep := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("%q not found", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	tests := []struct {
		name string
		doc  []byte
		opts []Option
		want error
	}{
		// CVE-2021-41190: manifest and index at once, with or without mediaType.
		{"manifest with manifests", ociManifest(`,"manifests":[]`), nil, ErrAmbiguous},
		{"no mediaType, both shapes", []byte(`{"schemaVersion":2,"config":{"mediaType":"a/b","size":1,"digest":"` + dgA + `"},"layers":[],"manifests":[]}`), nil, ErrAmbiguous},
		{"index with layers", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"layers":[]}`), nil, ErrAmbiguous},
		{"declared index, manifest body", good, []Option{WithMediaType(MediaTypeOCIIndex)}, ErrMediaType},
		{"declared docker, OCI body", good, []Option{WithMediaType(MediaTypeDockerV2)}, ErrMediaType},
		{"declared unknown type", good, []Option{WithMediaType("text/plain")}, ErrMediaType},
		{"body mediaType unknown", rep(`"mediaType":"application/vnd.oci.image.manifest.v1+json"`, `"mediaType":"application/x-nope"`), nil, ErrMediaType},
		{"body claims schema1", rep(`"mediaType":"application/vnd.oci.image.manifest.v1+json"`, `"mediaType":"application/vnd.docker.distribution.manifest.v1+json"`), nil, ErrMediaType},
		{"docker without mediaType", []byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"` + dgA + `"},"layers":[]}`), []Option{WithMediaType(MediaTypeDockerV2)}, ErrMediaType},
		{"duplicate key", rep(`"schemaVersion":2,`, `"schemaVersion":2,"schemaVersion":2,`), nil, ErrDuplicateKey},
		{"nested duplicate", rep(`"size":20,`, `"size":20,"size":21,`), nil, ErrDuplicateKey},
		{"case variant key", rep(`"layers"`, `"Layers"`), nil, ErrInvalid},
		{"schemaVersion 3", rep(`"schemaVersion":2`, `"schemaVersion":3`), nil, ErrInvalid},
		{"schemaVersion string", rep(`"schemaVersion":2`, `"schemaVersion":"2"`), nil, ErrInvalid},
		{"negative size", rep(`"size":20`, `"size":-1`), nil, ErrInvalid},
		{"fractional size", rep(`"size":20`, `"size":20.5`), nil, ErrInvalid},
		{"uppercase digest", rep(dgB, strings.ToUpper(dgB[:7])+dgB[7:]), nil, ErrInvalid},
		{"short digest", rep(dgB, dgB[:70]), nil, ErrInvalid},
		{"md5 digest", rep(dgB, "md5:d41d8cd98f00b204e9800998ecf8427e"), nil, ErrUnsupported},
		{"bad media type", rep(`"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip"`, `"mediaType":"not a type"`), nil, ErrInvalid},
		{"non-layer type in OCI image", rep(`application/vnd.oci.image.layer.v1.tar+gzip`, "application/vnd.oci.image.config.v1+json"), nil, ErrMediaType},
		{"trailing data", append(append([]byte{}, good...), []byte(` {}`)...), nil, ErrInvalid},
		{"invalid utf8", rep(`"size":10`, "\"size\":10,\"annotations\":{\"a\":\"\xff\"}"), nil, ErrInvalid},
		{"empty config needs artifactType", rep(`application/vnd.oci.image.config.v1+json`, MediaTypeOCIEmpty), nil, ErrInvalid},
		{"subject not a manifest", ociManifest(`,"subject":{"mediaType":"text/plain","size":1,"digest":"` + dgA + `"}`), nil, ErrMediaType},
		{"bad url", rep(`"size":20,`, `"size":20,"urls":["file:///etc/passwd"],`), nil, ErrInvalid},
		{"data disagrees", rep(`"size":10,`, `"size":10,"data":"AAAA",`), nil, ErrDigestMismatch},
		{"too large", good, []Option{WithMaxSize(int64(len(good) - 1))}, ErrTooLarge},
		{"deep nesting", ociManifest(`,"annotations":{"a":"b"},"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100)), nil, ErrInvalid},
		{"docker list with OCI child", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"` + dgA + `","platform":{"architecture":"amd64","os":"linux"}}]}`), nil, ErrMediaType},
		{"docker list child without platform", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":1,"digest":"` + dgA + `"}]}`), nil, ErrInvalid},
		{"OCI index with layer child", []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","size":1,"digest":"` + dgA + `"}]}`), nil, ErrMediaType},
		{"docker with artifactType", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","artifactType":"a/b","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"` + dgA + `"},"layers":[]}`), nil, ErrInvalid},
	}
	for _, tc := range tests {
		_, err := Parse(tc.doc, tc.opts...)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Parse = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestAcceptedVariants(t *testing.T) {
	for name, doc := range map[string][]byte{
		"content-type parameters":       ociManifest(""),
		"annotations keep any key case": ociManifest(`,"annotations":{"Size":"1","size":"2"}`),
		"artifact with empty config": []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example+json",` +
			`"config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","data":"e30="},` +
			`"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"` + dgA + `"}}`),
		"sha512 layer": bytes.Replace(ociManifest(""), []byte(dgB), []byte("sha512:"+strings.Repeat("c", 128)), 1),
	} {
		opts := []Option{WithMediaType(MediaTypeOCIManifest + "; charset=utf-8")}
		if _, err := Parse(doc, opts...); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestReadLimit(t *testing.T) {
	big := bytes.Repeat([]byte(" "), DefaultMaxSize+1)
	if _, err := Read(bytes.NewReader(big)); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "4194304") {
		t.Fatalf("Read = %v", err)
	}
	if b, err := Read(bytes.NewReader(big), WithMaxSize(int64(len(big)))); err != nil || len(b) != len(big) {
		t.Fatalf("raised limit: %v", err)
	}
}

func TestDigestsAndVerifyContent(t *testing.T) {
	raw := ociManifest("")
	m, _ := Parse(raw)
	d512, err := m.DigestAlg(SHA512)
	if err != nil || d512.Algorithm() != SHA512 {
		t.Fatal(err)
	}
	if err := VerifyDigest(m, d512); err != nil {
		t.Fatal(err)
	}
	if err := VerifyDigest(m, digest.Digest("sha512:"+strings.Repeat("0", 128))); !errors.Is(err, ErrDigestMismatch) {
		t.Fatal(err)
	}
	data := []byte("hello")
	desc := Descriptor{MediaType: "a/b", Size: 5, Digest: SHA512.FromBytes(data)}
	if err := VerifyContent(desc, data); err != nil {
		t.Fatal(err)
	}
	if err := VerifyContent(desc, []byte("hellO")); !errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch) {
		t.Fatal(err)
	}
	if err := VerifyContent(desc, []byte("hello!")); !errors.Is(err, ErrSizeMismatch) {
		t.Fatal(err)
	}
	if _, err := ParseDigest("sha384:" + strings.Repeat("a", 96)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("sha384 accepted: %v", err)
	}
}

func TestIndexChildByDigest(t *testing.T) {
	child := ociManifest("")
	idx := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":%d,"digest":"%s"}]}`,
		len(child), digest.FromBytes(child)))
	m, err := Parse(idx)
	if err != nil {
		t.Fatal(err)
	}
	x := m.(*Index)
	desc := x.Manifests()[0]
	if _, err := x.Child(desc, child); err != nil {
		t.Fatal(err)
	}
	// Same size, other bytes: refused by digest.
	other := bytes.Replace(child, []byte(`"size":20`), []byte(`"size":21`), 1)
	if _, err := x.Child(desc, other); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Child = %v", err)
	}
	stranger := desc
	stranger.Digest = digest.FromString("x")
	if _, err := x.Child(stranger, child); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Child of a stranger = %v", err)
	}
}
