package manifest

import (
	"bytes"
	_ "crypto/sha256" // registers sha256 with go-digest
	_ "crypto/sha512" // registers sha512 with go-digest
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// Supported digest algorithms. The set is closed on purpose: sha384 (which
// go-digest also knows) is not an OCI-registered algorithm.
const (
	SHA256 = digest.SHA256
	SHA512 = digest.SHA512
)

// ParseDigest parses s and accepts only sha256 and sha512 with lowercase hex
// of the exact length (CVE-2024-3727: never use an unvalidated digest).
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if errors.Is(err, digest.ErrDigestUnsupported) {
		return "", fmt.Errorf("%w: digest algorithm in %q", ErrUnsupported, clip(s))
	}
	if err != nil {
		return "", fmt.Errorf("%w: digest %q: %w", ErrInvalid, clip(s), err)
	}
	switch d.Algorithm() {
	case SHA256, SHA512:
	default:
		return "", fmt.Errorf("%w: digest algorithm %q", ErrUnsupported, clip(string(d.Algorithm())))
	}
	return d, nil
}

// Compute returns the digest of b with algorithm alg (sha256 or sha512).
func Compute(alg digest.Algorithm, b []byte) (digest.Digest, error) {
	switch alg {
	case SHA256, SHA512:
		return alg.FromBytes(b), nil
	}
	return "", fmt.Errorf("%w: digest algorithm %q", ErrUnsupported, clip(string(alg)))
}

// VerifyBytes checks that b hashes to want, using want's algorithm.
func VerifyBytes(want digest.Digest, b []byte) error {
	if _, err := ParseDigest(string(want)); err != nil {
		return err
	}
	got := want.Algorithm().FromBytes(b)
	if got != want {
		return fmt.Errorf("%w: want %s, got %s", ErrDigestMismatch, want, got)
	}
	return nil
}

// VerifyContent checks data against a descriptor: size first, then digest.
// Quay checks only the size; a blob with the right length and the wrong
// bytes must not pass.
func VerifyContent(desc Descriptor, data []byte) error {
	return VerifyReader(desc, bytes.NewReader(data))
}

// VerifyReader streams r and checks it against desc's size and digest,
// reading at most size+1 bytes so that oversized content cannot exhaust memory.
func VerifyReader(desc Descriptor, r io.Reader) error {
	if desc.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrInvalid, desc.Size)
	}
	if _, err := ParseDigest(string(desc.Digest)); err != nil {
		return err
	}
	v := desc.Digest.Verifier()
	n, err := io.Copy(v, io.LimitReader(r, desc.Size+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", desc.Digest, err)
	}
	if n != desc.Size {
		if n > desc.Size {
			return fmt.Errorf("%w: %s is longer than its descriptor size %d", ErrSizeMismatch, desc.Digest, desc.Size)
		}
		return fmt.Errorf("%w: %s has %d bytes, descriptor says %d", ErrSizeMismatch, desc.Digest, n, desc.Size)
	}
	if !v.Verified() {
		return fmt.Errorf("%w: content does not hash to %s", ErrDigestMismatch, desc.Digest)
	}
	return nil
}

// clip keeps attacker-controlled strings short in error messages.
func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
