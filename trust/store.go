package trust

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	tufclient "github.com/trainyard/trainyard/tuf/client"
)

// Store answers the hardened protocol's questions from a TUF client: it
// implements hardened.TrustStore. Every answer is a TUF-verified target.
type Store struct {
	c         *tufclient.Client
	threshold int
}

var _ hardened.TrustStore = (*Store)(nil)

// StoreOption tunes a Store.
type StoreOption func(*Store)

// WithApprovalThreshold requires n distinct known users to have signed an
// approval (default 1).
func WithApprovalThreshold(n int) StoreOption { return func(s *Store) { s.threshold = n } }

// NewStore wraps an initialised TUF client of the trust directory.
func NewStore(c *tufclient.Client, opts ...StoreOption) *Store {
	s := &Store{c: c, threshold: 1}
	for _, o := range opts {
		o(s)
	}
	return s
}

// OpenStore opens the trust directory client kept in dir for the registry
// repository repo. The first time, rootJSON (the directory's root.json) must
// be given to bootstrap; later it may be nil.
func OpenStore(ctx context.Context, rc *registry.Client, repo, dir string, rootJSON []byte, opts ...StoreOption) (*Store, error) {
	c, err := tufclient.Open(rc, repo, dir)
	if err != nil {
		return nil, err
	}
	if !c.Initialized() {
		if rootJSON == nil {
			return nil, fmt.Errorf("trust directory %s: not initialised here; give its root.json", repo)
		}
		if _, err := c.Bootstrap(ctx, rootJSON); err != nil {
			return nil, fmt.Errorf("trust directory %s: %w", repo, err)
		}
	}
	return NewStore(c, opts...), nil
}

// Client exposes the underlying TUF client (refresh, listing).
func (s *Store) Client() *tufclient.Client { return s.c }

func (s *Store) key(ctx context.Context, target, what, id string) (hardened.PublicKey, error) {
	if err := ValidID(id); err != nil {
		return hardened.PublicKey{}, fmt.Errorf("%w: %v", hardened.ErrUntrusted, err)
	}
	b, err := s.c.Fetch(ctx, target, maxKeyDoc)
	if err != nil {
		if isUnknownTarget(err) {
			return hardened.PublicKey{}, fmt.Errorf("%w: %s %q is not in the trust directory", hardened.ErrUntrusted, what, id)
		}
		return hardened.PublicKey{}, fmt.Errorf("trust directory: %s %q: %w", what, id, err)
	}
	k, err := hardened.ParsePublicKeyPEM(b)
	if err != nil {
		return hardened.PublicKey{}, fmt.Errorf("trust directory: %s %q: %w", what, id, err)
	}
	return k, nil
}

// StationKey implements hardened.TrustStore.
func (s *Store) StationKey(ctx context.Context, id string) (hardened.PublicKey, error) {
	return s.key(ctx, StationTarget(id), "station", id)
}

// UserKey implements hardened.TrustStore.
func (s *Store) UserKey(ctx context.Context, id string) (hardened.PublicKey, error) {
	return s.key(ctx, UserTarget(id), "user", id)
}

// TrainApproval implements hardened.TrustStore: the approval document must
// be in the directory and signed by at least threshold known users.
func (s *Store) TrainApproval(ctx context.Context, digest string) (hardened.Approval, error) {
	b, err := s.c.Fetch(ctx, ApprovalTarget(digest), maxApprovalDoc)
	if err != nil {
		if isUnknownTarget(err) {
			return hardened.Approval{}, fmt.Errorf("%w: train %s is not approved in the trust directory", hardened.ErrUnapproved, digest)
		}
		return hardened.Approval{}, fmt.Errorf("trust directory: approval %s: %w", digest, err)
	}
	d, err := ParseApproval(b)
	if err != nil {
		return hardened.Approval{}, err
	}
	if d.Digest != digest {
		return hardened.Approval{}, fmt.Errorf("%w: approval document is for %s, not %s", ErrBadApproval, d.Digest, digest)
	}
	users, err := d.verify(ctx, s.UserKey)
	if err != nil {
		return hardened.Approval{}, err
	}
	if len(users) < s.threshold {
		return hardened.Approval{}, fmt.Errorf("%w: %s has %d valid approver signature(s), %d needed", hardened.ErrUnapproved, digest, len(users), s.threshold)
	}
	return hardened.Approval{Digest: digest, Approvers: users, Stations: slices.Clone(d.Stations)}, nil
}

// isUnknownTarget reports whether err says the target is not in the signed
// metadata (as opposed to a network or verification failure).
func isUnknownTarget(err error) bool {
	return errors.Is(err, tuf.ErrNotFound)
}
