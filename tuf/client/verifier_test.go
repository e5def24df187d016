package client

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/tuf"
)

// TestVerifierCovered: the verifier leaves SHA-256 to the blob stream only
// when that stream checks the very same digest and nothing was hashed yet;
// length is always checked here.
func TestVerifierCovered(t *testing.T) {
	data := []byte("hello, world\n")
	sum := sha256.Sum256(data)
	tf := &metadata.TargetFiles{Path: "t", Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": sum[:]}}

	v, _ := newVerifier(tf)
	v.covered(hex.EncodeToString(sum[:]))
	if _, ok := v.hashes["sha256"]; ok {
		t.Fatal("same digest: still hashed twice")
	}
	_, _ = v.Write([]byte("hello, world!"))
	if err := v.check(); err != nil {
		t.Fatalf("covered digest is the stream's to check, length matches: %v", err)
	}
	v, _ = newVerifier(tf)
	v.covered(hex.EncodeToString(sum[:]))
	_, _ = v.Write(data[:3])
	if err := v.check(); !errors.Is(err, tuf.ErrTampered) {
		t.Fatalf("short target: %v", err)
	}

	other := sha256.Sum256([]byte("another blob"))
	v, _ = newVerifier(tf)
	v.covered(hex.EncodeToString(other[:]))
	if _, ok := v.hashes["sha256"]; !ok {
		t.Fatal("another blob's digest dropped the target's own check")
	}
	_, _ = v.Write([]byte("hello, world!"))
	if err := v.check(); !errors.Is(err, tuf.ErrTampered) {
		t.Fatalf("wrong bytes: %v", err)
	}

	v, _ = newVerifier(tf)
	_, _ = v.Write(data[:1])
	v.covered(hex.EncodeToString(sum[:]))
	if _, ok := v.hashes["sha256"]; !ok {
		t.Fatal("dropped after bytes were hashed")
	}
}
