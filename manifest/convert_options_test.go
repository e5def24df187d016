package manifest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestConvert drives every conversion Convert offers and each refusal
// through its options: what comes out, whether it is signed, the config it
// creates, and which input error a missing option gives.
func TestConvert(t *testing.T) {
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ti := newTestImage(t, KindDockerV2)
	// The config is a blob too, for Convert to fetch.
	ti.blobs[digest.FromBytes(ti.config)] = ti.config
	img, err := Parse(ti.manifest)
	if err != nil {
		t.Fatal(err)
	}
	unsignedS1, err := ToSchema1(img.(*Image), ti.config, "trainyard/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	signedS1, err := SignSchema1(unsignedS1, key)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := Parse(signedS1)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := Parse([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	full := ConvertOptions{Blobs: ti.fetcher(), Name: "trainyard/app", Tag: "v1", Key: key}
	unsignedOpts := full
	unsignedOpts.Key = nil
	noName := full
	noName.Tag = ""
	noBlobs := full
	noBlobs.Blobs = nil
	givenConfig := noBlobs
	givenConfig.Config = ti.config
	wrongConfig := noBlobs
	wrongConfig.Config = []byte(`{}`)
	tinyLimit := full
	tinyLimit.MaxConfigSize = 10

	for _, tc := range []struct {
		name  string
		m     Manifest
		to    Kind
		opts  ConvertOptions
		want  Kind // kind of the output, parsed back
		check func(t *testing.T, c *Converted)
		input string // InputError.Input expected
		err   error  // errors.Is expected
	}{
		{name: "schema2 to schema1 signed", m: img, to: KindSchema1, opts: full, want: KindSchema1, check: func(t *testing.T, c *Converted) {
			s, _ := ParseSchema1(c.Manifest)
			if _, err := s.Verify(); err != nil || c.Unsigned || c.Config != nil {
				t.Fatalf("verify %v, unsigned %v, config %d bytes", err, c.Unsigned, len(c.Config))
			}
		}},
		{name: "schema2 to schema1 unsigned", m: img, to: KindSchema1, opts: unsignedOpts, want: KindSchema1, check: func(t *testing.T, c *Converted) {
			if !c.Unsigned || !bytes.Equal(c.Manifest, unsignedS1) {
				t.Fatalf("unsigned %v, same bytes as ToSchema1 %v", c.Unsigned, bytes.Equal(c.Manifest, unsignedS1))
			}
		}},
		{name: "config given, no blob source", m: img, to: KindSchema1, opts: givenConfig, want: KindSchema1},
		{name: "schema2 to oci", m: img, to: KindOCIManifest, opts: ConvertOptions{}, want: KindOCIManifest},
		{name: "schema1 to oci", m: s1, to: KindOCIManifest, opts: full, want: KindOCIManifest, check: func(t *testing.T, c *Converted) {
			back, _ := Parse(c.Manifest, WithMediaType(MediaTypeOCIManifest))
			if err := back.(*Image).VerifyConfig(c.Config); err != nil {
				t.Fatalf("created config does not match the manifest: %v", err)
			}
		}},
		{name: "schema1 to schema1 unchanged", m: s1, to: KindSchema1, opts: unsignedOpts, want: KindSchema1, check: func(t *testing.T, c *Converted) {
			if !bytes.Equal(c.Manifest, signedS1) || c.Unsigned {
				t.Fatal("schema1 without a key was not passed through unchanged")
			}
		}},
		{name: "schema1 re-signed", m: s1, to: KindSchema1, opts: full, want: KindSchema1, check: func(t *testing.T, c *Converted) {
			if bytes.Equal(c.Manifest, signedS1) {
				t.Fatal("not re-signed")
			}
			if d, _ := Parse(c.Manifest); d.Digest() != s1.Digest() {
				t.Fatal("re-signing changed the digest")
			}
		}},
		{name: "no name", m: img, to: KindSchema1, opts: noName, input: "name", err: ErrNeedInput},
		{name: "no blob source for the config", m: img, to: KindSchema1, opts: noBlobs, input: "config", err: ErrNeedInput},
		{name: "config over the limit", m: img, to: KindSchema1, opts: tinyLimit, input: "config", err: ErrTooLarge},
		{name: "wrong config", m: img, to: KindSchema1, opts: wrongConfig, err: ErrDigestMismatch},
		{name: "no blob source for the layers", m: s1, to: KindDockerV2, opts: noBlobs, input: "layers", err: ErrNeedInput},
		{name: "index", m: idx, to: KindOCIManifest, opts: full, err: ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Convert(ctx, tc.m, tc.to, tc.opts)
			if tc.err != nil || tc.input != "" {
				var ie *InputError
				if tc.input != "" && (!errors.As(err, &ie) || ie.Input != tc.input) {
					t.Fatalf("error %v, want an InputError for %s", err, tc.input)
				}
				if tc.input == "" && errors.As(err, &ie) {
					t.Fatalf("error %v is an InputError", err)
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mt := map[Kind]string{KindSchema1: "", KindDockerV2: MediaTypeDockerV2, KindOCIManifest: MediaTypeOCIManifest}[tc.want]
			var popts []Option
			if mt != "" {
				popts = append(popts, WithMediaType(mt))
			}
			out, err := Parse(c.Manifest, popts...)
			if err != nil || out.Kind() != tc.want {
				t.Fatalf("output: %v %v, want %s", out, err, tc.want)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}
