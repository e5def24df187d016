package errdefs

import "errors"

// The kinds. Each is a root: it matches only itself (and, for the
// refinements below, its parent kind).
var (
	// ErrTampered: content does not match what was signed or hashed
	// (a digest, a length, an AEAD tag).
	ErrTampered = errors.New("tampered")
	// ErrSignature: a signature does not verify, or too few do.
	ErrSignature = errors.New("bad signature")
	// ErrMalformed: the input cannot be parsed as what it claims to be.
	ErrMalformed = errors.New("malformed")
	// ErrUntrusted: a key or signer is unknown to the trust root, or
	// disagrees with it.
	ErrUntrusted = errors.New("untrusted")
	// ErrUnapproved: the trust root holds no approval for this code.
	ErrUnapproved = errors.New("unapproved")
	// ErrReplay: an old or already processed message (a replayed stop, a
	// TUF version rollback).
	ErrReplay = errors.New("replay")
	// ErrExpired: signed metadata or an approval is past its expiry.
	ErrExpired = errors.New("expired")
	// ErrNotFound: the named thing does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: the thing to create exists already.
	ErrExists = errors.New("already exists")
	// ErrUnauthorized: credentials are missing, wrong, expired or revoked.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnsupported: valid input that trainyard refuses by design (an
	// unknown algorithm, a symlink in a train tree).
	ErrUnsupported = errors.New("unsupported")
	// ErrLimit: a size, count, depth or rate bound was exceeded.
	ErrLimit = errors.New("over a limit")
)

// ErrResultsTooLarge: a train's results exceed their byte cap. It is a
// refinement of ErrLimit, so errors.Is(err, ErrLimit) holds for it too.
var ErrResultsTooLarge = New("results too large", ErrLimit)

// New returns a sentinel with message msg that matches each of kinds (and
// whatever those match) with errors.Is. The kinds do not show in the
// message: a package's sentinel reads as before.
func New(msg string, kinds ...error) error {
	return &sentinel{msg: msg, kinds: kinds}
}

type sentinel struct {
	msg   string
	kinds []error
}

func (e *sentinel) Error() string { return e.msg }

// Unwrap lets errors.Is and errors.As walk to the kinds.
func (e *sentinel) Unwrap() []error { return e.kinds }
