package manifest_test

import (
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
