// Package phtv2 is the legacy PHT train protocol ("pht-v2"), compatible byte
// for byte with pht-train-container-library 2.x: pre-run (decrypt, verify
// the immutable-file hash, the user and build signatures, the station chain
// and the previous results) and post-run (hash and sign the results, extend
// the digest chain, re-encrypt everything under a fresh key wrapped for every
// participant), plus the PHT train build and the creator's result download.
//
// Compatibility is the point of this package, so it inherits the format's
// weaknesses (research/pht.md §5): every key comes from the unsigned config.
// It closes what it can without breaking real trains (see docs/pht-v2.md);
// the hardened protocol is where trust is fixed.
package phtv2

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/trainyard/trainyard/train"

	"github.com/trainyard/trainyard/errdefs"
)

// Sentinel errors callers branch on. Every error of this package wraps one.
var (
	// ErrKey: a key is missing, malformed, of the wrong type or does not fit.
	ErrKey = errors.New("bad key")
	// ErrDecrypt: a ciphertext is truncated, mis-padded or under another key.
	ErrDecrypt = errors.New("decryption failed")
	// ErrTampered: a hash over train files or results does not match.
	ErrTampered = errdefs.New("train tampered", errdefs.ErrTampered)
	// ErrSignature: a signature does not verify.
	ErrSignature = errdefs.New("invalid signature", errdefs.ErrSignature)
	// ErrStation: the station is not on the route or has no key for it.
	ErrStation = errors.New("station not on route")
)

// KeySize is the AES-256 key size; shorter keys (which Python silently
// accepts as AES-128/192) are refused.
const KeySize = 32

// HashSize is the SHA-512 digest size used by every hash of the protocol.
const HashSize = sha512.Size

// ParsePublicKey reads a public key stored as hex of PEM, SPKI ("PUBLIC
// KEY", stations and builder) or PKCS#1 ("RSA PUBLIC KEY", desktop app).
func ParsePublicKey(h train.HexString) (*rsa.PublicKey, error) {
	b, err := h.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrKey, err)
	}
	return ParsePublicKeyPEM(b)
}

// ParsePublicKeyPEM reads an RSA public key from PEM (SPKI or PKCS#1).
func ParsePublicKeyPEM(b []byte) (*rsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: public key is not PEM", ErrKey)
	}
	if k, err := x509.ParsePKIXPublicKey(blk.Bytes); err == nil {
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: public key is %T, PHT v2 needs RSA", ErrKey, k)
		}
		return rk, nil
	}
	k, err := x509.ParsePKCS1PublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: public key is neither SPKI nor PKCS#1 RSA", ErrKey)
	}
	return k, nil
}

// PublicKeyHex stores pub as hex of an SPKI PEM, like stations and the builder.
func PublicKeyHex(pub *rsa.PublicKey) train.HexString {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // cannot fail for a valid *rsa.PublicKey
	}
	return train.Hex(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// ParsePrivateKey reads an RSA private key from PEM: PKCS#1 or PKCS#8,
// either one optionally encrypted: legacy "Proc-Type: 4,ENCRYPTED" (the
// standard library's DecryptPEMBlock) or "ENCRYPTED PRIVATE KEY" (PBES2
// with PBKDF2 or scrypt and AES or DES-EDE3, PKCS#12 PBE-SHA1-3DES; see
// pkcs8.go): every form Python's load_pem_private_key reads for RSA.
func ParsePrivateKey(pemBytes, password []byte) (*rsa.PrivateKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, fmt.Errorf("%w: private key is not PEM", ErrKey)
	}
	der := blk.Bytes
	switch {
	case blk.Type == "ENCRYPTED PRIVATE KEY":
		k, err := parseEncryptedPKCS8(der, password)
		if err != nil {
			return nil, err
		}
		return rsaKey(k)
	//lint:ignore SA1019 legacy PEM encryption ("Proc-Type: 4,ENCRYPTED") is what OpenSSL-era PHT keys use
	case x509.IsEncryptedPEMBlock(blk):
		if len(password) == 0 {
			return nil, fmt.Errorf("%w: private key is encrypted and no password was given (PRIVATE_KEY_PASSWORD)", ErrKey)
		}
		var err error
		//lint:ignore SA1019 see above: reading the station's own key file, not an attacker's
		if der, err = x509.DecryptPEMBlock(blk, password); err != nil {
			return nil, fmt.Errorf("%w: decrypt private key: %v", ErrKey, err)
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if _, ecErr := x509.ParseECPrivateKey(der); ecErr == nil {
			return nil, fmt.Errorf("%w: private key is ECDSA, PHT v2 needs RSA", ErrKey)
		}
		return nil, fmt.Errorf("%w: private key is neither PKCS#1 nor PKCS#8", ErrKey)
	}
	return rsaKey(k)
}

func rsaKey(k any) (*rsa.PrivateKey, error) {
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: private key is %T, PHT v2 needs RSA", ErrKey, k)
	}
	return rk, nil
}

