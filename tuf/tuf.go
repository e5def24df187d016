// Package tuf holds what trainyard's TUF publisher (tuf/repo) and client
// (tuf/client) share: the errors callers branch on and the expiry listing. The registry layout lives
// in tuf/ocistore, keys in tuf/keys. See docs/tuf.md.
package tuf

import (
	"errors"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Errors callers branch on. Every refusal of the TUF client wraps one of
// them (and the go-tuf error that caused it).
var (
	// ErrSignature: a signature threshold was not met (bad, missing or
	// untrusted signatures, wrong root key).
	ErrSignature = errors.New("tuf: signature threshold not met")
	// ErrExpired: trusted metadata has expired (freeze attack or a
	// publisher that stopped re-signing).
	ErrExpired = errors.New("tuf: metadata expired")
	// ErrRollback: a version went backwards or does not match what the
	// referring role says (rollback or mix-and-match).
	ErrRollback = errors.New("tuf: version rollback or mismatch")
	// ErrTampered: a file's length or hashes differ from the signed ones.
	ErrTampered = errors.New("tuf: length or hash mismatch")
	// ErrNotFound: the target or metadata does not exist.
	ErrNotFound = errors.New("tuf: not found")
	// ErrTooLarge: a file is longer than allowed (endless-data attack).
	ErrTooLarge = errors.New("tuf: file too large")
	// ErrNotInitialized: no trusted root yet (run pull-metadata with a root).
	ErrNotInitialized = errors.New("tuf: no trusted root; bootstrap with a root.json or root public key")
	// ErrReserved: a target name that cannot be published.
	ErrReserved = errors.New("tuf: reserved or invalid target name")
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
