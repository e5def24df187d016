package manifest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestJWSContainerRefusals covers the signature-container checks that
// libtrust or Quay lack (Quay turns several of them into HTTP 500s).
func TestJWSContainerRefusals(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signed, err := SignSchema1(sampleSchema1(t), key)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	json.Unmarshal(signed, &doc)
	var sigs []map[string]any
	json.Unmarshal(doc["signatures"], &sigs)
	protected := sigs[0]["protected"].(string)
	fl := bytes.LastIndex(signed, []byte(",\n   \"signatures\""))

	withSigs := func(mut func(s []map[string]any) []map[string]any) []byte {
		var cp []map[string]any
		json.Unmarshal(doc["signatures"], &cp)
		cp = mut(cp)
		m, _ := json.MarshalIndent(cp, "   ", "   ")
		return append(append(append([]byte{}, signed[:fl]...), []byte(",\n   \"signatures\": ")...), append(m, '\n', '}')...)
	}
	hdr := func(h string) string { return b64encode([]byte(h)) }
	tests := []struct {
		name string
		doc  []byte
		want error
	}{
		{"x5c only", withSigs(func(s []map[string]any) []map[string]any {
			h := s[0]["header"].(map[string]any)
			delete(h, "jwk")
			h["x5c"] = []string{"MIIB"}
			return s
		}), ErrUnsupported},
		{"no jwk", withSigs(func(s []map[string]any) []map[string]any {
			delete(s[0]["header"].(map[string]any), "jwk")
			return s
		}), ErrInvalid},
		{"empty signature", withSigs(func(s []map[string]any) []map[string]any { s[0]["signature"] = ""; return s }), ErrInvalid},
		{"protected not base64", withSigs(func(s []map[string]any) []map[string]any { s[0]["protected"] = "!!"; return s }), ErrInvalid},
		{"formatLength missing", withSigs(func(s []map[string]any) []map[string]any {
			s[0]["protected"] = hdr(`{"formatTail":"Cn0"}`)
			return s
		}), ErrInvalid},
		{"formatLength negative", withSigs(func(s []map[string]any) []map[string]any {
			s[0]["protected"] = hdr(`{"formatLength":-5,"formatTail":"Cn0"}`)
			return s
		}), ErrInvalid},
		{"formatLength beyond end", withSigs(func(s []map[string]any) []map[string]any {
			s[0]["protected"] = hdr(`{"formatLength":999999,"formatTail":"Cn0"}`)
			return s
		}), ErrInvalid},
		{"formatLength string", withSigs(func(s []map[string]any) []map[string]any {
			s[0]["protected"] = hdr(`{"formatLength":"12","formatTail":"Cn0"}`)
			return s
		}), ErrInvalid},
		{"crit header", withSigs(func(s []map[string]any) []map[string]any {
			s[0]["protected"] = hdr(`{"formatLength":10,"formatTail":"Cn0","crit":["x"]}`)
			return s
		}), ErrUnsupported},
		{"disagreeing signatures", withSigs(func(s []map[string]any) []map[string]any {
			second := map[string]any{"header": s[0]["header"], "signature": s[0]["signature"],
				"protected": hdr(`{"formatLength":10,"formatTail":"Cn0"}`)}
			return append(s, second)
		}), ErrInvalid},
		{"protected alg differs", withSigs(func(s []map[string]any) []map[string]any {
			var h map[string]any
			raw, _ := b64decode(protected)
			json.Unmarshal(raw, &h)
			h["alg"] = "RS256"
			b, _ := json.Marshal(h)
			s[0]["protected"] = b64encode(b)
			return s
		}), ErrInvalid},
	}
	for _, tc := range tests {
		if _, err := ParseSchema1(tc.doc); !errors.Is(err, tc.want) {
			t.Errorf("%s: ParseSchema1 = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A valid second signature by another key: both must verify.
	key2, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	other, _ := SignSchema1(sampleSchema1(t), key2, WithSignTime(timeZero))
	var odoc map[string]json.RawMessage
	json.Unmarshal(other, &odoc)
	var osigs []map[string]any
	json.Unmarshal(odoc["signatures"], &osigs)
	two := withSigs(func(s []map[string]any) []map[string]any { return append(s, osigs[0]) })
	s, err := ParseSchema1(two)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := s.Verify()
	if err != nil || len(infos) != 2 || infos[1].Alg != "ES384" {
		t.Fatalf("two signatures: %v %+v", err, infos)
	}
	// Break the second one only: the whole manifest fails.
	osigs[0]["signature"] = sigs[0]["signature"]
	s, _ = ParseSchema1(withSigs(func(s []map[string]any) []map[string]any { return append(s, osigs[0]) }))
	if _, err := s.Verify(); !errors.Is(err, ErrSignature) {
		t.Fatalf("one bad signature of two: %v", err)
	}
}

var timeZero = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
