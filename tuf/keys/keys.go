// Package keys creates, stores and uses TUF signing keys: ed25519 (default),
// ecdsa P-256 and rsa-pss (3072 bits). Private keys at rest are encrypted
// with a password (scrypt + AES-256-GCM, the public key bound as associated
// data); signatures follow the TUF spec (ecdsa ASN.1 DER, rsassa-pss-sha256).
package keys

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/crypto/scrypt"

	"github.com/trainyard/trainyard/internal/kdftest"
)

// Key types accepted by Generate.
const (
	Ed25519 = "ed25519"
	ECDSA   = "ecdsa"
	RSA     = "rsa"
)

// fileFormat names the encrypted key file layout; bump it on any change.
const fileFormat = "trainyard-tuf-key/v1"

// ErrPassword is returned when a key file cannot be decrypted.
var ErrPassword = errors.New("wrong password or corrupted key file")

// Signer signs TUF payloads (canonical JSON of "signed"). A file key is one;
// a KMS or HSM signer can be another.
type Signer interface {
	KeyID() string
	Public() *metadata.Key
	Sign(payload []byte) ([]byte, error)
}

// PrivateKey is an in-memory private key with its TUF public form.
type PrivateKey struct {
	priv crypto.Signer
	pub  *metadata.Key
	id   string
}

// Generate creates a new key of the given type ("" means ed25519).
func Generate(keyType string) (*PrivateKey, error) {
	var priv crypto.Signer
	var err error
	switch strings.ToLower(keyType) {
	case "", Ed25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case ECDSA, "ecdsa-sha2-nistp256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA, "rsa-pss", "rsassa-pss-sha256":
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("unsupported key type %q (ed25519, ecdsa, rsa)", keyType)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", keyType, err)
	}
	return fromSigner(priv)
}

func fromSigner(priv crypto.Signer) (*PrivateKey, error) {
	if k, ok := priv.(*ecdsa.PrivateKey); ok && k.Curve != elliptic.P256() {
		return nil, errors.New("only ecdsa P-256 keys are supported")
	}
	pub, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	id, err := pub.ID()
	if err != nil {
		return nil, err
	}
	return &PrivateKey{priv: priv, pub: pub, id: id}, nil
}

// KeyID is the TUF key id (sha256 of the canonical public key).
func (k *PrivateKey) KeyID() string { return k.id }

// Public returns the TUF public key.
func (k *PrivateKey) Public() *metadata.Key { return k.pub }

// Sign signs payload with the scheme the public key announces.
func (k *PrivateKey) Sign(payload []byte) ([]byte, error) {
	switch p := k.priv.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(p, payload), nil
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(payload)
		return ecdsa.SignASN1(rand.Reader, p, h[:])
	case *rsa.PrivateKey:
		h := sha256.Sum256(payload)
		return rsa.SignPSS(rand.Reader, p, crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	}
	return nil, fmt.Errorf("unsupported private key %T", k.priv)
}

// SignMetadata appends one signature per signer to md, replacing an older
// signature by the same key.
func SignMetadata[T metadata.Roles](md *metadata.Metadata[T], signers ...Signer) error {
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		return fmt.Errorf("canonical json: %w", err)
	}
	for _, s := range signers {
		sig, err := s.Sign(payload)
		if err != nil {
			return fmt.Errorf("sign with key %s: %w", s.KeyID(), err)
		}
		kept := md.Signatures[:0]
		for _, old := range md.Signatures {
			if old.KeyID != s.KeyID() {
				kept = append(kept, old)
			}
		}
		md.Signatures = append(kept, metadata.Signature{KeyID: s.KeyID(), Signature: sig})
	}
	return nil
}

// KDF parameters. Decryption takes them from the file, bounded so a hostile
// file cannot ask for unbounded memory. The cost is a constant, not a
// variable, so no importer can weaken every key's KDF; this module's tests
// lower it through internal/kdftest.
const (
	scryptN    = 1 << 15
	scryptR    = 8
	scryptP    = 1
	maxScryptN = 1 << 17
)

type encryptedFile struct {
	Format     string          `json:"format"`
	KeyID      string          `json:"keyid"`
	Public     json.RawMessage `json:"public"`
	KDF        kdfParams       `json:"kdf"`
	Cipher     string          `json:"cipher"`
	Nonce      []byte          `json:"nonce"`
	Ciphertext []byte          `json:"ciphertext"`
}

type kdfParams struct {
	Name string `json:"name"`
	Salt []byte `json:"salt"`
	N    int    `json:"n"`
	R    int    `json:"r"`
	P    int    `json:"p"`
}

