package cli

import (
	"errors"
	"testing"

	"github.com/trainyard/trainyard/errdefs"
	"github.com/trainyard/trainyard/keyserver"
	"github.com/trainyard/trainyard/manifest"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/protocol/phtv2"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainrun"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/repo"
)

var errKinds = map[string]error{
	"Tampered": errdefs.ErrTampered, "Signature": errdefs.ErrSignature,
	"Malformed": errdefs.ErrMalformed, "Untrusted": errdefs.ErrUntrusted,
	"Unapproved": errdefs.ErrUnapproved, "Replay": errdefs.ErrReplay,
	"Expired": errdefs.ErrExpired, "NotFound": errdefs.ErrNotFound,
	"Exists": errdefs.ErrExists, "Unauthorized": errdefs.ErrUnauthorized,
	"Unsupported": errdefs.ErrUnsupported, "Limit": errdefs.ErrLimit,
	"ResultsTooLarge": errdefs.ErrResultsTooLarge,
}

// Every package sentinel matches exactly its shared kinds (docs/errors.md)
// and keeps the message it had before the vocabulary existed.
func TestSentinelsMatchTheirKind(t *testing.T) {
	for _, c := range []struct {
		name  string
		err   error
		msg   string
		kinds []string
	}{
		{"hardened.ErrMalformed", hardened.ErrMalformed, "malformed train", []string{"Malformed"}},
		{"hardened.ErrSignature", hardened.ErrSignature, "bad signature", []string{"Signature"}},
		{"hardened.ErrTampered", hardened.ErrTampered, "train content tampered", []string{"Tampered"}},
		{"hardened.ErrUntrusted", hardened.ErrUntrusted, "untrusted key", []string{"Untrusted"}},
		{"hardened.ErrUnapproved", hardened.ErrUnapproved, "train not approved", []string{"Unapproved"}},
		{"hardened.ErrReplay", hardened.ErrReplay, "replayed train", []string{"Replay"}},
		{"hardened.ErrUnsupported", hardened.ErrUnsupported, "unsupported input", []string{"Unsupported"}},
		{"hardened.ErrResultsTooLarge", hardened.ErrResultsTooLarge, "unsupported input: results too large", []string{"Unsupported", "ResultsTooLarge", "Limit"}},
		{"hardened.ErrTreeBounds", hardened.ErrTreeBounds, "unsupported input: tree out of bounds", []string{"Unsupported", "Limit"}},
		{"hardened.ErrRoute", hardened.ErrRoute, "route violation", nil},
		{"phtv2.ErrTampered", phtv2.ErrTampered, "train tampered", []string{"Tampered"}},
		{"phtv2.ErrSignature", phtv2.ErrSignature, "invalid signature", []string{"Signature"}},
		{"trainrun.ErrResultsTooLarge", trainrun.ErrResultsTooLarge, "results too large", []string{"ResultsTooLarge", "Limit"}},
		{"trainrun.ErrLayerDigest", trainrun.ErrLayerDigest, "layer content does not match its digest", []string{"Tampered"}},
		{"train.ErrResultsTooLarge", train.ErrResultsTooLarge, "results out of bounds", []string{"ResultsTooLarge", "Limit"}},
		{"train.ErrNotFound", train.ErrNotFound, "not found in image", []string{"NotFound"}},
		{"train.ErrLayout", train.ErrLayout, "bad train image layout", []string{"Malformed"}},
		{"train.ErrConfig", train.ErrConfig, "invalid train config", []string{"Malformed"}},
		{"train.ErrTooLarge", train.ErrTooLarge, "train input too large", []string{"Limit"}},
		{"registry.ErrNotFound", registry.ErrNotFound, "manifest not found", []string{"NotFound"}},
		{"registry.ErrExists", registry.ErrExists, "tag already holds other content", []string{"Exists"}},
		{"registry.ErrUnauthorized", registry.ErrUnauthorized, "registry refused the credentials", []string{"Unauthorized"}},
		{"keyserver.ErrUnauthorized", keyserver.ErrUnauthorized, "unauthorized: missing, unknown, expired or revoked token", []string{"Unauthorized"}},
		{"keyserver.ErrNotFound", keyserver.ErrNotFound, "no active fragment for this archive and device", []string{"NotFound"}},
		{"keyserver.ErrNotFoundToken", keyserver.ErrNotFoundToken, "no such token", []string{"NotFound"}},
		{"keyserver.ErrNoStore", keyserver.ErrNoStore, "no key-server database", []string{"NotFound"}},
		{"keyserver.ErrExists", keyserver.ErrExists, "already exists", []string{"Exists"}},
		{"keyserver.ErrRateLimited", keyserver.ErrRateLimited, "rate limited", []string{"Limit"}},
		{"trust.ErrBadApproval", trust.ErrBadApproval, "approval not signed by a known user", []string{"Untrusted"}},
		{"trust.ErrApprovalExpired", trust.ErrApprovalExpired, "approval expired", []string{"Expired"}},
		{"trust.ErrExists", trust.ErrExists, "already in the trust directory", []string{"Exists"}},
		{"trust.ErrDuplicateKey", trust.ErrDuplicateKey, "public key already registered under another id", []string{"Exists"}},
		{"trust.ErrNotListed", trust.ErrNotListed, "not in the trust directory", []string{"NotFound"}},
		{"tuf.ErrSignature", tuf.ErrSignature, "tuf: signature threshold not met", []string{"Signature"}},
		{"tuf.ErrExpired", tuf.ErrExpired, "tuf: metadata expired", []string{"Expired"}},
		{"tuf.ErrRollback", tuf.ErrRollback, "tuf: version rollback or mismatch", []string{"Replay"}},
		{"tuf.ErrTampered", tuf.ErrTampered, "tuf: length or hash mismatch", []string{"Tampered"}},
		{"tuf.ErrNotFound", tuf.ErrNotFound, "tuf: not found", []string{"NotFound"}},
		{"tuf.ErrTooLarge", tuf.ErrTooLarge, "tuf: file too large", []string{"Limit"}},
		{"tuf.ErrReserved", tuf.ErrReserved, "tuf: reserved or invalid target name", []string{"Unsupported"}},
		{"tuf.ErrConflict", tuf.ErrConflict, "tuf: registry holds metadata this state did not publish", []string{"Exists"}},
		{"repo.ErrNoMetadata", repo.ErrNoMetadata, "no metadata yet: run create-metadata first", []string{"NotFound"}},
		{"manifest.ErrInvalid", manifest.ErrInvalid, "invalid manifest", []string{"Malformed"}},
		{"manifest.ErrDuplicateKey", manifest.ErrDuplicateKey, "duplicate JSON key", []string{"Malformed"}},
		{"manifest.ErrMediaType", manifest.ErrMediaType, "media type mismatch", []string{"Malformed"}},
		{"manifest.ErrAmbiguous", manifest.ErrAmbiguous, "ambiguous manifest", []string{"Malformed"}},
		{"manifest.ErrSignature", manifest.ErrSignature, "signature verification failed", []string{"Signature"}},
		{"manifest.ErrUnsigned", manifest.ErrUnsigned, "manifest is not signed", []string{"Signature"}},
		{"manifest.ErrTooLarge", manifest.ErrTooLarge, "manifest too large", []string{"Limit"}},
		{"manifest.ErrDigestMismatch", manifest.ErrDigestMismatch, "digest mismatch", []string{"Tampered"}},
		{"manifest.ErrSizeMismatch", manifest.ErrSizeMismatch, "size mismatch", []string{"Tampered"}},
		{"manifest.ErrUnsupported", manifest.ErrUnsupported, "unsupported", []string{"Unsupported"}},
	} {
		if got := c.err.Error(); got != c.msg {
			t.Errorf("%s: message %q, want %q", c.name, got, c.msg)
		}
		want := map[string]bool{}
		for _, k := range c.kinds {
			want[k] = true
		}
		for k, kind := range errKinds {
			if got := errors.Is(c.err, kind); got != want[k] {
				t.Errorf("%s: errors.Is(_, errdefs.Err%s) = %v, want %v", c.name, k, got, want[k])
			}
		}
	}
}
