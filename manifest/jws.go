package manifest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// The JWS algorithms schema1 signatures may use. The set is closed: EC
// algorithms are bound to their curve (as libtrust does) and RSA uses PKCS#1
// v1.5. Quay lets the unprotected header pick any algorithm the key fits.
var jwsHashes = map[string]crypto.Hash{
	"ES256": crypto.SHA256, "ES384": crypto.SHA384, "ES512": crypto.SHA512,
	"RS256": crypto.SHA256, "RS384": crypto.SHA384, "RS512": crypto.SHA512,
}

// RSA modulus bounds: below 2048 bits is weak, above 8192 is a CPU DoS.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

var b64 = base64.RawURLEncoding.Strict()

// b64decode decodes base64url, tolerating the padding libtrust strips or keeps.
func b64decode(s string) ([]byte, error) {
	return b64.DecodeString(strings.TrimRight(s, "="))
}

func b64encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk is the JSON Web Key form libtrust embeds in schema1 headers.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid,omitempty"`
}

// parseJWK turns an embedded JWK into a public key, validating it fully
// (point on the curve, RSA size and exponent).
func parseJWK(raw json.RawMessage) (crypto.PublicKey, error) {
	var k jwk
	if err := decodeStrict(raw, &k, false); err != nil {
		return nil, fmt.Errorf("jwk: %w", err)
	}
	switch k.Kty {
	case "EC":
		curve, size := curveOf(k.Crv)
		if curve == nil {
			return nil, fmt.Errorf("%w: jwk curve %q", ErrUnsupported, clip(k.Crv))
		}
		x, err1 := b64decode(k.X)
		y, err2 := b64decode(k.Y)
		if err1 != nil || err2 != nil || len(x) == 0 || len(y) == 0 || len(x) > size || len(y) > size {
			return nil, fmt.Errorf("%w: jwk EC coordinates are malformed", ErrSignature)
		}
		// libtrust encodes big.Int.Bytes(), which drops leading zeros: pad back.
		pt := make([]byte, 1+2*size)
		pt[0] = 4
		copy(pt[1+size-len(x):1+size], x)
		copy(pt[1+2*size-len(y):], y)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
		if err != nil {
			return nil, fmt.Errorf("%w: jwk EC point: %w", ErrSignature, err)
		}
		return pub, nil
	case "RSA":
		n, err1 := b64decode(k.N)
		e, err2 := b64decode(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("%w: jwk RSA parameters are malformed", ErrSignature)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits (want %d..%d)", ErrUnsupported, bits, minRSABits, maxRSABits)
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, fmt.Errorf("%w: RSA exponent %d", ErrSignature, pub.E)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("%w: jwk key type %q", ErrUnsupported, clip(k.Kty))
}

func curveOf(crv string) (elliptic.Curve, int) {
	switch crv {
	case "P-256":
		return elliptic.P256(), 32
	case "P-384":
		return elliptic.P384(), 48
	case "P-521":
		return elliptic.P521(), 66
	}
	return nil, 0
}

// algFor returns the only algorithm a key may sign schema1 with here.
func algFor(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
	case *rsa.PublicKey:
		return "RS256", nil
	}
	return "", fmt.Errorf("%w: key type %T", ErrUnsupported, pub)
}

// verifyJWS checks one signature over signingInput with alg and pub.
func verifyJWS(alg string, pub crypto.PublicKey, signingInput, sig []byte) error {
	h, ok := jwsHashes[alg]
	if !ok {
		return fmt.Errorf("%w: algorithm %q is not allowed", ErrSignature, clip(alg))
	}
	hh := h.New()
	hh.Write(signingInput)
	sum := hh.Sum(nil)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		want, _ := algFor(k)
		if alg != want {
			return fmt.Errorf("%w: algorithm %s does not fit a %s key", ErrSignature, alg, k.Curve.Params().Name)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("%w: %s signature has %d bytes, want %d", ErrSignature, alg, len(sig), 2*size)
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k, sum, r, s) {
			return fmt.Errorf("%w: %s signature does not match", ErrSignature, alg)
		}
		return nil
	case *rsa.PublicKey:
		if !strings.HasPrefix(alg, "RS") {
			return fmt.Errorf("%w: algorithm %s does not fit an RSA key", ErrSignature, alg)
		}
		if err := rsa.VerifyPKCS1v15(k, h, sum, sig); err != nil {
			return fmt.Errorf("%w: %s signature does not match", ErrSignature, alg)
		}
		return nil
	}
	return fmt.Errorf("%w: key type %T", ErrUnsupported, pub)
}

// signJWS signs signingInput with key using alg's hash; EC signatures are
// the fixed-width r||s that JWS requires.
func signJWS(key crypto.Signer, alg string, signingInput []byte) ([]byte, error) {
	h := jwsHashes[alg]
	hh := h.New()
	hh.Write(signingInput)
	sum := hh.Sum(nil)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, sum)
		if err != nil {
			return nil, err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	case *rsa.PrivateKey:
		return rsa.SignPKCS1v15(rand.Reader, k, h, sum)
	}
	return nil, fmt.Errorf("%w: signing key type %T", ErrUnsupported, key)
}

// publicJWK renders pub as libtrust does, with its kid.
func publicJWK(pub crypto.PublicKey) (jwk, error) {
	kid, err := KeyID(pub)
	if err != nil {
		return jwk{}, err
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		pt, err := k.Bytes()
		if err != nil {
			return jwk{}, err
		}
		return jwk{Kty: "EC", Crv: k.Curve.Params().Name, X: b64encode(pt[1 : 1+size]), Y: b64encode(pt[1+size:]), Kid: kid}, nil
	case *rsa.PublicKey:
		return jwk{Kty: "RSA", N: b64encode(k.N.Bytes()), E: b64encode(big.NewInt(int64(k.E)).Bytes()), Kid: kid}, nil
	}
	return jwk{}, fmt.Errorf("%w: key type %T", ErrUnsupported, pub)
}

// KeyID is the libtrust key id of pub: base32 of the first 30 bytes of
// sha256(DER SubjectPublicKeyInfo), in 12 colon-separated groups of 4.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	sum := sha256.Sum256(der)
	s := strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:30]), "=")
	groups := make([]string, 0, len(s)/4)
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:min(i+4, len(s))])
	}
	return strings.Join(groups, ":"), nil
}
