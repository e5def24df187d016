// Package tuf holds what trainyard's TUF publisher (tuf/repo) and client
// (tuf/client) share: the errors callers branch on, the expiry listing and the parts of a
// multi-part target (Parts, SetParts). The registry layout lives
// in tuf/ocistore, keys in tuf/keys. See docs/tuf.md.
package tuf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/errdefs"
)

// Errors callers branch on. Every refusal of the TUF client wraps one of
// them (and the go-tuf error that caused it).
var (
	// ErrSignature: a signature threshold was not met (bad, missing or
	// untrusted signatures, wrong root key).
	ErrSignature = errdefs.New("tuf: signature threshold not met", errdefs.ErrSignature)
	// ErrExpired: trusted metadata has expired (freeze attack or a
	// publisher that stopped re-signing).
	ErrExpired = errdefs.New("tuf: metadata expired", errdefs.ErrExpired)
	// ErrRollback: a version went backwards or does not match what the
	// referring role says (rollback or mix-and-match).
	ErrRollback = errdefs.New("tuf: version rollback or mismatch", errdefs.ErrReplay)
	// ErrTampered: a file's length or hashes differ from the signed ones.
	ErrTampered = errdefs.New("tuf: length or hash mismatch", errdefs.ErrTampered)
	// ErrNotFound: the target or metadata does not exist.
	ErrNotFound = errdefs.New("tuf: not found", errdefs.ErrNotFound)
	// ErrTooLarge: a file is longer than allowed (endless-data attack).
	ErrTooLarge = errdefs.New("tuf: file too large", errdefs.ErrLimit)
	// ErrNotInitialized: no trusted root yet (run pull-metadata with a root).
	ErrNotInitialized = errors.New("tuf: no trusted root; bootstrap with a root.json or root public key")
	// ErrReserved: a target name that cannot be published.
	ErrReserved = errdefs.New("tuf: reserved or invalid target name", errdefs.ErrUnsupported)
	// ErrConflict: a publish would replace what another publisher (or
	// another state directory) put in the registry: a foreign repository,
	// a newer version, or a versioned file with other bytes.
	ErrConflict = errdefs.New("tuf: registry holds metadata this state did not publish", errdefs.ErrExists)
)

// Classify wraps a go-tuf error with the sentinel that describes it, so that
// callers can use errors.Is without knowing go-tuf's types. Errors that are
// already classified or unknown are returned as they are.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrSignature, ErrExpired, ErrRollback, ErrTampered, ErrNotFound, ErrTooLarge, ErrNotInitialized} {
		if errors.Is(err, s) {
			return err
		}
	}
	var (
		unsigned *metadata.ErrUnsignedMetadata
		expired  *metadata.ErrExpiredMetadata
		badVer   *metadata.ErrBadVersionNumber
		eqVer    *metadata.ErrEqualVersionNumber
		lenHash  *metadata.ErrLengthOrHashMismatch
		dlLen    *metadata.ErrDownloadLengthMismatch
		dlHTTP   *metadata.ErrDownloadHTTP
	)
	switch {
	case errors.As(err, &unsigned):
		return fmt.Errorf("%w: %w", ErrSignature, err)
	case errors.As(err, &expired):
		return fmt.Errorf("%w: %w", ErrExpired, err)
	case errors.As(err, &badVer), errors.As(err, &eqVer):
		return fmt.Errorf("%w: %w", ErrRollback, err)
	case errors.As(err, &lenHash):
		return fmt.Errorf("%w: %w", ErrTampered, err)
	case errors.As(err, &dlLen):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.As(err, &dlHTTP) && dlHTTP.StatusCode == 404:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Expiration is one role's expiry, as get-master-expirations and
// get-copy-expirations print it.
type Expiration struct {
	Role    string
	Expires time.Time
}

// Part is one piece of a multi-part target: a registry blob addressed by
// its sha256 (hex), Length bytes long. A target is its parts concatenated.
type Part struct {
	SHA256 string `json:"sha256"`
	Length int64  `json:"length"`
}

// customParts is the layout of a multi-part target's custom field:
// {"trainyard": {"parts": [{"sha256": "<hex>", "length": N}, ...]}}.
type customParts struct {
	Trainyard *struct {
		Parts []Part `json:"parts"`
	} `json:"trainyard"`
}

// Parts returns the parts of a signed target, in order. A target without
// trainyard parts in its custom field is one part: the blob whose sha256 is
// the target's own. The parts must add up to the target's signed length.
func Parts(tf *metadata.TargetFiles) ([]Part, error) {
	if tf.Custom != nil {
		var c customParts
		if err := json.Unmarshal(*tf.Custom, &c); err == nil && c.Trainyard != nil && len(c.Trainyard.Parts) > 0 {
			var sum int64
			for i, p := range c.Trainyard.Parts {
				if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != sha256.Size || p.Length < 0 {
					return nil, fmt.Errorf("%w: target %q: part %d is not a sha256 and a length", ErrTampered, tf.Path, i+1)
				}
				sum += p.Length
			}
			if sum != tf.Length {
				return nil, fmt.Errorf("%w: target %q: parts add up to %d bytes, signed length %d", ErrTampered, tf.Path, sum, tf.Length)
			}
			return c.Trainyard.Parts, nil
		}
	}
	h, ok := tf.Hashes["sha256"]
	if !ok || len(h) != sha256.Size {
		return nil, fmt.Errorf("target %q: no sha256 hash, cannot address it in a registry", tf.Path)
	}
	return []Part{{SHA256: hex.EncodeToString(h), Length: tf.Length}}, nil
}

// SetParts records parts in tf's custom field (replacing any custom value).
// One part needs no record: the blob is addressed by the target's sha256,
// so tf.Custom is cleared.
func SetParts(tf *metadata.TargetFiles, parts []Part) error {
	if len(parts) <= 1 {
		tf.Custom = nil
		return nil
	}
	var c customParts
	c.Trainyard = &struct {
		Parts []Part `json:"parts"`
	}{Parts: parts}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	raw := json.RawMessage(b)
	tf.Custom = &raw
	return nil
}
