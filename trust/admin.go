package trust

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/repo"
)

// Admin edits the trust directory: it stages documents as TUF targets with a
// publisher and publishes them together with Publish. Every check it makes
// (known signers, unique keys) reads the directory through the publisher's
// own signed working metadata.
type Admin struct {
	p *repo.Publisher
}

// NewAdmin wraps a TUF publisher whose metadata already exists
// (create-metadata has run).
func NewAdmin(p *repo.Publisher) *Admin { return &Admin{p: p} }

// Publisher exposes the underlying TUF publisher.
func (a *Admin) Publisher() *repo.Publisher { return a.p }

// SettingsTarget names the directory settings document.
const SettingsTarget = "directory/settings.json"

// Settings are the directory-wide rules every station applies.
type Settings struct {
	// ApprovalThreshold is how many distinct known users must have signed
	// an approval (k of n); 0 or missing means 1.
	ApprovalThreshold int `json:"approval_threshold"`
}

// ParseSettings decodes a settings document strictly.
func ParseSettings(b []byte) (*Settings, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var s Settings
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("directory settings: %w", err)
	}
	if dec.More() {
		return nil, errors.New("directory settings: trailing data")
	}
	if s.ApprovalThreshold < 0 || s.ApprovalThreshold > 1000 {
		return nil, fmt.Errorf("directory settings: approval threshold %d out of range", s.ApprovalThreshold)
	}
	return &s, nil
}

// AddStation stages a new station's public keys; an id already listed is
// refused (ErrExists: use ReplaceStation), and so is a key registered
// under another id (ErrDuplicateKey).
func (a *Admin) AddStation(ctx context.Context, id string, k hardened.PublicKey) error {
	return a.putKey(ctx, "station", StationTarget, id, k, false)
}

// ReplaceStation rotates a listed station's keys.
func (a *Admin) ReplaceStation(ctx context.Context, id string, k hardened.PublicKey) error {
	return a.putKey(ctx, "station", StationTarget, id, k, true)
}

// AddUser stages a new user's public keys (rules of AddStation).
func (a *Admin) AddUser(ctx context.Context, id string, k hardened.PublicKey) error {
	return a.putKey(ctx, "user", UserTarget, id, k, false)
}

// ReplaceUser rotates a listed user's keys. Their earlier approval
// signatures stop counting (they were made with the old key).
func (a *Admin) ReplaceUser(ctx context.Context, id string, k hardened.PublicKey) error {
	return a.putKey(ctx, "user", UserTarget, id, k, true)
}

// RemoveStation stages the removal of a station.
func (a *Admin) RemoveStation(ctx context.Context, id string) error {
	return a.remove(ctx, "station", StationTarget(id), id)
}

// RemoveUser stages the removal of a user: their approval signatures no
// longer count, so approvals are re-counted against the threshold.
func (a *Admin) RemoveUser(ctx context.Context, id string) error {
	return a.remove(ctx, "user", UserTarget(id), id)
}

// RevokeApproval stages the removal of a train's approval.
func (a *Admin) RevokeApproval(ctx context.Context, digest string) error {
	return a.remove(ctx, "approval", ApprovalTarget(digest), digest)
}

func (a *Admin) remove(ctx context.Context, what, target, id string) error {
	if what != "approval" {
		if err := ValidID(id); err != nil {
			return err
		}
	}
	err := a.p.DelTarget(ctx, target)
	if errors.Is(err, tuf.ErrNotFound) {
		return fmt.Errorf("%w: %s %s", ErrNotListed, what, id)
	}
	return err
}

func (a *Admin) putKey(ctx context.Context, what string, target func(string) string, id string, k hardened.PublicKey, replace bool) error {
	if err := ValidID(id); err != nil {
		return err
	}
	names, err := a.p.ListTargets()
	if err != nil {
		return err
	}
	listed := slices.Contains(names, target(id))
	switch {
	case listed && !replace:
		return fmt.Errorf("%w: %s %s (use --replace to rotate its key)", ErrExists, what, id)
	case !listed && replace:
		return fmt.Errorf("%w: %s %s (nothing to replace)", ErrNotListed, what, id)
	}
	// One key, one identity: a key under two ids would let one holder act
	// (sign, approve, receive results) as both.
	for _, n := range names {
		kind, other, err := ParseTarget(n)
		if err != nil || (kind != KindStation && kind != KindUser) || n == target(id) {
			continue
		}
		b, err := a.p.ReadTarget(ctx, n, maxKeyDoc)
		if err != nil {
			return fmt.Errorf("check %s: %w", n, err)
		}
		ok2, err := hardened.ParsePublicKeyPEM(b)
		if err != nil {
			continue
		}
		if ok2.Sign.Equal(k.Sign) || (ok2.Enc != nil && k.Enc != nil && ok2.Enc.Equal(k.Enc)) {
			return fmt.Errorf("%w: it is %s %s's key", ErrDuplicateKey, kind, other)
		}
	}
	b, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	return a.p.AddTarget(ctx, target(id), repo.FromBytes(b))
}

