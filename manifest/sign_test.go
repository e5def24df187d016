package manifest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/opencontainers/go-digest"
)

// joseVerify is an independent schema1 verifier: it rebuilds the payload with
// its own reading of the format and checks each signature with go-jose.
func joseVerify(signed []byte) error {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(signed, &doc); err != nil {
		return err
	}
	var sigs []struct {
		Header    json.RawMessage `json:"header"`
		Signature string          `json:"signature"`
		Protected string          `json:"protected"`
	}
	if err := json.Unmarshal(doc["signatures"], &sigs); err != nil || len(sigs) == 0 {
		return fmt.Errorf("signatures: %v", err)
	}
	for _, sg := range sigs {
		ph, err := base64.RawURLEncoding.DecodeString(sg.Protected)
		if err != nil {
			return err
		}
		var hdr struct {
			FormatLength int    `json:"formatLength"`
			FormatTail   string `json:"formatTail"`
		}
		if err := json.Unmarshal(ph, &hdr); err != nil {
			return err
		}
		tail, err := base64.RawURLEncoding.DecodeString(hdr.FormatTail)
		if err != nil || hdr.FormatLength > len(signed) || hdr.FormatLength < 0 {
			return fmt.Errorf("bad format header")
		}
		payload := append(append([]byte{}, signed[:hdr.FormatLength]...), tail...)
		flat, _ := json.Marshal(map[string]any{
			"payload":   base64.RawURLEncoding.EncodeToString(payload),
			"protected": sg.Protected,
			"header":    sg.Header,
			"signature": sg.Signature,
		})
		obj, err := jose.ParseSignedJSON(string(flat), []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256})
		if err != nil {
			return fmt.Errorf("go-jose parse: %w", err)
		}
		key := obj.Signatures[0].Unprotected.JSONWebKey
		if key == nil {
			return fmt.Errorf("no embedded jwk")
		}
		got, err := obj.Verify(key)
		if err != nil {
			return fmt.Errorf("go-jose verify: %w", err)
		}
		if !bytes.Equal(got, payload) {
			return fmt.Errorf("payload differs")
		}
	}
	return nil
}

func testKeys(t testing.TB) map[string]crypto.Signer {
	t.Helper()
	keys := map[string]crypto.Signer{}
	for alg, c := range map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[alg] = k
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys["RS256"] = rk
	return keys
}

func v1ID(s string) string { return digest.FromString(s).Encoded() }

