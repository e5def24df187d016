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
//	                          stations it may run at, and approvers' signatures
package trust

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/trainyard/trainyard/protocol/hardened"
)

// Size bounds of the documents a client accepts; they are tiny by nature.
const (
	maxKeyDoc      = 16 << 10
	maxApprovalDoc = 256 << 10
)

// ErrBadApproval is wrapped when an approval document is malformed or none of
// its signatures verifies against a user of the directory.
var ErrBadApproval = errors.New("approval not signed by a known user")

var idPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)

// ValidID checks a station or user id: it becomes part of target names and
// registry repositories, so only a plain, short name is allowed.
func ValidID(id string) error {
	if !idPattern.MatchString(id) {
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

// ApprovalDoc is the signed approval of one train definition.
type ApprovalDoc struct {
	Digest     string      `json:"digest"`             // hardened.ApprovalDigest
	Stations   []string    `json:"stations,omitempty"` // empty: every station
	Signatures []Signature `json:"signatures"`
}

// Signature is one approver's ed25519 signature over SigningBytes.
type Signature struct {
	User string `json:"user"`
	Sig  string `json:"sig"` // base64
}

// SigningBytes is what an approver signs: a domain-separated statement of
// the digest and the station restriction, so a signature cannot be reused
// for another train or a wider set of stations.
func (d *ApprovalDoc) SigningBytes() []byte {
	st := slices.Clone(d.Stations)
	slices.Sort(st)
	return []byte("trainyard/v1 approval\n" + d.Digest + "\n" + strings.Join(st, ",") + "\n")
}

// Sign adds (or replaces) user's signature.
func (d *ApprovalDoc) Sign(user string, key *hardened.PrivateKey) {
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key.Sign, d.SigningBytes()))
	for i := range d.Signatures {
		if d.Signatures[i].User == user {
			d.Signatures[i].Sig = sig
			return
		}
	}
	d.Signatures = append(d.Signatures, Signature{User: user, Sig: sig})
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
	return &d, nil
}

// verify returns the users whose signatures hold, looking keys up with key.
func (d *ApprovalDoc) verify(ctx context.Context, key func(context.Context, string) (hardened.PublicKey, error)) ([]string, error) {
	msg := d.SigningBytes()
	var ok []string
	for _, s := range d.Signatures {
		if slices.Contains(ok, s.User) {
			continue
		}
		pk, err := key(ctx, s.User)
		if err != nil {
			continue // an unknown approver adds nothing
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil || !ed25519.Verify(pk.Sign, msg, sig) {
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
