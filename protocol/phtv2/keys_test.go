package phtv2

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every encrypted PEM form Python's load_pem_private_key reads, made by
// openssl in the test, loads with the right password, and is refused with
// ErrKey (never a panic) for a wrong, missing or truncated one.
func TestPrivateKeyFormatsFromOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is needed (make deps)")
		}
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	ossl := func(t *testing.T, args ...string) {
		t.Helper()
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	plain := filepath.Join(dir, "plain.pem")
	ossl(t, "genrsa", "-out", plain, "2048")
	want, err := LoadPrivateKeyFile(plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "s3cret-pw"
	cases := []struct {
		name, header string
		args         []string
	}{
		{"genrsa -des3", "ENCRYPTED PRIVATE KEY", []string{"genrsa", "-des3", "-passout", "pass:" + pw, "-out", "OUT", "2048"}},
		{"pkcs8 -v2 aes256", "ENCRYPTED PRIVATE KEY", []string{"pkcs8", "-topk8", "-v2", "aes256", "-in", plain, "-passout", "pass:" + pw, "-out", "OUT"}},
		{"pkcs8 -v2 aes128 hmacWithSHA512", "ENCRYPTED PRIVATE KEY", []string{"pkcs8", "-topk8", "-v2", "aes128", "-v2prf", "hmacWithSHA512", "-in", plain, "-passout", "pass:" + pw, "-out", "OUT"}},
		{"pkcs8 -v2 des3", "ENCRYPTED PRIVATE KEY", []string{"pkcs8", "-topk8", "-v2", "des3", "-in", plain, "-passout", "pass:" + pw, "-out", "OUT"}},
		{"pkcs8 -scrypt", "ENCRYPTED PRIVATE KEY", []string{"pkcs8", "-topk8", "-scrypt", "-in", plain, "-passout", "pass:" + pw, "-out", "OUT"}},
		{"pkcs8 -v1 PBE-SHA1-3DES", "ENCRYPTED PRIVATE KEY", []string{"pkcs8", "-topk8", "-v1", "PBE-SHA1-3DES", "-in", plain, "-passout", "pass:" + pw, "-out", "OUT"}},
		{"rsa -des3 -traditional", "Proc-Type: 4,ENCRYPTED", []string{"rsa", "-des3", "-traditional", "-in", plain, "-passout", "pass:" + pw, "-out", "OUT"}},
		{"rsa -aes256 -traditional", "Proc-Type: 4,ENCRYPTED", []string{"rsa", "-aes256", "-traditional", "-in", plain, "-passout", "pass:" + pw, "-out", "OUT"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".pem")
			args := append([]string{}, c.args...)
			for j := range args {
				if args[j] == "OUT" {
					args[j] = p
				}
			}
			ossl(t, args...)
			b, _ := os.ReadFile(p)
			if !strings.Contains(string(b), c.header) {
				t.Fatalf("openssl wrote no %q:\n%s", c.header, b)
			}
			k, err := LoadPrivateKeyFile(p, []byte(pw))
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if i != 0 && !k.Equal(want) { // genrsa -des3 makes its own key
				t.Fatal("decrypted a different key")
			}
			if k.Validate() != nil {
				t.Fatal("invalid key")
			}
			for _, bad := range []string{"wrong", ""} {
				if _, err := LoadPrivateKeyFile(p, []byte(bad)); !errors.Is(err, ErrKey) {
					t.Fatalf("password %q: %v, want ErrKey", bad, err)
				}
			}
			// A truncated body is a clear error, not a panic.
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			cut := strings.Join(append(lines[:len(lines)-3], lines[len(lines)-1]), "\n")
			if _, err := ParsePrivateKey([]byte(cut), []byte(pw)); !errors.Is(err, ErrKey) {
				t.Fatalf("truncated key: %v, want ErrKey", err)
			}
		})
	}
}

// Key files with parameters demanding unbounded work, or lengths that
// crypto/cipher would panic on, are refused at once.
func TestEncryptedPKCS8HostileParameters(t *testing.T) {
	raw := func(v any) asn1.RawValue {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	key := func(kdf pkix.AlgorithmIdentifier, enc asn1.ObjectIdentifier, iv, ct []byte) []byte {
		b, err := asn1.Marshal(struct {
			Algorithm pkix.AlgorithmIdentifier
			Data      []byte
		}{
			pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}, Parameters: raw(struct {
				KDF, Enc pkix.AlgorithmIdentifier
			}{kdf, pkix.AlgorithmIdentifier{Algorithm: enc, Parameters: raw(iv)}})},
			ct,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	salt := []byte("saltsalt")
	iv16, ct := make([]byte, 16), make([]byte, 32)
	cases := map[string][]byte{
		"scrypt N=2^24":     key(pkix.AlgorithmIdentifier{Algorithm: oidScrypt, Parameters: raw(scryptParams{Salt: salt, N: 1 << 24, R: 8, P: 1})}, oidAES256CBC, iv16, ct),
		"scrypt p=1000":     key(pkix.AlgorithmIdentifier{Algorithm: oidScrypt, Parameters: raw(scryptParams{Salt: salt, N: 1024, R: 8, P: 1000})}, oidAES256CBC, iv16, ct),
		"pbkdf2 2^31-1":     key(pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: raw(pbkdf2Params{Salt: salt, Iterations: 1<<31 - 1})}, oidAES256CBC, iv16, ct),
		"des3 16-byte IV":   key(pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: raw(pbkdf2Params{Salt: salt, Iterations: 1})}, oidDESEDE3CBC, iv16, ct),
		"aes partial block": key(pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: raw(pbkdf2Params{Salt: salt, Iterations: 1})}, oidAES128CBC, iv16, ct[:17]),
		"pbe-sha1-3des 2^31-1": func() []byte {
			b, _ := asn1.Marshal(struct {
				Algorithm pkix.AlgorithmIdentifier
				Data      []byte
			}{pkix.AlgorithmIdentifier{Algorithm: oidPBESHA13DES, Parameters: raw(struct {
				Salt []byte
				N    int
			}{salt, 1<<31 - 1})}, ct})
			return b
		}(),
	}
	for name, der := range cases {
		start := time.Now()
		if _, err := parseEncryptedPKCS8(der, []byte("pw")); !errors.Is(err, ErrKey) {
			t.Errorf("%s: %v, want ErrKey", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %s", name, d)
		}
	}
}
