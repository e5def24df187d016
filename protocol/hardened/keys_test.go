package hardened

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestKeyPEMRoundTrip(t *testing.T) {
	k := mustKey(t)
	priv, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(priv), "BEGIN PRIVATE KEY") != 2 {
		t.Fatalf("want two PKCS#8 blocks:\n%s", priv)
	}
	k2, err := ParsePrivateKeyPEM(priv)
	if err != nil || !k2.Public().Equal(k.Public()) {
		t.Fatalf("private round trip: %v", err)
	}
	pub, err := k.Public().MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ParsePublicKeyPEM(pub)
	if err != nil || !p2.Equal(k.Public()) || p2.SignKeyID() != k.Public().SignKeyID() {
		t.Fatalf("public round trip: %v", err)
	}
	if k.Public().SignKeyID() == k.Public().EncKeyID() || !strings.HasPrefix(p2.EncKeyID(), "sha256:") {
		t.Fatal("key ids")
	}
	// Only one half, a private key where a public one is expected, junk.
	half := pub[:strings.Index(string(pub), "-----END PUBLIC KEY-----")+len("-----END PUBLIC KEY-----\n")]
	for name, in := range map[string]string{"half": string(half), "private": string(priv), "junk": "hello", "twice": string(pub) + string(pub)} {
		if _, err := ParsePublicKeyPEM([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ParsePrivateKeyPEM(pub); !errors.Is(err, ErrMalformed) {
		t.Errorf("public as private: %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	priv, pub := dir+"/st.key", dir+"/st.pub"
	k, err := GenerateKeyFiles(priv, pub)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file mode: %v %v", fi, err)
	}
	k2, err := LoadPrivateKey(priv)
	if err != nil || !k2.Public().Equal(k.Public()) {
		t.Fatal(err)
	}
	p, err := LoadPublicKey(pub)
	if err != nil || !p.Equal(k.Public()) {
		t.Fatal(err)
	}
	if _, err := GenerateKeyFiles(priv, pub); err == nil {
		t.Fatal("overwrote an existing key")
	}
}
