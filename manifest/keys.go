package manifest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// ParsePrivateKeyPEM reads a schema1 signing key: PKCS#8, SEC 1 EC or
// PKCS#1 RSA, unencrypted. Only EC (P-256/384/521) and RSA keys can sign.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w: no private key PEM block", ErrInvalid)
		}
		var key any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue // e.g. EC PARAMETERS before the key
		}
		if err != nil {
			return nil, fmt.Errorf("%w: private key: %w", ErrInvalid, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: key type %T", ErrUnsupported, key)
		}
		if _, err := algFor(s.Public()); err != nil {
			return nil, err
		}
		if k, ok := key.(*rsa.PrivateKey); ok && k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits, want >= %d", ErrUnsupported, k.N.BitLen(), minRSABits)
		}
		return s, nil
	}
}

// GenerateKey makes a signing key for alg ES256, ES384, ES512 or RS256 and
// returns it with its PKCS#8 PEM encoding.
func GenerateKey(alg string) (crypto.Signer, []byte, error) {
	var key crypto.Signer
	var err error
	switch alg {
	case "ES256", "":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256":
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, nil, fmt.Errorf("%w: algorithm %q (want ES256, ES384, ES512 or RS256)", ErrUnsupported, clip(alg))
	}
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