// sampleSchema1 builds an unsigned two-layer manifest.
func sampleSchema1(t testing.TB) []byte {
	t.Helper()
	base, leaf := v1ID("base"), v1ID("leaf")
	out, err := NewSchema1Builder("trainyard/demo", "latest", "amd64").
		AddLayer(digest.FromString("layer-leaf"), fmt.Sprintf(`{"id":"%s","parent":"%s","created":"2026-01-02T03:04:05Z","author":"Sômé <ops>","container_config":{"Cmd":["/bin/sh","-c","echo hi"]},"config":{"Labels":{"k":"v"}}}`, leaf, base)).
		AddLayer(digest.FromString("layer-base"), fmt.Sprintf(`{"id":"%s","created":"2026-01-01T00:00:00Z"}`, base)).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSignVerifyRoundTrip(t *testing.T) {
	unsigned := sampleSchema1(t)
	u, err := ParseSchema1(unsigned)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Verify(); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned verify = %v", err)
	}
	for alg, key := range testKeys(t) {
		t.Run(alg, func(t *testing.T) {
			signed, err := SignSchema1(unsigned, key, WithSignTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseSchema1(signed)
			if err != nil {
				t.Fatal(err)
			}
			infos, err := s.Verify()
			if err != nil {
				t.Fatalf("trainyard verify: %v", err)
			}
			kid, _ := KeyID(key.Public())
			if len(infos) != 1 || infos[0].Alg != alg || infos[0].KeyID != kid || len(kid) != 59 {
				t.Fatalf("infos %+v kid %s", infos, kid)
			}
			if s.Digest() != u.Digest() {
				t.Fatalf("signing changed the digest: %s vs %s", s.Digest(), u.Digest())
			}
			if err := joseVerify(signed); err != nil {
				t.Fatalf("independent verify: %v", err)
			}
			// Tamper one byte inside the signed region: the tag.
			i := bytes.Index(signed, []byte(`"latest"`))
			bad := append([]byte{}, signed...)
			bad[i+1] = 'L'
			if ts, err := ParseSchema1(bad); err == nil {
				if _, err := ts.Verify(); !errors.Is(err, ErrSignature) {
					t.Fatalf("tampered tag verified: %v", err)
				}
			}
			if err := joseVerify(bad); err == nil {
				t.Fatal("go-jose accepted a tampered manifest")
			}
			// Tamper one byte of the signature value.
			j := bytes.Index(signed, []byte(`"signature": "`)) + len(`"signature": "`)
			bad = append([]byte{}, signed...)
			if bad[j+5] == 'A' {
				bad[j+5] = 'B'
			} else {
				bad[j+5] = 'A'
			}
			ts, err := ParseSchema1(bad)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ts.Verify(); !errors.Is(err, ErrSignature) {
				t.Fatalf("tampered signature verified: %v", err)
			}
			if err := joseVerify(bad); err == nil {
				t.Fatal("go-jose accepted a tampered signature")
			}
		})
	}
}

// Re-signing a vector keeps its digest: the signature never enters it.
func TestResignKeepsDigest(t *testing.T) {
	raw := readVector(t, "moby-schema1-good_manifest.json")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	out, err := SignSchema1(raw, key)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Digest(out)
	if err != nil || d.String() != "sha256:02fee8c3220ba806531f606525eceb83f4feb654f62b207191b1c9209188dedd" {
		t.Fatalf("digest %s %v", d, err)
	}
	if err := joseVerify(out); err != nil {
		t.Fatal(err)
	}
	// The vectors signed by Docker verify with go-jose too, which checks our
	// reading of libtrust's format against a second implementation.
	for _, f := range []string{"quay-schema1-validated_manifest.json", "quay-schema1-unencoded_unicode.json", "moby-schema1-good_manifest.json"} {
		if err := joseVerify(readVector(t, f)); err != nil {
			t.Errorf("%s: go-jose: %v", f, err)
		}
	}
	if err := joseVerify(readVector(t, "cimage-schema1-v2s1.manifest.json")); err == nil {
		t.Error("go-jose accepted v2s1, which does not verify")
	}
}

func TestVerifyRejects(t *testing.T) {
	unsigned := sampleSchema1(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signed, err := SignSchema1(unsigned, key)
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) []byte {
		if !bytes.Contains(signed, []byte(old)) {
			t.Fatalf("%q not in manifest", old)
		}
		return bytes.Replace(signed, []byte(old), []byte(new), 1)
	}
	// Algorithm swap: ES384 header on a P-256 key.
	s, err := ParseSchema1(replace(`"alg": "ES256"`, `"alg": "ES384"`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(); !errors.Is(err, ErrSignature) {
		t.Fatalf("alg swap: %v", err)
	}
	s, err = ParseSchema1(replace(`"alg": "ES256"`, `"alg": "none"`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(); !errors.Is(err, ErrSignature) {
		t.Fatalf("alg none: %v", err)
	}
	for name, doc := range map[string][]byte{
		"empty signatures":  append(append([]byte{}, unsigned[:len(unsigned)-2]...), []byte(",\n   \"signatures\": []\n}")...),
		"object signatures": append(append([]byte{}, unsigned[:len(unsigned)-2]...), []byte(",\n   \"signatures\": {}\n}")...),
		"schemaVersion 2":   bytes.Replace(unsigned, []byte(`"schemaVersion": 1`), []byte(`"schemaVersion": 2`), 1),
		"schemaVersion 1.0": bytes.Replace(unsigned, []byte(`"schemaVersion": 1`), []byte(`"schemaVersion": 1.0`), 1),
		"history short":     shortHistory(t, unsigned),
		"case variant":      bytes.Replace(unsigned, []byte(`"tag"`), []byte(`"Tag"`), 1),
	} {
		if _, err := Parse(doc); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse = %v, want ErrInvalid", name, err)
		}
	}
}

func shortHistory(t testing.TB, unsigned []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(unsigned, &m); err != nil {
		t.Fatal(err)
	}
	m["history"] = m["history"].([]any)[:1]
	out, _ := json.MarshalIndent(m, "", "   ")
	return out
}

func TestBuilderRefusesBrokenChain(t *testing.T) {
	_, err := NewSchema1Builder("a/b", "t", "").
		AddLayer(digest.FromString("x"), fmt.Sprintf(`{"id":"%s","parent":"%s"}`, v1ID("x"), v1ID("nope"))).
		AddLayer(digest.FromString("y"), fmt.Sprintf(`{"id":"%s"}`, v1ID("y"))).Build()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "parent") {
		t.Fatalf("Build = %v", err)
	}
}
