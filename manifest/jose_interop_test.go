package manifest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// joseSign signs a schema1 payload with go-jose (a second implementation)
// in libtrust's layout, so that trainyard's verifier is checked against
// signatures it did not make, for every algorithm it accepts.
func joseSign(t *testing.T, payload []byte, alg jose.SignatureAlgorithm, key any, pub any) []byte {
	t.Helper()
	fl := len(payload) - 2 // payload ends with "\n}"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, &jose.SignerOptions{
		ExtraHeaders: map[jose.HeaderKey]any{"formatLength": fl, "formatTail": "Cn0", "time": "2026-01-01T00:00:00Z"},
	})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	var flat struct {
		Protected string `json:"protected"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal([]byte(obj.FullSerialize()), &flat); err != nil {
		t.Fatal(err)
	}
	jwkJSON, err := jose.JSONWebKey{Key: pub}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ := json.MarshalIndent([]map[string]any{{
		"header":    map[string]any{"jwk": json.RawMessage(jwkJSON), "alg": string(alg)},
		"signature": flat.Signature,
		"protected": flat.Protected,
	}}, "   ", "   ")
	out := append([]byte{}, payload[:fl]...)
	out = append(out, []byte(",\n   \"signatures\": ")...)
	out = append(out, sigs...)
	return append(out, []byte("\n}")...)
}

func TestVerifyGoJoseSignatures(t *testing.T) {
	payload := sampleSchema1(t)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	e384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	e521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	e256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		alg     jose.SignatureAlgorithm
		key     any
		pub     any
		wantErr error
	}{
		{jose.RS256, rk, &rk.PublicKey, nil},
		{jose.RS384, rk, &rk.PublicKey, nil},
		{jose.RS512, rk, &rk.PublicKey, nil},
		{jose.ES256, e256, &e256.PublicKey, nil},
		{jose.ES384, e384, &e384.PublicKey, nil},
		{jose.ES512, e521, &e521.PublicKey, nil},
		{jose.PS256, rk, &rk.PublicKey, ErrSignature}, // outside the closed set
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			signed := joseSign(t, payload, tc.alg, tc.key, tc.pub)
			s, err := ParseSchema1(signed)
			if err != nil {
				t.Fatal(err)
			}
			if s.Digest() != digestOf(payload) {
				t.Fatal("payload not recovered")
			}
			_, err = s.Verify()
			if tc.wantErr == nil && err != nil {
				t.Fatalf("verify: %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("verify = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func digestOf(b []byte) any { d, _ := Compute(SHA256, b); return d }