// Encrypt returns the key file: the PKCS#8 private key sealed with a key
// derived from password; the public key and key id stay readable.
func (k *PrivateKey) Encrypt(password []byte) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, err
	}
	pub, err := MarshalPublic(k.pub)
	if err != nil {
		return nil, err
	}
	f := encryptedFile{Format: fileFormat, KeyID: k.id, Public: pub, Cipher: "aes-256-gcm",
		KDF: kdfParams{Name: "scrypt", Salt: make([]byte, 16), N: kdftest.ScryptN(scryptN), R: scryptR, P: scryptP}}
	if _, err := rand.Read(f.KDF.Salt); err != nil {
		return nil, err
	}
	aead, err := f.aead(password)
	if err != nil {
		return nil, err
	}
	f.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(f.Nonce); err != nil {
		return nil, err
	}
	f.Ciphertext = aead.Seal(nil, f.Nonce, der, f.ad())
	return json.MarshalIndent(f, "", "  ")
}

// ad binds the readable key id and public key to the ciphertext; the
// public key is compacted since indentation may change.
func (f *encryptedFile) ad() []byte {
	var pub bytes.Buffer
	if err := json.Compact(&pub, f.Public); err != nil {
		pub.Write(f.Public)
	}
	return []byte(fileFormat + "\x00" + f.KeyID + "\x00" + pub.String())
}

func (f *encryptedFile) aead(password []byte) (cipher.AEAD, error) {
	if f.KDF.Name != "scrypt" || f.KDF.N < 2 || f.KDF.N > maxScryptN || f.KDF.R < 1 || f.KDF.R > 8 || f.KDF.P < 1 || f.KDF.P > 16 || len(f.KDF.Salt) < 16 {
		return nil, fmt.Errorf("key file: unsupported kdf parameters")
	}
	dk, err := scrypt.Key(password, f.KDF.Salt, f.KDF.N, f.KDF.R, f.KDF.P, 32)
	// scrypt's scratch (128·r·N bytes, 32 MiB at the default cost) is
	// garbage now; collect it, so that a command unlocking several keys
	// reuses one scratch instead of holding one per key until the heap
	// grows enough for the collector to run by itself. A small one is
	// left to the collector.
	if 128*f.KDF.R*f.KDF.N >= 8<<20 {
		runtime.GC()
	}
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	block, err := aes.NewCipher(dk)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Decrypt opens a key file written by Encrypt.
func Decrypt(data, password []byte) (*PrivateKey, error) {
	var f encryptedFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if f.Format != fileFormat || f.Cipher != "aes-256-gcm" {
		return nil, fmt.Errorf("key file: unsupported format %q/%q", f.Format, f.Cipher)
	}
	aead, err := f.aead(password)
	if err != nil {
		return nil, err
	}
	if len(f.Nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("key file: bad nonce")
	}
	der, err := aead.Open(nil, f.Nonce, f.Ciphertext, f.ad())
	if err != nil {
		return nil, ErrPassword
	}
	p, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	signer, ok := p.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key file: unsupported key %T", p)
	}
	k, err := fromSigner(signer)
	if err != nil {
		return nil, err
	}
	if k.id != f.KeyID {
		return nil, fmt.Errorf("key file: key id %s does not match the private key (%s)", f.KeyID, k.id)
	}
	return k, nil
}

// KeyIDOfFile returns the key id recorded in a key file without decrypting it.
func KeyIDOfFile(data []byte) (string, error) {
	var f encryptedFile
	if err := json.Unmarshal(data, &f); err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	if f.Format != fileFormat {
		return "", fmt.Errorf("key file: unsupported format %q", f.Format)
	}
	return f.KeyID, nil
}

// MarshalPublic encodes a TUF public key as JSON (the .pub file format).
func MarshalPublic(k *metadata.Key) ([]byte, error) {
	return json.Marshal(k)
}

// ParsePublic reads a public key given as TUF key JSON, a PEM public key
// (PKIX), or a key file written by Encrypt (its public part).
func ParsePublic(data []byte) (*metadata.Key, error) {
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "-----BEGIN") {
		blk, _ := pem.Decode([]byte(trimmed))
		if blk == nil {
			return nil, errors.New("public key: bad PEM")
		}
		pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		return metadata.KeyFromPublicKey(pub)
	}
	var f encryptedFile
	if err := json.Unmarshal(data, &f); err == nil && f.Format == fileFormat {
		data = f.Public
	}
	var k metadata.Key
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if _, err := k.ToPublicKey(); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return &k, nil
}
