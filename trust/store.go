package trust

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"errors"
	"fmt"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	tufclient "github.com/trainyard/trainyard/tuf/client"
)

// Store answers the hardened protocol's questions from a TUF client: it
// implements hardened.TrustStore. Every answer is a TUF-verified target.
//
// One station stop asks for a dozen keys; a full TUF update for each would
// cost a dozen round trips of 4-6 requests. The store updates the metadata
// at most once per max age and keeps verified documents by their signed
// sha256, so an answer is never older than the max age (the revocation
// latency) and never differs from what the signed metadata says.
type Store struct {
	c         *tufclient.Client
	threshold int
	maxAge    time.Duration
	now       func() time.Time

	mu        sync.Mutex
	refreshed time.Time
	targets   map[string]*metadata.TargetFiles
	docs      map[string]doc // target name -> verified content
}

type doc struct {
	sha256 string
	data   []byte
}

// DefaultMaxAge is how long trusted metadata is used before the next update.
const DefaultMaxAge = 15 * time.Second

var _ hardened.TrustStore = (*Store)(nil)

// StoreOption tunes a Store.
type StoreOption func(*Store)

// WithApprovalThreshold requires at least n distinct known users to have
// signed an approval (default 1); the directory's own threshold
// (directory/settings.json) applies when it is higher.
func WithApprovalThreshold(n int) StoreOption { return func(s *Store) { s.threshold = n } }

// WithMaxAge sets how long trusted metadata is used before the next TUF
// update; 0 updates on every lookup.
func WithMaxAge(d time.Duration) StoreOption { return func(s *Store) { s.maxAge = d } }

// WithStoreClock sets the clock used for the max age (tests).
func WithStoreClock(now func() time.Time) StoreOption { return func(s *Store) { s.now = now } }

// NewStore wraps an initialised TUF client of the trust directory.
func NewStore(c *tufclient.Client, opts ...StoreOption) *Store {
	s := &Store{c: c, threshold: 1, maxAge: DefaultMaxAge, now: time.Now, docs: map[string]doc{}}
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
	b, err := s.fetch(ctx, target, maxKeyDoc)
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
	b, err := s.fetch(ctx, ApprovalTarget(digest), maxApprovalDoc)
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
	if exp := d.ExpiresAt(); d.Expires != "" && !s.now().Before(exp) {
		return hardened.Approval{}, fmt.Errorf("%w: %w: train %s's approval expired at %s", hardened.ErrUnapproved, ErrApprovalExpired, digest, exp.Format(time.RFC3339))
	}
	th, err := s.Threshold(ctx)
	if err != nil {
		return hardened.Approval{}, err
	}
	users, err := d.verify(ctx, s.UserKey)
	if err != nil {
		return hardened.Approval{}, err
	}
	if len(users) < th {
		return hardened.Approval{}, fmt.Errorf("%w: %s has %d valid approver signature(s), %d needed", hardened.ErrUnapproved, digest, len(users), th)
	}
	return hardened.Approval{Digest: digest, Approvers: users, Stations: slices.Clone(d.Stations)}, nil
}

// Threshold is the number of valid approver signatures an approval needs:
// the directory's setting, or the store's minimum when that is higher.
func (s *Store) Threshold(ctx context.Context) (int, error) {
	th := s.threshold
	b, err := s.fetch(ctx, SettingsTarget, maxKeyDoc)
	switch {
	case isUnknownTarget(err):
		// a directory made before settings existed: the store's minimum
	case err != nil:
		return 0, fmt.Errorf("trust directory: settings: %w", err)
	default:
		st, err := ParseSettings(b)
		if err != nil {
			return 0, fmt.Errorf("trust directory: %w", err)
		}
		th = max(th, st.ApprovalThreshold)
	}
	return max(th, 1), nil
}

// ApprovalInfo describes one approval for listings (trust show).
type ApprovalInfo struct {
	Digest    string   `json:"digest"`
	Label     string   `json:"label,omitempty"`
	Stations  []string `json:"stations,omitempty"`
	Expires   string   `json:"expires,omitempty"`  // RFC 3339
	Approvers []string `json:"approvers"`          // whose signatures verify
	Needed    int      `json:"needed"`             // the threshold
	Valid     bool     `json:"valid"`              // a station would accept it now
	Problem   string   `json:"problem,omitempty"`  // why not
	Comments  []string `json:"comments,omitempty"` // "user: comment"
}

