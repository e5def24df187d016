package phtv2

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/trainyard/trainyard/internal/fsutil"
)

// Paillier results: trains that add up counts homomorphically (the
// library's homomorphic_addition, creator.paillier_public_key) leave
// *.he.json files whose numbers are Paillier ciphertexts; the desktop app
// decrypts every number in them. Written here with math/big because the
// scheme is a few lines of modular arithmetic and no maintained Go module
// reads these key files.

// ErrPaillier is wrapped by errors about Paillier keys and ciphertexts.
var ErrPaillier = errors.New("paillier")

// Bounds: a key file is a few KiB, a result file holds numbers, not data.
const (
	maxPaillierKey  = 1 << 20
	maxHEJSON       = 64 << 20
	maxPaillierBits = 16384
)

// PaillierKey is a Paillier private key with g = n+1.
type PaillierKey struct {
	N, Lambda, Mu *big.Int
	n2            *big.Int
}

// ParsePaillierKey reads a JSON private key: {"n", "lambda", "mu"} (the
// JavaScript paillier-bigint fields) or {"p", "q"} (python-paillier's),
// each a JSON integer or a decimal string; other keys are ignored.
func ParsePaillierKey(b []byte) (*PaillierKey, error) {
	if len(b) > maxPaillierKey {
		return nil, fmt.Errorf("%w: key file larger than %d bytes", ErrPaillier, maxPaillierKey)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: key is not a JSON object: %v", ErrPaillier, err)
	}
	get := func(k string) (*big.Int, error) {
		v, ok := raw[k]
		if !ok {
			return nil, nil
		}
		s := strings.Trim(strings.TrimSpace(string(v)), `"`)
		x, ok := new(big.Int).SetString(s, 10)
		if !ok || x.Sign() <= 0 || x.BitLen() > maxPaillierBits {
			return nil, fmt.Errorf("%w: key field %q is not a positive integer of at most %d bits", ErrPaillier, k, maxPaillierBits)
		}
		return x, nil
	}
	vals := map[string]*big.Int{}
	for _, k := range []string{"n", "lambda", "mu", "p", "q"} {
		x, err := get(k)
		if err != nil {
			return nil, err
		}
		vals[k] = x
	}
	k := &PaillierKey{N: vals["n"], Lambda: vals["lambda"], Mu: vals["mu"]}
	one := big.NewInt(1)
	if p, q := vals["p"], vals["q"]; p != nil && q != nil {
		n := new(big.Int).Mul(p, q)
		if k.N != nil && k.N.Cmp(n) != 0 {
			return nil, fmt.Errorf("%w: n is not p*q", ErrPaillier)
		}
		p1, q1 := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
		g := new(big.Int).GCD(nil, nil, p1, q1)
		k.N = n
		k.Lambda = new(big.Int).Div(new(big.Int).Mul(p1, q1), g)
		k.Mu = new(big.Int).ModInverse(k.Lambda, n)
		if k.Mu == nil {
			return nil, fmt.Errorf("%w: p and q do not make a Paillier key", ErrPaillier)
		}
	}
	if k.N == nil || k.Lambda == nil || k.Mu == nil || k.N.Cmp(big.NewInt(3)) < 0 {
		return nil, fmt.Errorf("%w: key needs n, lambda and mu (or p and q)", ErrPaillier)
	}
	k.n2 = new(big.Int).Mul(k.N, k.N)
	return k, nil
}

// LoadPaillierKeyFile reads ParsePaillierKey's format from a file.
func LoadPaillierKeyFile(path string) (*PaillierKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPaillierKey+1))
	if err != nil {
		return nil, err
	}
	return ParsePaillierKey(b)
}

// Decrypt returns L(c^lambda mod n²)·mu mod n, as a signed value: results
// above n/2 are negative numbers (python-paillier's encoding).
func (k *PaillierKey) Decrypt(c *big.Int) (*big.Int, error) {
	if c.Sign() <= 0 || c.Cmp(k.n2) >= 0 {
		return nil, fmt.Errorf("%w: ciphertext out of range", ErrPaillier)
	}
	u := new(big.Int).Exp(c, k.Lambda, k.n2)
	u.Sub(u, big.NewInt(1))
	u.Div(u, k.N)
	u.Mul(u, k.Mu)
	u.Mod(u, k.N)
	if half := new(big.Int).Rsh(k.N, 1); u.Cmp(half) > 0 {
		u.Sub(u, k.N)
	}
	return u, nil
}

// Encrypt is Paillier encryption with g = n+1 and randomness r (a unit
// mod n). It exists for tests and for trains written in Go.
func (k *PaillierKey) Encrypt(m, r *big.Int) *big.Int {
	mm := new(big.Int).Mod(m, k.N)
	gm := new(big.Int).Mul(mm, k.N) // (n+1)^m = 1 + m·n mod n²
	gm.Add(gm, big.NewInt(1))
	rn := new(big.Int).Exp(r, k.N, k.n2)
	gm.Mul(gm, rn)
	return gm.Mod(gm, k.n2)
}

// DecryptHEJSON decrypts every integer in the JSON document r and writes
// the document with the plaintexts to w. Floats, strings and other values
// are kept as they are.
func DecryptHEJSON(w io.Writer, r io.Reader, k *PaillierKey) error {
	lr := &io.LimitedReader{R: r, N: maxHEJSON + 1}
	dec := json.NewDecoder(lr)
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("%w: not JSON: %v", ErrPaillier, err)
	}
	if lr.N <= 0 {
		return fmt.Errorf("%w: document larger than %d bytes", ErrPaillier, maxHEJSON)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON document", ErrPaillier)
	}
	out, err := decryptValue(doc, k)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func decryptValue(v any, k *PaillierKey) (any, error) {
	switch x := v.(type) {
	case json.Number:
		c, ok := new(big.Int).SetString(x.String(), 10)
		if !ok {
			return x, nil // a float: not a ciphertext
		}
		m, err := k.Decrypt(c)
		if err != nil {
			return nil, err
		}
		return json.Number(m.String()), nil
	case []any:
		for i := range x {
			d, err := decryptValue(x[i], k)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			x[i] = d
		}
	case map[string]any:
		for key, e := range x {
			d, err := decryptValue(e, k)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			x[key] = d
		}
	}
	return v, nil
}

// DecryptHEFiles decrypts every regular *.he.json under dir (the creator's
// decrypted results) into a NAME.json beside it (temp file + rename) and
// returns how many it wrote. Symlinks are not followed.
func DecryptHEFiles(dir string, k *PaillierKey) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), ".he.json") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		err = DecryptHEJSON(&buf, f, k)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if err := fsutil.WriteFileAtomic(strings.TrimSuffix(p, ".he.json")+".json", buf.Bytes(), 0o600); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}
