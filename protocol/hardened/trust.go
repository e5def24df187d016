package hardened

import (
	"context"
	"fmt"
	"sync"
)

// TrustStore is the only source of keys and approvals the protocol accepts.
// In production it is backed by the TUF trust directory; MemoryTrust serves
// tests and the demo. Implementations return an error wrapping ErrUntrusted
// for an unknown participant and ErrUnapproved for an unknown train.
type TrustStore interface {
	// StationKey returns the public keys of a station.
	StationKey(ctx context.Context, id string) (PublicKey, error)
	// UserKey returns the public keys of a user (a train creator).
	UserKey(ctx context.Context, id string) (PublicKey, error)
	// TrainApproval returns the approval of a train definition, keyed by its
	// ApprovalDigest (code manifest + exec config + base image).
	TrainApproval(ctx context.Context, digest string) (Approval, error)
}

// Approval says that a train definition may run. The TUF layer checks the
// approvers' signatures; the protocol only needs the fact and, optionally,
// the stations it is limited to.
type Approval struct {
	Digest    string   // ApprovalDigest of the train definition
	Approvers []string // who approved it (informational)
	// Stations, when non-empty, limits the approval to these stations.
	Stations []string
}

// allows reports whether the approval covers station id.
func (a Approval) allows(id string) bool {
	if len(a.Stations) == 0 {
		return true
	}
	for _, s := range a.Stations {
		if s == id {
			return true
		}
	}
	return false
}

// MemoryTrust is an in-memory TrustStore, safe for concurrent use.
type MemoryTrust struct {
	mu        sync.RWMutex
	stations  map[string]PublicKey
	users     map[string]PublicKey
	approvals map[string]Approval
}

// NewMemoryTrust returns an empty trust store.
func NewMemoryTrust() *MemoryTrust {
	return &MemoryTrust{stations: map[string]PublicKey{}, users: map[string]PublicKey{}, approvals: map[string]Approval{}}
}

// AddStation registers (or replaces) a station's keys.
func (m *MemoryTrust) AddStation(id string, k PublicKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stations[id] = k
}

// AddUser registers (or replaces) a user's keys.
func (m *MemoryTrust) AddUser(id string, k PublicKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[id] = k
}

// Approve records an approval under a.Digest.
func (m *MemoryTrust) Approve(a Approval) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.approvals[a.Digest] = a
}

// StationKey implements TrustStore.
func (m *MemoryTrust) StationKey(_ context.Context, id string) (PublicKey, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	k, ok := m.stations[id]
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: station %q is not in the trust store", ErrUntrusted, id)
	}
	return k, nil
}

// UserKey implements TrustStore.
func (m *MemoryTrust) UserKey(_ context.Context, id string) (PublicKey, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	k, ok := m.users[id]
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: user %q is not in the trust store", ErrUntrusted, id)
	}
	return k, nil
}

// TrainApproval implements TrustStore.
func (m *MemoryTrust) TrainApproval(_ context.Context, digest string) (Approval, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a, ok := m.approvals[digest]
	if !ok {
		return Approval{}, fmt.Errorf("%w: no approval for train %s", ErrUnapproved, digest)
	}
	return a, nil
}

// ReplayGuard remembers which stops a station has already started, so the
// same signed train cannot be run twice at one station (a re-pushed old
// image verifies perfectly otherwise). Stations back it with a database.
type ReplayGuard interface {
	// Mark records (trainDigest, stop) and reports whether it was new.
	Mark(ctx context.Context, trainDigest string, stop int) (fresh bool, err error)
}

// MemoryReplayGuard is an in-memory ReplayGuard.
type MemoryReplayGuard struct {
	mu   sync.Mutex
	seen map[string]bool
}

// Mark implements ReplayGuard.
func (g *MemoryReplayGuard) Mark(_ context.Context, trainDigest string, stop int) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen == nil {
		g.seen = map[string]bool{}
	}
	k := fmt.Sprintf("%s#%d", trainDigest, stop)
	if g.seen[k] {
		return false, nil
	}
	g.seen[k] = true
	return true, nil
}
