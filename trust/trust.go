// Package trust is the network's trust directory: which stations and users
// exist, their public keys, and which trains are approved to run. It is a TUF
// repository in an OCI registry (package tuf), so every answer is signed by
// the directory's keys and fresh; the hardened protocol takes keys only from
// here, never from a train.
//
// Targets in the TUF repository:
//
//	stations/<id>.pem         the station's public keys (hardened.PublicKey PEM)
//	users/<id>.pem            a user's public keys
//	approvals/<hex>.json      an approval: the train definition's digest, the
//	                          stations it may run at, an optional label and
//	                          expiry, and approvers' signatures
//	directory/settings.json   directory settings: the approval threshold
//
// StationTarget, UserTarget, ApprovalTarget and SettingsTarget build these
// names; ParseTarget reads one back (kind and id) and refuses any other.
package trust

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/trainyard/trainyard/internal/ids"
	"github.com/trainyard/trainyard/protocol/hardened"

	"github.com/trainyard/trainyard/errdefs"
)

// Size bounds of the documents a client accepts; they are tiny by nature.
const (
	maxKeyDoc      = 16 << 10
	maxApprovalDoc = 256 << 10
)

// ErrBadApproval is wrapped when an approval document is malformed or none of
// its signatures verifies against a user of the directory.
var ErrBadApproval = errdefs.New("approval not signed by a known user", errdefs.ErrUntrusted)

// Errors of the directory's admin and readers that callers branch on.
var (
	// ErrApprovalExpired: the approval's expiry has passed.
	ErrApprovalExpired = errdefs.New("approval expired", errdefs.ErrExpired)
	// ErrExists: the id is already in the directory (use replace).
	ErrExists = errdefs.New("already in the trust directory", errdefs.ErrExists)
	// ErrNotListed: the id or approval is not in the directory.
	ErrNotListed = errdefs.New("not in the trust directory", errdefs.ErrNotFound)
	// ErrDuplicateKey: the public key is already registered under another id.
	ErrDuplicateKey = errdefs.New("public key already registered under another id", errdefs.ErrExists)
)

// ValidID checks a station or user id: it becomes part of target names and
// registry repositories, so only a plain, short name is allowed.
func ValidID(id string) error {
	if !ids.Valid(id) {
		return fmt.Errorf("invalid id %q: use letters, digits, '.', '_' and '-' (max 128)", id)
	}
	return nil
}

// StationTarget, UserTarget and ApprovalTarget name the TUF targets.
func StationTarget(id string) string { return "stations/" + id + ".pem" }

// UserTarget names a user's key document.
func UserTarget(id string) string { return "users/" + id + ".pem" }

// ApprovalTarget names the approval of a train definition digest.
func ApprovalTarget(digest string) string {
	return "approvals/" + strings.TrimPrefix(digest, "sha256:") + ".json"
}

// Kinds of the directory's targets, as ParseTarget reports them.
const (
	KindStation  = "station"
	KindUser     = "user"
	KindApproval = "approval"
	KindSettings = "settings"
)

// ErrNotDirectoryTarget is wrapped when a target name is none that the
// directory writes.
var ErrNotDirectoryTarget = errdefs.New("not a trust directory target", errdefs.ErrMalformed)

// ParseTarget is the inverse of StationTarget, UserTarget, ApprovalTarget
// and SettingsTarget: the kind of a directory target and its id (a
// station's or user's id, an approval's "sha256:<hex>" digest, "" for the
// settings). Any other name, an invalid id or digest among them, fails
// with ErrNotDirectoryTarget, so a reader never takes a stray target for a
// key or an approval.
func ParseTarget(name string) (kind, id string, err error) {
	if name == SettingsTarget {
		return KindSettings, "", nil
	}
	dir, file, _ := strings.Cut(name, "/")
	switch dir {
	case "stations", "users":
		if id, ok := strings.CutSuffix(file, ".pem"); ok && ValidID(id) == nil {
			if dir == "stations" {
				return KindStation, id, nil
			}
			return KindUser, id, nil
		}
	case "approvals":
		if h, ok := strings.CutSuffix(file, ".json"); ok && isSHA256Hex(h) {
			return KindApproval, "sha256:" + h, nil
		}
	}
	return "", "", fmt.Errorf("%w: %q", ErrNotDirectoryTarget, name)
}

