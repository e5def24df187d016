package hardened

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/youmark/pkcs8"
)

// PublicKey is a participant's (station's or user's) public identity: an
// ed25519 key that signs and an X25519 key that results are wrapped to.
type PublicKey struct {
	Sign ed25519.PublicKey
	Enc  *ecdh.PublicKey
}

// PrivateKey is the secret half of a PublicKey.
type PrivateKey struct {
	Sign ed25519.PrivateKey
	Enc  *ecdh.PrivateKey
}

// GenerateKey makes a fresh signing and encryption key pair.
func GenerateKey() (*PrivateKey, error) {
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	ek, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{Sign: sk, Enc: ek}, nil
}

// Public returns the public half.
func (k *PrivateKey) Public() PublicKey {
	return PublicKey{Sign: k.Sign.Public().(ed25519.PublicKey), Enc: k.Enc.PublicKey()}
}

func (k PublicKey) valid() bool { return len(k.Sign) == ed25519.PublicKeySize && k.Enc != nil }

// Equal reports whether both halves are the same keys.
func (k PublicKey) Equal(o PublicKey) bool {
	return k.valid() && o.valid() && k.Sign.Equal(o.Sign) && k.Enc.Equal(o.Enc)
}

// SignKeyID is "sha256:" + hex of the SHA-256 of the signing key's SPKI DER.
// Trains pin participants' keys by these ids.
func (k PublicKey) SignKeyID() string { return spkiID(k.Sign) }

// EncKeyID is the same kind of id for the X25519 key.
func (k PublicKey) EncKeyID() string { return spkiID(k.Enc) }

func spkiID(pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// MarshalPEM writes the two public keys as two "PUBLIC KEY" (SPKI) blocks,
// ed25519 first, then X25519.
func (k PublicKey) MarshalPEM() ([]byte, error) {
	if !k.valid() {
		return nil, fmt.Errorf("%w: incomplete public key", ErrMalformed)
	}
	var out []byte
	for _, pub := range []any{k.Sign, k.Enc} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, err
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return out, nil
}

// ErrKeyFile: a key file is not what was asked for (a private key given
// where a public one belongs, bad PEM or DER). It matches ErrMalformed too,
// but says what is wrong: a key file is not a train.
var ErrKeyFile error = keyFileError{}

type keyFileError struct{}

func (keyFileError) Error() string        { return "bad key file" }
func (keyFileError) Is(target error) bool { return target == ErrMalformed }

// ErrPassphrase: an encrypted key file was opened without its passphrase,
// or with a wrong one.
var ErrPassphrase = errors.New("key passphrase")

// keyKDF is how MarshalEncryptedPEM derives the wrapping key: scrypt with
// N=2^14, r=8 (16 MiB: OpenSSL refuses 32 MiB and more by default, and
// `openssl pkey` should open the file too), p=4 for more work at the same
// memory, and AES-256-CBC: the PBES2 form `openssl pkcs8 -topk8 -scrypt`
// writes.
var keyKDF = &pkcs8.Opts{
	Cipher:  pkcs8.AES256CBC,
	KDFOpts: pkcs8.ScryptOpts{SaltSize: 16, CostParameter: 1 << 14, BlockSize: 8, ParallelizationParameter: 4},
}

// MarshalEncryptedPEM writes the two private keys as two "ENCRYPTED PRIVATE
// KEY" (PKCS#8 PBES2) blocks under passphrase.
func (k *PrivateKey) MarshalEncryptedPEM(passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: empty passphrase", ErrPassphrase)
	}
	if k == nil || len(k.Sign) != ed25519.PrivateKeySize || k.Enc == nil {
		return nil, fmt.Errorf("%w: incomplete private key", ErrMalformed)
	}
	var out []byte
	for _, priv := range []any{k.Sign, k.Enc} {
		der, err := pkcs8.MarshalPrivateKey(priv, passphrase, keyKDF)
		if err != nil {
			return nil, err
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})...)
	}
	return out, nil
}

// MarshalPEM writes the two private keys as two unencrypted "PRIVATE KEY"
// (PKCS#8) blocks, ed25519 first, then X25519. Store the file mode 0600.
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	if k == nil || len(k.Sign) != ed25519.PrivateKeySize || k.Enc == nil {
		return nil, fmt.Errorf("%w: incomplete private key", ErrMalformed)
	}
	var out []byte
	for _, priv := range []any{k.Sign, k.Enc} {
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	}
	return out, nil
}