// WrapKey encrypts a symmetric key for pub with RSA-OAEP (SHA-512, MGF1-SHA-512).
func WrapKey(pub *rsa.PublicKey, key []byte) ([]byte, error) {
	ct, err := rsa.EncryptOAEP(sha512.New(), rand.Reader, pub, key, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: wrap key for a %d-bit RSA key: %v", ErrKey, pub.N.BitLen(), err)
	}
	return ct, nil
}

// UnwrapKey decrypts a wrapped symmetric key and insists on 32 bytes.
func UnwrapKey(sk *rsa.PrivateKey, ct []byte) ([]byte, error) {
	k, err := rsa.DecryptOAEP(sha512.New(), nil, sk, ct, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: the symmetric key is not wrapped for this private key", ErrDecrypt)
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("%w: symmetric key is %d bytes, want %d", ErrKey, len(k), KeySize)
	}
	return k, nil
}

// SignPKCS1 is the user and build signature: RSASSA-PKCS1-v1_5 with SHA-512
// over msg (for the user signature, msg is the 64 raw hash bytes).
func SignPKCS1(sk *rsa.PrivateKey, msg []byte) ([]byte, error) {
	d := sha512.Sum512(msg)
	return rsa.SignPKCS1v15(rand.Reader, sk, crypto.SHA512, d[:])
}

// VerifyPKCS1 checks a SignPKCS1 signature.
func VerifyPKCS1(pub *rsa.PublicKey, msg, sig []byte) error {
	d := sha512.Sum512(msg)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA512, d[:], sig); err != nil {
		return ErrSignature
	}
	return nil
}

// SignPSS is the station signature: RSA-PSS, MGF1-SHA-512, maximum salt
// length (what cryptography 39 demands when verifying), over a 64-byte
// digest used directly as mHash (Prehashed).
func SignPSS(sk *rsa.PrivateKey, digest []byte) ([]byte, error) {
	return rsa.SignPSS(rand.Reader, sk, crypto.SHA512, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
}

// VerifyPSS checks a SignPSS signature (any salt length).
func VerifyPSS(pub *rsa.PublicKey, digest, sig []byte) error {
	if len(digest) != HashSize {
		return fmt.Errorf("%w: digest is %d bytes, want %d", ErrSignature, len(digest), HashSize)
	}
	if err := rsa.VerifyPSS(pub, crypto.SHA512, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}); err != nil {
		return ErrSignature
	}
	return nil
}

// The AES-256-CBC helpers below are raw and unauthenticated: the legacy PHT
// format takes its integrity from the signed SHA-512 hashes over the
// plaintext, never from the cipher. They are unexported so nothing but this
// package's legacy code can reach for them; new formats use an AEAD.

// rawCBCEncryptedSize is the size of IV || AES-CBC(PKCS#7(n bytes)).
func rawCBCEncryptedSize(n int64) int64 { return aes.BlockSize + (n/aes.BlockSize+1)*aes.BlockSize }

// rawCBCEncrypt streams IV || AES-256-CBC(key, iv, PKCS#7(src)) to dst. A nil iv
// draws a fresh random one (the Python library shares one IV between all
// files of an encryptor; a fresh IV per file is compatible and safer).
func rawCBCEncrypt(dst io.Writer, src io.Reader, key, iv []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("%w: AES key is %d bytes, want %d", ErrKey, len(key), KeySize)
	}
	if iv == nil {
		iv = make([]byte, aes.BlockSize)
		if _, err := rand.Read(iv); err != nil {
			return err
		}
	}
	if len(iv) != aes.BlockSize {
		return fmt.Errorf("%w: IV is %d bytes", ErrKey, len(iv))
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	if _, err := dst.Write(iv); err != nil {
		return err
	}
	mode := cipher.NewCBCEncrypter(blk, iv)
	buf := make([]byte, 64<<10)
	fill := 0
	for {
		n, err := io.ReadFull(src, buf[fill:])
		fill += n
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
		mode.CryptBlocks(buf, buf)
		if _, err := dst.Write(buf); err != nil {
			return err
		}
		fill = 0
	}
	// Last partial chunk plus PKCS#7 padding (a whole block when aligned).
	pad := aes.BlockSize - fill%aes.BlockSize
	tail := make([]byte, fill+pad)
	copy(tail, buf[:fill])
	for i := fill; i < len(tail); i++ {
		tail[i] = byte(pad)
	}
	mode.CryptBlocks(tail, tail)
	_, err = dst.Write(tail)
	return err
}

