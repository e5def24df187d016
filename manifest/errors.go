package manifest

import "github.com/trainyard/trainyard/errdefs"

// kindError is a sentinel that can sit under a broader one, so that callers
// may branch on ErrMediaType or on the wider ErrInvalid with errors.Is.
// The roots match trainyard's shared kinds (errdefs) too.
type kindError struct {
	msg    string
	parent error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.parent }

// Errors callers branch on. Every error the package returns wraps one of them.
var (
	// ErrInvalid: the document is not a well-formed manifest of its kind.
	ErrInvalid error = &kindError{msg: "invalid manifest", parent: errdefs.ErrMalformed}
	// ErrDuplicateKey: a JSON object repeats a key (CVE-2014-8179 class).
	ErrDuplicateKey error = &kindError{msg: "duplicate JSON key", parent: ErrInvalid}
	// ErrMediaType: the declared media type disagrees with the content, or
	// the media type is unknown where a known one is required.
	ErrMediaType error = &kindError{msg: "media type mismatch", parent: ErrInvalid}
	// ErrAmbiguous: the document could be read as both a manifest and an
	// index (CVE-2021-41190).
	ErrAmbiguous error = &kindError{msg: "ambiguous manifest", parent: ErrInvalid}
	// ErrSignature: a schema1 JWS signature does not verify.
	ErrSignature error = &kindError{msg: "signature verification failed", parent: errdefs.ErrSignature}
	// ErrUnsigned: verification was asked of a schema1 manifest without signatures.
	ErrUnsigned error = &kindError{msg: "manifest is not signed", parent: ErrSignature}
	// ErrTooLarge: the manifest exceeds the configured size limit.
	ErrTooLarge error = &kindError{msg: "manifest too large", parent: errdefs.ErrLimit}
	// ErrDigestMismatch: content does not hash to the expected digest.
	ErrDigestMismatch error = &kindError{msg: "digest mismatch", parent: errdefs.ErrTampered}
	// ErrSizeMismatch: content length differs from the descriptor size.
	ErrSizeMismatch error = &kindError{msg: "size mismatch", parent: ErrDigestMismatch}
	// ErrUnsupported: a valid but unsupported algorithm, key or conversion.
	ErrUnsupported error = &kindError{msg: "unsupported", parent: errdefs.ErrUnsupported}
)
