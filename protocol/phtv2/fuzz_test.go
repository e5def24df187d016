package phtv2

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/trainyard/trainyard/train"
)

func FuzzDecrypt(f *testing.F) {
	key := seq(0, 32)
	var ct bytes.Buffer
	rawCBCEncrypt(&ct, bytes.NewReader([]byte("hello PHT, more than one block of text")), key, seq(0x10, 16))
	f.Add(ct.Bytes())
	f.Add([]byte{})
	f.Add(make([]byte, 15))
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, data []byte) {
		var pt bytes.Buffer
		err := rawCBCDecrypt(&pt, bytes.NewReader(data), key)
		if err != nil {
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("error without ErrDecrypt: %v", err)
			}
			return
		}
		// Whatever decrypts re-encrypts under its own IV to the same bytes.
		var again bytes.Buffer
		if err := rawCBCEncrypt(&again, bytes.NewReader(pt.Bytes()), key, data[:16]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Bytes(), data) {
			t.Fatal("decrypt/encrypt round trip differs")
		}
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(pyTrain, "keys/user.pem")); err == nil {
		f.Add(b, []byte("secret"))
	}
	if b, err := os.ReadFile(filepath.Join(pyTrain, "keys/s2.pem")); err == nil {
		f.Add(b, []byte(nil))
	}
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n"), []byte("x"))
	f.Fuzz(func(t *testing.T, data, password []byte) {
		k, err := ParsePrivateKey(data, password)
		if err != nil {
			if !errors.Is(err, ErrKey) {
				t.Fatalf("error without ErrKey: %v", err)
			}
			return
		}
		if k == nil {
			t.Fatal("nil key without error")
		}
	})
}

// FuzzDecryptPKCS8 drives the encrypted PKCS#8 reader (youmark/pkcs8 with
// our KDFs and ciphers, and the PKCS#12 PBE) with arbitrary DER.
func FuzzDecryptPKCS8(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(pyTrain, "keys/user.pem")); err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			f.Add(blk.Bytes)
		}
	}
	// One key per encrypted form openssl writes (password "secret").
	seeds, _ := filepath.Glob("testdata/pkcs8/*.der")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := parseEncryptedPKCS8(der, []byte("secret"))
		if err != nil {
			if !errors.Is(err, ErrKey) {
				t.Fatalf("error without ErrKey: %v", err)
			}
			return
		}
		if k == nil {
			t.Fatal("nil key without error")
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add("2d2d2d2d2d424547494e205055424c4943204b45592d2d2d2d2d0a")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, h string) {
		k, err := ParsePublicKey(train.HexString(h))
		if err != nil {
			if !errors.Is(err, ErrKey) {
				t.Fatalf("error without ErrKey: %v", err)
			}
			return
		}
		if k == nil || k.N == nil {
			t.Fatal("nil key")
		}
	})
}