// rawCBCDecrypt streams the plaintext of IV || AES-256-CBC(...) from src to dst.
// It holds back the last block until EOF to strip the padding, so a wrong
// key or a truncated file is an error (wrapping ErrDecrypt) and never a
// silent short plaintext. Bytes already written to dst are then garbage.
func rawCBCDecrypt(dst io.Writer, src io.Reader, key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("%w: AES key is %d bytes, want %d", ErrKey, len(key), KeySize)
	}
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(src, iv); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w: ciphertext truncated (no IV)", ErrDecrypt)
		}
		return err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	mode := cipher.NewCBCDecrypter(blk, iv)
	const chunk = 64 << 10
	buf := make([]byte, chunk+aes.BlockSize)
	held := 0 // plaintext bytes of the last block kept at buf[0:held]
	total := 0
	for {
		n, err := io.ReadFull(src, buf[held:held+chunk])
		eof := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !eof {
			return err
		}
		total += n
		if n%aes.BlockSize != 0 {
			return fmt.Errorf("%w: ciphertext truncated (not a multiple of %d bytes)", ErrDecrypt, aes.BlockSize)
		}
		mode.CryptBlocks(buf[held:held+n], buf[held:held+n])
		end := held + n
		if eof {
			if total == 0 {
				return fmt.Errorf("%w: ciphertext truncated (no data after the IV)", ErrDecrypt)
			}
			last := buf[:end]
			pad := int(last[len(last)-1])
			if pad == 0 || pad > aes.BlockSize || pad > len(last) {
				return fmt.Errorf("%w: bad padding (wrong key or corrupted file)", ErrDecrypt)
			}
			for _, b := range last[len(last)-pad:] {
				if int(b) != pad {
					return fmt.Errorf("%w: bad padding (wrong key or corrupted file)", ErrDecrypt)
				}
			}
			_, err := dst.Write(last[:len(last)-pad])
			return err
		}
		// Keep the last block back: it may be the padded one.
		if _, err := dst.Write(buf[:end-aes.BlockSize]); err != nil {
			return err
		}
		copy(buf, buf[end-aes.BlockSize:end])
		held = aes.BlockSize
	}
}

// rawCBCDecryptedSize is the plaintext size of the n-byte ciphertext IV ||
// AES-256-CBC(...) readable at src, found from its last block alone (CBC
// decrypts one block given the one before it), so the plaintext can stream
// behind a header that states its size. The checks and errors are
// rawCBCDecrypt's: a truncated file or bad padding wraps ErrDecrypt.
func rawCBCDecryptedSize(src io.ReaderAt, n int64, key []byte) (int64, error) {
	if len(key) != KeySize {
		return 0, fmt.Errorf("%w: AES key is %d bytes, want %d", ErrKey, len(key), KeySize)
	}
	switch {
	case n < aes.BlockSize:
		return 0, fmt.Errorf("%w: ciphertext truncated (no IV)", ErrDecrypt)
	case n == aes.BlockSize:
		return 0, fmt.Errorf("%w: ciphertext truncated (no data after the IV)", ErrDecrypt)
	case n%aes.BlockSize != 0:
		return 0, fmt.Errorf("%w: ciphertext truncated (not a multiple of %d bytes)", ErrDecrypt, aes.BlockSize)
	}
	var tail [2 * aes.BlockSize]byte
	if _, err := src.ReadAt(tail[:], n-int64(len(tail))); err != nil {
		if err == io.EOF {
			return 0, fmt.Errorf("%w: ciphertext truncated", ErrDecrypt)
		}
		return 0, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return 0, err
	}
	var last [aes.BlockSize]byte
	blk.Decrypt(last[:], tail[aes.BlockSize:])
	for i := range last {
		last[i] ^= tail[i]
	}
	pad := int(last[aes.BlockSize-1])
	if pad == 0 || pad > aes.BlockSize {
		return 0, fmt.Errorf("%w: bad padding (wrong key or corrupted file)", ErrDecrypt)
	}
	for _, b := range last[aes.BlockSize-pad:] {
		if int(b) != pad {
			return 0, fmt.Errorf("%w: bad padding (wrong key or corrupted file)", ErrDecrypt)
		}
	}
	return n - aes.BlockSize - int64(pad), nil
}

// NewKey draws a fresh 32-byte symmetric key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return k
}

// encryptor is a train.Transform that encrypts with key.
type encryptor struct{ key []byte }

func (e encryptor) Size(n int64) int64 { return rawCBCEncryptedSize(n) }
func (e encryptor) Apply(dst io.Writer, src io.Reader) error {
	return rawCBCEncrypt(dst, src, e.key, nil)
}

// LoadPrivateKeyFile reads a station or creator key file (PRIVATE_KEY_PATH).
func LoadPrivateKeyFile(path string, password []byte) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	k, err := ParsePrivateKey(b, password)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadPublicKeyFile reads an RSA public key PEM (SPKI or PKCS#1) or, for
// convenience, takes the public half of a private key PEM.
func LoadPublicKeyFile(path string) (*rsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if k, err := ParsePublicKeyPEM(b); err == nil {
		return k, nil
	}
	if k, err := ParsePrivateKey(b, nil); err == nil {
		return &k.PublicKey, nil
	}
	return nil, fmt.Errorf("%w: %s holds no RSA public key", ErrKey, path)
}

// GenerateKeyPEM makes an RSA key pair (PKCS#8 private PEM, SPKI public PEM).
func GenerateKeyPEM(bits int) (private, public []byte, err error) {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	pub, _ := PublicKeyHex(&k.PublicKey).Bytes()
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pub, nil
}
