package manifest_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/trainyard/trainyard/manifest"
)

func ExampleParse() {
	raw, _ := os.ReadFile("testdata/moby-schema1-good_manifest.json")
	m, err := manifest.Parse(raw)
	if err != nil {
		fmt.Println(err)
		return
	}
	s := m.(*manifest.Schema1)
	_, err = s.Verify()
	layers, _ := s.Layers()
	fmt.Println(m.Kind(), m.Digest())
	fmt.Println("signatures ok:", err == nil, "base layer:", layers[0].BlobSum.Encoded()[:12])
	// Output:
	// docker schema1 sha256:02fee8c3220ba806531f606525eceb83f4feb654f62b207191b1c9209188dedd
	// signatures ok: true base layer: 03f4658f8b78
}

func ExampleSignSchema1() {
	raw, _ := os.ReadFile("testdata/quay-schema1-validated_manifest.json")
	key, _, _ := manifest.GenerateKey("ES256")
	signed, err := manifest.SignSchema1(raw, key)
	if err != nil {
		fmt.Println(err)
		return
	}
	s, _ := manifest.ParseSchema1(signed)
	infos, err := s.Verify()
	fmt.Println(s.Digest(), infos[0].Alg, err)
	// Output:
	// sha256:b5dc4f63fdbd64f34f2314c0747ef81008f9fcddce4edfc3fd0e8ec8b358d571 ES256 <nil>
}

func ExampleImage_VerifyConfig() {
	raw, _ := os.ReadFile("testdata/quay-schema2-simple.json")
	cfg, _ := os.ReadFile("testdata/quay-schema2-simple.config.json")
	m, _ := manifest.Parse(raw, manifest.WithMediaType(manifest.MediaTypeDockerV2))
	fmt.Println(m.(*manifest.Image).VerifyConfig(cfg) != nil)
	// Output:
	// true
}

// Convert a Docker schema2 manifest to OCI; converting to schema1 would
// also need ConvertOptions.Name, Tag and the config (Config or Blobs).
func ExampleConvert() {
	raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",` +
		`"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,` +
		`"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}`)
	m, err := manifest.Parse(raw)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := manifest.Convert(context.Background(), m, manifest.KindOCIManifest, manifest.ConvertOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	oci, _ := manifest.Parse(out.Manifest, manifest.WithMediaType(manifest.MediaTypeOCIManifest))
	fmt.Println(oci.Kind(), oci.(*manifest.Image).Config().Digest == m.(*manifest.Image).Config().Digest)
	_, err = manifest.Convert(context.Background(), m, manifest.KindSchema1, manifest.ConvertOptions{})
	var ie *manifest.InputError
	fmt.Println(errors.As(err, &ie), ie.Input)
	// Output:
	// OCI manifest true
	// true config
}
