package trust

import (
	"context"
	"fmt"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/tuf/repo"
)

// Admin edits the trust directory: it stages documents as TUF targets with a
// publisher and publishes them together with Publish.
type Admin struct {
	p *repo.Publisher
}

// NewAdmin wraps a TUF publisher whose metadata already exists
// (create-metadata has run).
func NewAdmin(p *repo.Publisher) *Admin { return &Admin{p: p} }

// Publisher exposes the underlying TUF publisher.
func (a *Admin) Publisher() *repo.Publisher { return a.p }

// AddStation stages (or replaces) a station's public keys.
func (a *Admin) AddStation(ctx context.Context, id string, k hardened.PublicKey) error {
	return a.putKey(ctx, StationTarget(id), id, k)
}

// AddUser stages (or replaces) a user's public keys.
func (a *Admin) AddUser(ctx context.Context, id string, k hardened.PublicKey) error {
	return a.putKey(ctx, UserTarget(id), id, k)
}

func (a *Admin) putKey(ctx context.Context, target, id string, k hardened.PublicKey) error {
	if err := ValidID(id); err != nil {
		return err
	}
	b, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	return a.p.PutTargetBytes(ctx, target, "", b)
}

// Approve stages an approval document. It must carry at least one
// signature; signatures are checked by every station when it is used.
func (a *Admin) Approve(ctx context.Context, d *ApprovalDoc) error {
	if len(d.Signatures) == 0 {
		return fmt.Errorf("%w: no signature", ErrBadApproval)
	}
	b, err := jsonIndent(d)
	if err != nil {
		return err
	}
	if _, err := ParseApproval(b); err != nil {
		return err
	}
	return a.p.PutTargetBytes(ctx, ApprovalTarget(d.Digest), "", b)
}

// Publish signs and pushes the staged changes (snapshot, timestamp last).
func (a *Admin) Publish(ctx context.Context) error { return a.p.PushMetadata(ctx) }

// Init creates a new trust directory with one key per top-level role and
// publishes its first, empty version. It is the one-step setup for a small
// network (the demo, a pilot); larger networks use `trainyard tuf` to choose
// key types, thresholds and offline root keys, then NewAdmin.
func Init(ctx context.Context, p *repo.Publisher) (*Admin, error) {
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		if _, _, err := p.CreateKey(role, false); err != nil {
			return nil, fmt.Errorf("trust init: %s key: %w", role, err)
		}
	}
	if err := p.CreateMetadata(ctx, nil); err != nil {
		return nil, fmt.Errorf("trust init: %w", err)
	}
	if err := p.PushMetadata(ctx); err != nil {
		return nil, fmt.Errorf("trust init: %w", err)
	}
	return NewAdmin(p), nil
}