// isSHA256Hex: 64 lowercase hex digits, the form digests are written in.
func isSHA256Hex(h string) bool {
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ApprovalDoc is the signed approval of one train definition. Every
// approver signs the same terms (digest, stations, label, expiry), so the
// signatures of several approvers merge into one document.
type ApprovalDoc struct {
	Digest     string      `json:"digest"`             // hardened.ApprovalDigest
	Stations   []string    `json:"stations,omitempty"` // empty: every station
	Label      string      `json:"label,omitempty"`    // e.g. "study 42, v3"
	Expires    string      `json:"expires,omitempty"`  // RFC 3339; empty: no expiry
	Signatures []Signature `json:"signatures"`
}

// Signature is one approver's ed25519 signature over SignedBytes.
type Signature struct {
	User    string `json:"user"`
	Comment string `json:"comment,omitempty"`
	Sig     string `json:"sig"` // base64
}

// Bounds of the free text fields.
const (
	maxLabel   = 200
	maxComment = 2000
)

// SigningBytes is the statement every approver signs: a domain-separated
// rendering of the digest, the station restriction, the label and the
// expiry, so a signature cannot be reused for another train, a wider set
// of stations or a longer time. Free text cannot contain control
// characters (ParseApproval), so the fields cannot run into each other.
func (d *ApprovalDoc) SigningBytes() []byte {
	st := slices.Clone(d.Stations)
	slices.Sort(st)
	return []byte("trainyard/v2 approval\n" + d.Digest + "\n" + strings.Join(st, ",") + "\n" + d.Label + "\n" + d.Expires + "\n")
}

// SignedBytes is what one signature covers: the statement, the signer's
// id and the signer's comment.
func (d *ApprovalDoc) SignedBytes(s Signature) []byte {
	return append(d.SigningBytes(), []byte("signer "+s.User+"\ncomment "+s.Comment+"\n")...)
}

// Sign adds user's signature with comment (replacing an earlier one of the
// same user in this document).
func (d *ApprovalDoc) Sign(user string, key *hardened.PrivateKey) { d.SignWithComment(user, "", key) }

// SignWithComment is Sign with the approver's comment.
func (d *ApprovalDoc) SignWithComment(user, comment string, key *hardened.PrivateKey) {
	s := Signature{User: user, Comment: comment}
	s.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key.Sign, d.SignedBytes(s)))
	for i := range d.Signatures {
		if d.Signatures[i].User == user {
			d.Signatures[i] = s
			return
		}
	}
	d.Signatures = append(d.Signatures, s)
}

// ExpiresAt returns the expiry (zero: none).
func (d *ApprovalDoc) ExpiresAt() time.Time {
	t, _ := time.Parse(time.RFC3339, d.Expires)
	return t
}

// SameTerms reports whether two documents approve the same thing on the
// same terms (their signatures can be merged).
func (d *ApprovalDoc) SameTerms(o *ApprovalDoc) bool {
	return string(d.SigningBytes()) == string(o.SigningBytes())
}

// checkSignature verifies one signature with the signer's key.
func (d *ApprovalDoc) checkSignature(s Signature, pk hardened.PublicKey) bool {
	sig, err := base64.StdEncoding.DecodeString(s.Sig)
	return err == nil && ed25519.Verify(pk.Sign, d.SignedBytes(s), sig)
}

func plainText(s string, max int) bool {
	return len(s) <= max && !strings.ContainsFunc(s, unicode.IsControl)
}

// ParseApproval decodes an approval document strictly.
func ParseApproval(b []byte) (*ApprovalDoc, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var d ApprovalDoc
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadApproval, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrBadApproval)
	}
	if !strings.HasPrefix(d.Digest, "sha256:") || len(d.Digest) != 71 {
		return nil, fmt.Errorf("%w: bad digest %q", ErrBadApproval, d.Digest)
	}
	for _, s := range d.Stations {
		if err := ValidID(s); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadApproval, err)
		}
	}
	if !plainText(d.Label, maxLabel) {
		return nil, fmt.Errorf("%w: label longer than %d or with control characters", ErrBadApproval, maxLabel)
	}
	if d.Expires != "" {
		if t, err := time.Parse(time.RFC3339, d.Expires); err != nil || t.Year() < 2000 {
			return nil, fmt.Errorf("%w: expires %q is not an RFC 3339 time after 2000", ErrBadApproval, d.Expires)
		}
	}
	for _, s := range d.Signatures {
		if ValidID(s.User) != nil || !plainText(s.Comment, maxComment) {
			return nil, fmt.Errorf("%w: signature of %q: bad signer id or comment", ErrBadApproval, s.User)
		}
	}
	return &d, nil
}

// verify returns the users whose signatures hold, looking keys up with key.
func (d *ApprovalDoc) verify(ctx context.Context, key func(context.Context, string) (hardened.PublicKey, error)) ([]string, error) {
	var ok []string
	for _, s := range d.Signatures {
		if slices.Contains(ok, s.User) {
			continue
		}
		pk, err := key(ctx, s.User)
		if err != nil {
			continue // an unknown (or removed) approver adds nothing
		}
		if !d.checkSignature(s, pk) {
			continue
		}
		ok = append(ok, s.User)
	}
	return ok, nil
}

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
