package phtv2

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"

	"github.com/youmark/pkcs8"
	"golang.org/x/crypto/scrypt"
)

// Encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY", RFC 5958) as Python's
// cryptography, the PHT desktop app and OpenSSL write it, read with
// github.com/youmark/pkcs8 (PBES2: PBKDF2 or scrypt, AES-CBC or
// DES-EDE3-CBC). Its KDFs and CBC ciphers are replaced through its own
// registries (RegisterKDF, RegisterCipher) so that hostile parameters cannot
// demand unbounded work or make crypto/cipher panic, PKCS#7 padding is
// checked (a wrong password is reported as such) and PBKDF2 also takes
// HMAC-SHA-512 (openssl -v2prf hmacWithSHA512). PKCS#12's
// pbeWithSHAAnd3-KeyTripleDES-CBC (openssl -v1 PBE-SHA1-3DES) is not in
// that library and no maintained Go module exports it for a bare PKCS#8
// key, so its key derivation (RFC 7292 appendix B) is written out below.

var (
	oidPBKDF2        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidHMACSHA1      = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA256    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA512    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC    = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	oidPBESHA13DES   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}
	errWrongPassword = errors.New("wrong password for the private key")
)

// Work bounds for a key file: far above what any tool writes (OpenSSL:
// PBKDF2 2048 iterations, scrypt N=16384 r=8 p=1), far below a DoS.
const (
	maxPBKDF2Iterations = 10_000_000
	maxScryptMemory     = 64 << 20 // 128*N*r bytes (OpenSSL refuses above 32 MiB by default)
	maxScryptP          = 16
)

func init() {
	pkcs8.RegisterKDF(oidPBKDF2, func() pkcs8.KDFParameters { return new(pbkdf2Params) })
	pkcs8.RegisterKDF(oidScrypt, func() pkcs8.KDFParameters { return new(scryptParams) })
	for _, c := range []cbcCipher{
		{oidAES128CBC, 16, aes.NewCipher}, {oidAES192CBC, 24, aes.NewCipher}, {oidAES256CBC, 32, aes.NewCipher},
		{oidDESEDE3CBC, 24, des.NewTripleDESCipher},
	} {
		pkcs8.RegisterCipher(c.oid, func() pkcs8.Cipher { return c })
	}
}

// pbkdf2Params is PBKDF2-params (RFC 8018), keyLength included.
type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

func (p *pbkdf2Params) DeriveKey(password []byte, size int) ([]byte, error) {
	if p.Iterations < 1 || p.Iterations > maxPBKDF2Iterations {
		return nil, fmt.Errorf("unreasonable PBKDF2 iteration count %d", p.Iterations)
	}
	if p.KeyLength != 0 && p.KeyLength != size {
		return nil, errors.New("PBKDF2 key length does not match the cipher")
	}
	var prf func() hash.Hash
	switch a := p.PRF.Algorithm; {
	case len(a) == 0 || a.Equal(oidHMACSHA1):
		prf = sha1.New
	case a.Equal(oidHMACSHA256):
		prf = sha256.New
	case a.Equal(oidHMACSHA512):
		prf = sha512.New
	default:
		return nil, fmt.Errorf("unsupported PBKDF2 PRF %s", a)
	}
	return pbkdf2.Key(prf, string(password), p.Salt, p.Iterations, size)
}

// scryptParams is scrypt-params (RFC 7914 §7).
type scryptParams struct {
	Salt      []byte
	N         int
	R         int
	P         int
	KeyLength int `asn1:"optional"`
}

func (p *scryptParams) DeriveKey(password []byte, size int) ([]byte, error) {
	if p.N < 2 || p.R < 1 || p.P < 1 || p.P > maxScryptP || p.R > maxScryptMemory/128/p.N {
		return nil, fmt.Errorf("unreasonable scrypt parameters N=%d r=%d p=%d", p.N, p.R, p.P)
	}
	if p.KeyLength != 0 && p.KeyLength != size {
		return nil, errors.New("scrypt key length does not match the cipher")
	}
	return scrypt.Key(password, p.Salt, p.N, p.R, p.P, size)
}

// cbcCipher decrypts CBC with PKCS#7 padding, checking every length that
// crypto/cipher would otherwise panic on.
type cbcCipher struct {
	oid      asn1.ObjectIdentifier
	keySize  int
	newBlock func([]byte) (cipher.Block, error)
}

func (c cbcCipher) IVSize() int {
	if c.oid.Equal(oidDESEDE3CBC) {
		return des.BlockSize
	}
	return aes.BlockSize
}
func (c cbcCipher) KeySize() int               { return c.keySize }
func (c cbcCipher) OID() asn1.ObjectIdentifier { return c.oid }

func (c cbcCipher) Encrypt(key, iv, plaintext []byte) ([]byte, error) {
	return nil, errors.New("phtv2 only reads encrypted keys")
}

