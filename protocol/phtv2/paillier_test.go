package phtv2

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/trainyard/trainyard/train"
)

var (
	paillierOnce sync.Once
	paillierJSON []byte
)

// testPaillierKey is a 1024-bit key, as python-paillier writes it (p, q).
func testPaillierKey(t testing.TB) (*PaillierKey, []byte) {
	t.Helper()
	paillierOnce.Do(func() {
		p, _ := rand.Prime(rand.Reader, 512)
		q, _ := rand.Prime(rand.Reader, 512)
		paillierJSON = []byte(fmt.Sprintf(`{"p": %s, "q": "%s", "comment": "test"}`, p, q))
	})
	k, err := ParsePaillierKey(paillierJSON)
	if err != nil {
		t.Fatal(err)
	}
	return k, paillierJSON
}

func unit(t testing.TB, k *PaillierKey) *big.Int {
	for {
		r, err := rand.Int(rand.Reader, k.N)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sign() > 0 && new(big.Int).GCD(nil, nil, r, k.N).Cmp(big.NewInt(1)) == 0 {
			return r
		}
	}
}

func TestPaillierHomomorphicSum(t *testing.T) {
	k, _ := testPaillierKey(t)
	// The same key in the paillier-bigint form (n, lambda, mu) decrypts alike.
	k2, err := ParsePaillierKey([]byte(fmt.Sprintf(`{"n": "%s", "lambda": "%s", "mu": %s, "g": "%s"}`, k.N, k.Lambda, k.Mu, new(big.Int).Add(k.N, big.NewInt(1)))))
	if err != nil {
		t.Fatal(err)
	}
	// Stations add their counts under encryption: Enc(a)·Enc(b) = Enc(a+b).
	sum := k.Encrypt(big.NewInt(0), unit(t, k))
	for _, v := range []int64{17, 25, -3} {
		sum.Mul(sum, k.Encrypt(big.NewInt(v), unit(t, k)))
		sum.Mod(sum, k.n2)
	}
	for _, key := range []*PaillierKey{k, k2} {
		m, err := key.Decrypt(sum)
		if err != nil || m.Int64() != 39 {
			t.Fatalf("sum = %v, %v; want 39", m, err)
		}
	}
	for _, c := range []*big.Int{big.NewInt(0), new(big.Int).Set(k.n2)} {
		if _, err := k.Decrypt(c); !errors.Is(err, ErrPaillier) {
			t.Fatalf("out-of-range ciphertext %v: %v", c, err)
		}
	}
	for _, bad := range []string{`[]`, `{"n": "x", "lambda": 1, "mu": 1}`, `{"p": 4}`, `{"n": -5, "lambda": 1, "mu": 1}`, `{"p": 5, "q": 5, "n": 26}`} {
		if _, err := ParsePaillierKey([]byte(bad)); !errors.Is(err, ErrPaillier) {
			t.Fatalf("key %s: %v, want ErrPaillier", bad, err)
		}
	}
}

// A train whose results hold a *.he.json goes through a stop; the creator
// decrypts the AES layer, then every Paillier number in the file.
func TestPaillierResultsOfARoute(t *testing.T) {
	ctx := context.Background()
	k, _ := testPaillierKey(t)
	he := fmt.Sprintf(`{"patients": %s, "by_site": [%s, 1.5, "n/a"], "note": "x"}`, k.Encrypt(big.NewInt(42), unit(t, k)), k.Encrypt(big.NewInt(-7), unit(t, k)))
	pre := preRun(t, markedTrain(t, baseImage(t)), "s1")
	ran, layer, err := train.ReplaceResults(ctx, pre, resultsDir(t, map[string]string{"agg/sum.he.json": he, "plain.txt": "p"}), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Remove()
	out, err := postRun(t, ran, "s1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := DecryptResults(ctx, out, testKeys(t)["user"], dir); err != nil {
		t.Fatal(err)
	}
	n, err := DecryptHEFiles(dir, k)
	if err != nil || n != 1 {
		t.Fatalf("decrypted %d files: %v", n, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "agg", "sum.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Patients int64
		BySite   []any `json:"by_site"`
		Note     string
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Patients != 42 || got.BySite[0].(float64) != -7 || got.BySite[1].(float64) != 1.5 || got.BySite[2] != "n/a" || got.Note != "x" {
		t.Fatalf("decrypted %s", b)
	}
	// Garbage is one clear error.
	for _, bad := range []string{`{"a": `, `{"a": 0}`, `{} {}`} {
		if err := DecryptHEJSON(&bytes.Buffer{}, strings.NewReader(bad), k); !errors.Is(err, ErrPaillier) {
			t.Fatalf("%q: %v, want ErrPaillier", bad, err)
		}
	}
}

// FuzzDecryptHEJSON: arbitrary documents and key files give a result or
// an ErrPaillier, never a panic.
func FuzzDecryptHEJSON(f *testing.F) {
	f.Add([]byte(`{"p": 11, "q": 13}`), []byte(`{"a": [5, 1.5, "s", {"b": 7}]}`))
	f.Add([]byte(`{"n": 143, "lambda": 60, "mu": 31}`), []byte(`123`))
	f.Add([]byte(`{}`), []byte(`[`))
	f.Fuzz(func(t *testing.T, key, doc []byte) {
		k, err := ParsePaillierKey(key)
		if err != nil {
			if !errors.Is(err, ErrPaillier) {
				t.Fatalf("key error without ErrPaillier: %v", err)
			}
			return
		}
		if k.N.BitLen() > 2048 {
			return // keep exponentiations cheap for the fuzzer
		}
		if err := DecryptHEJSON(&bytes.Buffer{}, bytes.NewReader(doc), k); err != nil && !errors.Is(err, ErrPaillier) {
			t.Fatalf("error without ErrPaillier: %v", err)
		}
	})
}
