// Package hardened implements trainyard's own train protocol, "trainyard/v1".
//
// It replaces the trust model of the legacy PHT protocol (research/pht.md §5):
// every verification and encryption key comes from a TrustStore (backed by
// TUF in production), never from the train itself; the creator signs the
// route, the code manifest (every path, mode and content) and the image's
// exec config; each stop is a record signed by its station and chained to
// the previous one; code and results are sealed with a chunked AES-256-GCM
// stream whose key is wrapped with HPKE (X25519) only to route participants.
//
// The package works on plain Go values, readers and directories. Packing the
// envelope and the sealed blobs into image layers is the station glue's job.
// See docs/protocol.md for the wire format and the threat model.
package hardened

import (
	"errors"

	"github.com/trainyard/trainyard/errdefs"
)

// Sentinel errors. Every error returned by this package that describes a
// refused train wraps exactly one of these, so callers branch with errors.Is.
var (
	// ErrMalformed: the input cannot be parsed (bad JSON, bad base64, bad header).
	ErrMalformed = errdefs.New("malformed train", errdefs.ErrMalformed)
	// ErrSignature: a signature does not verify with the trusted key.
	ErrSignature = errdefs.New("bad signature", errdefs.ErrSignature)
	// ErrTampered: content does not match what was signed (digest, manifest, AEAD tag).
	ErrTampered = errdefs.New("train content tampered", errdefs.ErrTampered)
	// ErrUntrusted: a participant is unknown to the trust store, or a key named
	// in the train disagrees with the trust store.
	ErrUntrusted = errdefs.New("untrusted key", errdefs.ErrUntrusted)
	// ErrUnapproved: the trust store holds no approval for the train's code.
	ErrUnapproved = errdefs.New("train not approved", errdefs.ErrUnapproved)
	// ErrRoute: the train is not at this station, the stops disagree with the
	// signed route, or results are wrapped to someone outside the route.
	ErrRoute = errors.New("route violation")
	// ErrReplay: a stop record belongs to another train or position, or this
	// station already processed this stop.
	ErrReplay = errdefs.New("replayed train", errdefs.ErrReplay)
	// ErrUnsupported: input the protocol refuses by design (a symlink or
	// device in a tree, an oversized tree, an unknown algorithm).
	ErrUnsupported = errdefs.New("unsupported input", errdefs.ErrUnsupported)
)

// Refinements of ErrUnsupported (they match it with errors.Is too).
var (
	// ErrResultsTooLarge: the results exceed the byte cap (WithMaxResults),
	// counted by apparent size, so a sparse file counts as what it claims.
	ErrResultsTooLarge = errdefs.New("unsupported input: results too large", ErrUnsupported, errdefs.ErrResultsTooLarge)
	// ErrTreeBounds: a tree is nested too deep, has a path or name too long,
	// or too many entries.
	ErrTreeBounds = errdefs.New("unsupported input: tree out of bounds", ErrUnsupported, errdefs.ErrLimit)
)