// Approval describes the approval stored for digest (whether or not a
// station would accept it now, and why).
func (s *Store) Approval(ctx context.Context, digest string) (ApprovalInfo, error) {
	info := ApprovalInfo{Digest: digest}
	b, err := s.fetch(ctx, ApprovalTarget(digest), maxApprovalDoc)
	if err != nil {
		return info, err
	}
	d, err := ParseApproval(b)
	if err != nil {
		info.Problem = err.Error()
		return info, nil
	}
	info.Label, info.Stations, info.Expires = d.Label, d.Stations, d.Expires
	if info.Needed, err = s.Threshold(ctx); err != nil {
		return info, err
	}
	if info.Approvers, err = d.verify(ctx, s.UserKey); err != nil {
		return info, err
	}
	for _, sg := range d.Signatures {
		if sg.Comment != "" && slices.Contains(info.Approvers, sg.User) {
			info.Comments = append(info.Comments, sg.User+": "+sg.Comment)
		}
	}
	if _, err := s.TrainApproval(ctx, digest); err != nil {
		info.Problem = err.Error()
	} else {
		info.Valid = true
	}
	return info, nil
}

// Listing is what the directory holds (trust show).
type Listing struct {
	Stations          []string
	Users             []string
	Approvals         []ApprovalInfo // one per approval target, Problem set when it is unusable
	ApprovalThreshold int
}

// List updates the metadata and lists the directory's stations, users and
// approvals (each described as Approval does), and the approval threshold.
// Targets that are none of the directory's (ParseTarget) are left out.
func (s *Store) List(ctx context.Context) (*Listing, error) {
	if _, err := s.c.PullMetadata(ctx); err != nil {
		return nil, err
	}
	names, err := s.c.TargetNames()
	if err != nil {
		return nil, err
	}
	l := &Listing{Stations: []string{}, Users: []string{}, Approvals: []ApprovalInfo{}}
	for _, n := range names {
		kind, id, err := ParseTarget(n)
		if err != nil {
			continue
		}
		switch kind {
		case KindStation:
			l.Stations = append(l.Stations, id)
		case KindUser:
			l.Users = append(l.Users, id)
		case KindApproval:
			a, err := s.Approval(ctx, id)
			if err != nil {
				a.Problem = err.Error()
			}
			l.Approvals = append(l.Approvals, a)
		}
	}
	if l.ApprovalThreshold, err = s.Threshold(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// refreshLocked updates the metadata when it is older than the max age.
func (s *Store) refreshLocked(ctx context.Context) error {
	if s.targets != nil && s.now().Sub(s.refreshed) < s.maxAge {
		return nil
	}
	if _, err := s.c.PullMetadata(ctx); err != nil {
		return err
	}
	t, err := s.c.Targets()
	if err != nil {
		return err
	}
	s.targets, s.refreshed = t, s.now()
	return nil
}

// Refresh updates the trusted metadata unless it is younger than the max
// age: a station calls it between trains, so that its copy (and Expiry)
// follows the directory even when no train arrives.
func (s *Store) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshLocked(ctx)
}

// Expiry returns the role of the trusted copy that expires first, when,
// and the lifetime of that version, estimated as the time from when this
// reader first stored it to its expiry (TUF metadata carries no issue
// time). A station warns when less than a fifth of it is left.
func (s *Store) Expiry() (role string, expires time.Time, lifetime time.Duration, err error) {
	fs, err := s.c.Freshness()
	if err != nil {
		return "", time.Time{}, 0, err
	}
	for _, f := range fs {
		if role == "" || f.Expires.Before(expires) {
			role, expires, lifetime = f.Role, f.Expires, f.Expires.Sub(f.Stored)
		}
	}
	if role == "" {
		return "", time.Time{}, 0, tuf.ErrNotInitialized
	}
	return role, expires, lifetime, nil
}

// isUnknownTarget reports whether err says the target is not in the signed
// metadata (as opposed to a network or verification failure).
func isUnknownTarget(err error) bool {
	return errors.Is(err, tuf.ErrNotFound)
}

// fetch returns a verified target, updating the metadata when it is older
// than the max age.
func (s *Store) fetch(ctx context.Context, name string, max int64) ([]byte, error) {
	if s.maxAge <= 0 {
		return s.c.Fetch(ctx, name, max)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(ctx); err != nil {
		return nil, err
	}
	want := ""
	if tf, ok := s.targets[name]; ok {
		want = tf.Hashes["sha256"].String()
		if d, ok := s.docs[name]; ok && d.sha256 == want {
			return d.data, nil
		}
	}
	// Not cached, changed, or only in a delegated role: a full, verified
	// fetch (it also reports unknown targets).
	b, err := s.c.Fetch(ctx, name, max)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	s.docs[name] = doc{sha256: hex.EncodeToString(sum[:]), data: b}
	return b, nil
}
