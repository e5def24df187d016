package hardened

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestBlobsVerifiedStillRefusesTampering: with BlobsVerified pre-run skips
// its own digest pass, but a blob of another size is refused by its signed
// size, and a changed byte by the AEAD: trusting the caller's digest check
// costs no protection against a blob changed after it.
func TestBlobsVerifiedStillRefusesTampering(t *testing.T) {
	n := newTestNet(t)
	env, code := n.create(t)
	ctx := context.Background()
	run := func(blob []byte) error {
		dir := t.TempDir()
		_, err := PreRun(ctx, Party{ID: "st-a", Key: n.stations["st-a"], Trust: n.trust}, Train{Envelope: env, Code: bytes.NewReader(blob), BlobsVerified: true}, Dirs{Code: filepath.Join(dir, "code"), Results: filepath.Join(dir, "results")})
		return err
	}
	if err := run(code); err != nil {
		t.Fatalf("genuine blob: %v", err)
	}
	flipped := bytes.Clone(code)
	flipped[len(flipped)/2] ^= 1
	longer := append(bytes.Clone(code), 0)
	for name, blob := range map[string][]byte{"flipped byte": flipped, "one byte more": longer, "truncated": code[:len(code)-1]} {
		if err := run(blob); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: %v, want ErrTampered", name, err)
		}
	}
}
