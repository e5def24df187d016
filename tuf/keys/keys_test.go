package keys

import (
	"encoding/json"
	"errors"
	"runtime"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/internal/testutil"
)

func TestKeysRoundTrip(t *testing.T) {
	kdftest.Fast()
	for _, kt := range []string{Ed25519, ECDSA, RSA} {
		k, err := Generate(kt)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := k.Encrypt([]byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decrypt(enc, []byte("wrong")); !errors.Is(err, ErrPassword) {
			t.Fatalf("%s: wrong password: %v", kt, err)
		}
		k2, err := Decrypt(enc, []byte("secret"))
		if err != nil || k2.KeyID() != k.KeyID() {
			t.Fatalf("%s: %v", kt, err)
		}
		// signatures verify with go-tuf
		root := metadata.Root()
		if err := root.Signed.AddKey(k.Public(), metadata.ROOT); err != nil {
			t.Fatal(err)
		}
		if err := SignMetadata(root, k2); err != nil {
			t.Fatal(err)
		}
		if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
			t.Fatalf("%s: %v", kt, err)
		}
		pub, err := ParsePublic(enc)
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := pub.ID(); id != k.KeyID() {
			t.Fatalf("%s: public key id %s", kt, id)
		}
		// tampering with the readable public part is detected
		tampered := []byte(string(enc))
		for i := range tampered {
			if tampered[i] == '"' && string(tampered[i:i+8]) == `"keyid":` {
				tampered[i+11] ^= 1
				break
			}
		}
		if _, err := Decrypt(tampered, []byte("secret")); err == nil {
			t.Fatalf("%s: tampered key file accepted", kt)
		}
	}
}

func FuzzDecrypt(f *testing.F) {
	kdftest.Set(1 << 4)
	k, _ := Generate(Ed25519)
	enc, _ := k.Encrypt([]byte("pw"))
	f.Add(enc)
	f.Add([]byte(`{"format":"trainyard-tuf-key/v1","kdf":{"name":"scrypt","n":1048576}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Decrypt(data, []byte("pw"))
		_, _ = ParsePublic(data)
	})
}

// A key file is written at the full cost unless this module's tests lowered
// it (the cost is not a variable an importer could change).
func TestKDFCost(t *testing.T) {
	t.Cleanup(kdftest.Fast)
	k, err := Generate(Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		set  func()
		want int
	}{{func() { kdftest.Set(0) }, 1 << 15}, {kdftest.Fast, 1 << 10}} {
		c.set()
		enc, err := k.Encrypt([]byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		var f encryptedFile
		if err := json.Unmarshal(enc, &f); err != nil {
			t.Fatal(err)
		}
		if f.KDF.N != c.want {
			t.Errorf("kdf n = %d, want %d", f.KDF.N, c.want)
		}
	}
}

// Unlocking a repository's keys one after another (push-metadata unlocks
// three) holds one scrypt scratch (128·r·N bytes, 32 MiB at the default
// cost) at a time, not one per key left for the garbage collector.
func TestDecryptScratchReturned(t *testing.T) {
	kdftest.Set(0) // the real cost: the scratch is what is measured
	t.Cleanup(kdftest.Fast)
	k, err := Generate(Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := k.Encrypt([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	peak := testutil.PeakHeap(func() {
		for i := 0; i < 3; i++ {
			if _, err := Decrypt(enc, []byte("pw")); err != nil {
				t.Error(err)
			}
		}
	})
	const scratch = 128 * scryptR * scryptN
	if peak > scratch+scratch/2 {
		t.Fatalf("peak heap %d MiB unlocking 3 keys; one scratch is %d MiB", peak>>20, scratch>>20)
	}
	t.Logf("peak heap %d MiB for 3 keys (one scratch %d MiB)", peak>>20, scratch>>20)
}