// ParsePublicKeyPEM reads the output of PublicKey.MarshalPEM: exactly one
// ed25519 and one X25519 SPKI block, in any order.
func ParsePublicKeyPEM(data []byte) (PublicKey, error) {
	var k PublicKey
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "PRIVATE KEY" || b.Type == "ENCRYPTED PRIVATE KEY" {
			return PublicKey{}, fmt.Errorf("%w: this is a private key; give the public key file (.pub) instead", ErrKeyFile)
		}
		if b.Type != "PUBLIC KEY" {
			return PublicKey{}, fmt.Errorf("%w: unexpected PEM block %q", ErrKeyFile, b.Type)
		}
		pub, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return PublicKey{}, fmt.Errorf("%w: %v", ErrKeyFile, err)
		}
		switch p := pub.(type) {
		case ed25519.PublicKey:
			if k.Sign != nil {
				return PublicKey{}, fmt.Errorf("%w: two ed25519 keys", ErrKeyFile)
			}
			k.Sign = p
		case *ecdh.PublicKey:
			if k.Enc != nil || p.Curve() != ecdh.X25519() {
				return PublicKey{}, fmt.Errorf("%w: want one X25519 key", ErrKeyFile)
			}
			k.Enc = p
		default:
			return PublicKey{}, fmt.Errorf("%w: unsupported public key type %T (want ed25519 and X25519)", ErrUnsupported, pub)
		}
	}
	if !k.valid() {
		return PublicKey{}, fmt.Errorf("%w: need one ed25519 and one X25519 PUBLIC KEY block", ErrKeyFile)
	}
	return k, nil
}

// ParsePrivateKeyPEM reads the output of PrivateKey.MarshalPEM or
// MarshalEncryptedPEM. passphrase is called (once) only when the blocks are
// encrypted; nil refuses encrypted keys with ErrPassphrase.
func ParsePrivateKeyPEM(data []byte, passphrase ...func() ([]byte, error)) (*PrivateKey, error) {
	k := &PrivateKey{}
	var pass []byte
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var priv any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			priv, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			if pass == nil {
				if len(passphrase) == 0 || passphrase[0] == nil {
					return nil, fmt.Errorf("%w: the key is encrypted and no passphrase was given", ErrPassphrase)
				}
				if pass, err = passphrase[0](); err != nil {
					return nil, fmt.Errorf("%w: %w", ErrPassphrase, err)
				}
				if len(pass) == 0 {
					return nil, fmt.Errorf("%w: empty passphrase for an encrypted key", ErrPassphrase)
				}
			}
			if priv, err = pkcs8.ParsePKCS8PrivateKey(b.Bytes, pass); err != nil {
				// PBES2-CBC has no MAC: a wrong passphrase shows as bad padding or bad DER.
				return nil, fmt.Errorf("%w: wrong passphrase or damaged key (%v)", ErrPassphrase, err)
			}
		case "PUBLIC KEY":
			return nil, fmt.Errorf("%w: this is a public key; give the private key file (.key)", ErrKeyFile)
		default:
			return nil, fmt.Errorf("%w: unexpected PEM block %q (want PKCS#8 \"PRIVATE KEY\")", ErrKeyFile, b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
		}
		switch p := priv.(type) {
		case ed25519.PrivateKey:
			if k.Sign != nil {
				return nil, fmt.Errorf("%w: two ed25519 keys", ErrKeyFile)
			}
			k.Sign = p
		case *ecdh.PrivateKey:
			if k.Enc != nil || p.Curve() != ecdh.X25519() {
				return nil, fmt.Errorf("%w: want one X25519 key", ErrKeyFile)
			}
			k.Enc = p
		default:
			return nil, fmt.Errorf("%w: unsupported private key type %T (want ed25519 and X25519)", ErrUnsupported, priv)
		}
	}
	if k.Sign == nil || k.Enc == nil {
		return nil, fmt.Errorf("%w: need one ed25519 and one X25519 PRIVATE KEY block", ErrKeyFile)
	}
	return k, nil
}
