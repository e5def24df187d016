package hardened

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func pass(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }

func TestEncryptedKeyFiles(t *testing.T) {
	dir := t.TempDir()
	priv, pub := dir+"/st.key", dir+"/st.pub"
	k, err := GenerateKeyFiles(priv, pub, WithPassphrase(pass("correct horse")))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(priv)
	if strings.Count(string(raw), "BEGIN ENCRYPTED PRIVATE KEY") != 2 || bytes.Contains(raw, []byte("BEGIN PRIVATE KEY")) {
		t.Fatalf("want two encrypted PKCS#8 blocks:\n%s", raw)
	}
	k2, err := LoadPrivateKey(priv, WithPassphrase(pass("correct horse")))
	if err != nil || !k2.Public().Equal(k.Public()) {
		t.Fatalf("load with the passphrase: %v", err)
	}
	for name, opts := range map[string][]KeyFileOption{
		"none":  nil,
		"wrong": {WithPassphrase(pass("battery staple"))},
		"empty": {WithPassphrase(pass(""))},
	} {
		if _, err := LoadPrivateKey(priv, opts...); !errors.Is(err, ErrPassphrase) {
			t.Errorf("%s passphrase: %v, want ErrPassphrase", name, err)
		}
	}
	// The passphrase is asked only for encrypted keys.
	asked := false
	plainPriv := dir + "/plain.key"
	if _, err := GenerateKeyFiles(plainPriv, dir+"/plain.pub"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(plainPriv, WithPassphrase(func() ([]byte, error) { asked = true; return nil, nil })); err != nil || asked {
		t.Fatalf("plain key: %v, asked %v", err, asked)
	}
	// An empty passphrase is refused when writing.
	if _, err := GenerateKeyFiles(dir+"/e.key", dir+"/e.pub", WithPassphrase(pass(""))); !errors.Is(err, ErrPassphrase) {
		t.Fatalf("empty passphrase on write: %v", err)
	}
	// A private key given as a public one says so.
	if _, err := LoadPublicKey(priv); !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), ".pub") {
		t.Fatalf("private key as public: %v", err)
	}

	// OpenSSL opens the file (the format is standard PBES2, scrypt + AES-256-CBC).
	if _, err := exec.LookPath("openssl"); err != nil {
		return
	}
	first := raw[:bytes.Index(raw, []byte("-----END ENCRYPTED PRIVATE KEY-----"))+len("-----END ENCRYPTED PRIVATE KEY-----\n")]
	cmd := exec.Command("openssl", "pkey", "-passin", "pass:correct horse", "-noout", "-text")
	cmd.Stdin = bytes.NewReader(first)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "ED25519") {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
}