func (c cbcCipher) Decrypt(key, iv, ct []byte) ([]byte, error) {
	return cbcDecrypt(c.newBlock, key, iv, ct)
}

func cbcDecrypt(newBlock func([]byte) (cipher.Block, error), key, iv, ct []byte) ([]byte, error) {
	blk, err := newBlock(key)
	if err != nil {
		return nil, err
	}
	bs := blk.BlockSize()
	if len(iv) != bs {
		return nil, errors.New("malformed IV")
	}
	if len(ct) == 0 || len(ct)%bs != 0 {
		return nil, errors.New("ciphertext is not whole cipher blocks")
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(blk, iv).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad == 0 || pad > bs {
		return nil, errWrongPassword
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return nil, errWrongPassword
		}
	}
	return pt[:len(pt)-pad], nil
}

// parseEncryptedPKCS8 decrypts an EncryptedPrivateKeyInfo and parses the
// key inside.
func parseEncryptedPKCS8(der, password []byte) (any, error) {
	bad := func(err error) error {
		if errors.Is(err, errWrongPassword) {
			return fmt.Errorf("%w: %v", ErrKey, err)
		}
		return fmt.Errorf("%w: encrypted PKCS#8 key: %v", ErrKey, err)
	}
	if len(password) == 0 {
		return nil, fmt.Errorf("%w: private key is encrypted and no password was given (PRIVATE_KEY_PASSWORD)", ErrKey)
	}
	var info struct {
		Algorithm     pkix.AlgorithmIdentifier
		EncryptedData []byte
	}
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return nil, bad(errors.New("malformed"))
	}
	if info.Algorithm.Algorithm.Equal(oidPBESHA13DES) {
		pt, err := decryptPKCS12PBE(info.Algorithm.Parameters.FullBytes, info.EncryptedData, password)
		if err != nil {
			return nil, bad(err)
		}
		k, err := x509.ParsePKCS8PrivateKey(pt)
		if err != nil {
			return nil, bad(errWrongPassword)
		}
		return k, nil
	}
	k, _, err := pkcs8.ParsePrivateKey(der, password)
	if err != nil {
		if err.Error() == "pkcs8: incorrect password" {
			err = errWrongPassword
		}
		return nil, bad(err)
	}
	return k, nil
}

// decryptPKCS12PBE is pbeWithSHAAnd3-KeyTripleDES-CBC: key and IV from the
// PKCS#12 KDF with SHA-1 (RFC 7292 B.2), then DES-EDE3-CBC.
func decryptPKCS12PBE(params, ct, password []byte) ([]byte, error) {
	var p struct {
		Salt       []byte
		Iterations int
	}
	if rest, err := asn1.Unmarshal(params, &p); err != nil || len(rest) != 0 {
		return nil, errors.New("malformed PBE parameters")
	}
	if p.Iterations < 1 || p.Iterations > maxPBKDF2Iterations {
		return nil, fmt.Errorf("unreasonable PBE iteration count %d", p.Iterations)
	}
	// The PKCS#12 KDF takes the password as BMPString with a NUL terminator.
	bmp := make([]byte, 0, 2*len(password)+2)
	for _, r := range string(password) {
		if r > 0xffff {
			return nil, errors.New("password has characters outside the BMP")
		}
		bmp = append(bmp, byte(r>>8), byte(r))
	}
	bmp = append(bmp, 0, 0)
	key := pkcs12KDF(1, bmp, p.Salt, p.Iterations, 24)
	iv := pkcs12KDF(2, bmp, p.Salt, p.Iterations, 8)
	return cbcDecrypt(des.NewTripleDESCipher, key, iv, ct)
}

// pkcs12KDF derives n bytes for purpose id (1 key, 2 IV) with SHA-1.
func pkcs12KDF(id byte, pass, salt []byte, iter, n int) []byte {
	const u, v = 20, 64 // SHA-1 output and block size
	fill := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	D := make([]byte, v)
	for i := range D {
		D[i] = id
	}
	I := append(fill(salt), fill(pass)...)
	var out []byte
	for len(out) < n {
		h := sha1.New()
		h.Write(D)
		h.Write(I)
		A := h.Sum(nil)
		for j := 1; j < iter; j++ {
			s := sha1.Sum(A)
			A = s[:]
		}
		out = append(out, A...)
		// B = A repeated to v bytes; every v-byte block of I becomes I_j + B + 1.
		B := make([]byte, v)
		for i := range B {
			B[i] = A[i%u]
		}
		for j := 0; j < len(I); j += v {
			carry := 1
			for k := v - 1; k >= 0; k-- {
				s := int(I[j+k]) + int(B[k]) + carry
				I[j+k] = byte(s)
				carry = s >> 8
			}
		}
	}
	return out[:n]
}