// userKey looks a user up in the working metadata.
func (a *Admin) userKey(ctx context.Context, id string) (hardened.PublicKey, error) {
	if err := ValidID(id); err != nil {
		return hardened.PublicKey{}, err
	}
	b, err := a.p.ReadTarget(ctx, UserTarget(id), maxKeyDoc)
	if errors.Is(err, tuf.ErrNotFound) {
		return hardened.PublicKey{}, fmt.Errorf("%w: user %q", ErrNotListed, id)
	}
	if err != nil {
		return hardened.PublicKey{}, err
	}
	return hardened.ParsePublicKeyPEM(b)
}

// Approve stages an approval document after checking every signature in
// it against that user's key in the directory: a bad or unknown signer is
// refused and nothing is staged. When the train is already approved on the
// same terms, the new signatures are merged in; valid existing signatures
// are kept (never replaced), ones that no longer verify (removed or
// rotated users) are dropped. An approval on other terms must be revoked
// first.
func (a *Admin) Approve(ctx context.Context, d *ApprovalDoc) error {
	if len(d.Signatures) == 0 {
		return fmt.Errorf("%w: no signature", ErrBadApproval)
	}
	b, err := jsonIndent(d)
	if err != nil {
		return err
	}
	if d, err = ParseApproval(b); err != nil {
		return err
	}
	for _, s := range d.Signatures {
		pk, err := a.userKey(ctx, s.User)
		if err != nil {
			return fmt.Errorf("%w: signer %q: %w", ErrBadApproval, s.User, err)
		}
		if !d.checkSignature(s, pk) {
			return fmt.Errorf("%w: the signature of %q does not verify with that user's key in the directory", ErrBadApproval, s.User)
		}
	}
	merged := d
	old, err := a.p.ReadTarget(ctx, ApprovalTarget(d.Digest), maxApprovalDoc)
	switch {
	case errors.Is(err, tuf.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read the existing approval: %w", err)
	default:
		prev, err := ParseApproval(old)
		if err != nil {
			return fmt.Errorf("existing approval: %w", err)
		}
		if !prev.SameTerms(d) {
			return fmt.Errorf("%w: train %s is already approved on other terms (stations, label or expiry); revoke that approval first", ErrExists, d.Digest)
		}
		merged = &ApprovalDoc{Digest: prev.Digest, Stations: prev.Stations, Label: prev.Label, Expires: prev.Expires}
		for _, s := range prev.Signatures {
			if pk, err := a.userKey(ctx, s.User); err == nil && prev.checkSignature(s, pk) {
				merged.Signatures = append(merged.Signatures, s)
			}
		}
		for _, s := range d.Signatures {
			if !slices.ContainsFunc(merged.Signatures, func(o Signature) bool { return o.User == s.User }) {
				merged.Signatures = append(merged.Signatures, s)
			}
		}
	}
	if b, err = jsonIndent(merged); err != nil {
		return err
	}
	return a.p.AddTarget(ctx, ApprovalTarget(d.Digest), repo.FromBytes(b))
}

// SetApprovalThreshold stages the directory's approval threshold (k of n
// known users must sign an approval).
func (a *Admin) SetApprovalThreshold(ctx context.Context, k int) error {
	if k < 1 || k > 1000 {
		return fmt.Errorf("approval threshold %d: must be 1 or more", k)
	}
	b, err := jsonIndent(Settings{ApprovalThreshold: k})
	if err != nil {
		return err
	}
	return a.p.AddTarget(ctx, SettingsTarget, repo.FromBytes(b))
}

// Publish signs and pushes the staged changes (snapshot, timestamp last).
func (a *Admin) Publish(ctx context.Context) error { return a.p.PushMetadata(ctx) }

// InitOption tunes Init.
type InitOption func(*initConfig)

type initConfig struct{ threshold int }

// WithInitApprovalThreshold sets the new directory's approval threshold.
func WithInitApprovalThreshold(k int) InitOption { return func(c *initConfig) { c.threshold = k } }

// Init creates a new trust directory with one key per top-level role and
// publishes its first version. It is the one-step setup for a small
// network (the demo, a pilot); larger networks use `trainyard tuf` to choose
// key types, thresholds and offline root keys, then NewAdmin. It refuses
// (tuf.ErrConflict) when the registry already holds a directory, unless
// the publisher was opened with repo.WithForce.
func Init(ctx context.Context, p *repo.Publisher, opts ...InitOption) (*Admin, error) {
	cfg := initConfig{threshold: 1}
	for _, o := range opts {
		o(&cfg)
	}
	// Before any key is made: an existing admin state keeps its keys, and
	// a live directory in the registry is not replaced.
	if p.HasMetadata() {
		return nil, fmt.Errorf("trust init: %s already holds a trust directory's admin state", p.Dir())
	}
	if err := p.CheckRegistry(ctx); err != nil {
		return nil, fmt.Errorf("trust init: %w", err)
	}
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		if _, _, err := p.CreateKey(role, false); err != nil {
			return nil, fmt.Errorf("trust init: %s key: %w", role, err)
		}
	}
	if err := p.CreateMetadata(ctx, nil); err != nil {
		return nil, fmt.Errorf("trust init: %w", err)
	}
	a := NewAdmin(p)
	if err := a.SetApprovalThreshold(ctx, cfg.threshold); err != nil {
		return nil, fmt.Errorf("trust init: %w", err)
	}
	if err := p.PushMetadata(ctx); err != nil {
		return nil, fmt.Errorf("trust init: %w", err)
	}
	return a, nil
}
