// Package repo is the publisher side of trainyard's TUF over OCI (dtuf's
// "master"): keys, metadata, targets and their publication to a registry
// repository in the layout of tuf/ocistore.
//
// Local state (the master directory):
//
//	keys/<role>/<keyid>.key   encrypted private keys (tuf/keys), one dir per role
//	keys/<role>/<keyid>.pub   public keys (TUF key JSON)
//	keys/retired/<keyid>.key  replaced keys, kept to cross-sign a rotated root
//	metadata/<role>.json      working metadata (url-escaped role names)
//	metadata/root-history/N.root.json  every root version, published in order
//	state.json                published versions and unpublished changes
package repo

import (
	"errors"
	"io"
	"net/url"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/ocistore"

	"github.com/trainyard/trainyard/errdefs"
)

// Top-level role names.
const (
	Root      = metadata.ROOT
	Targets   = metadata.TARGETS
	Snapshot  = metadata.SNAPSHOT
	Timestamp = metadata.TIMESTAMP
)

// DefaultLifetime is how long a role's newly signed metadata is valid
// unless WithLifetime says otherwise: python-tuf's defaults (what dtuf
// used), 365 days for root, 90 for targets (and delegated roles), 7 for
// snapshot, 1 for timestamp. A function, not a map, so no importer can
// change every publisher's defaults.
func DefaultLifetime(role string) time.Duration {
	if d, ok := defaultLifetimes[role]; ok {
		return d
	}
	return defaultLifetimes[Targets]
}

var defaultLifetimes = map[string]time.Duration{
	Root:      365 * 24 * time.Hour,
	Targets:   90 * 24 * time.Hour,
	Snapshot:  7 * 24 * time.Hour,
	Timestamp: 24 * time.Hour,
}

// PasswordFunc returns the password of a role's keys.
type PasswordFunc func(role string) ([]byte, error)

// ErrNoMetadata is returned before create-metadata has run.
var ErrNoMetadata = errdefs.New("no metadata yet: run create-metadata first", errdefs.ErrNotFound)

// ErrThreshold is returned when fewer keys than a role's threshold can sign.
var ErrThreshold = errors.New("not enough keys to meet the role's threshold")

// Publisher manages one TUF repository.
type Publisher struct {
	dir       string
	store     *ocistore.Store
	passwords PasswordFunc
	newPass   PasswordFunc
	keyType   string
	lifetimes map[string]time.Duration
	now       func() time.Time
	progress  io.Writer
	cache     map[string][]byte      // role -> password
	unlocked  map[string]keys.Signer // key id -> decrypted key (Unlock, signers)
	force     bool
	settle    time.Duration
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithPasswords sets where key passwords come from (default: empty password).
func WithPasswords(f PasswordFunc) Option { return func(p *Publisher) { p.passwords = f } }

// WithNewPasswords sets where the password of a role's first key comes
// from (a role with no key files yet), e.g. a prompt that asks twice. Later
// keys of the role take WithPasswords' password: a role keeps one password,
// which also decrypts its retired keys. Default: WithPasswords' function.
func WithNewPasswords(f PasswordFunc) Option { return func(p *Publisher) { p.newPass = f } }

// WithKeyType sets the type of new keys: ed25519 (default), ecdsa, rsa.
func WithKeyType(t string) Option { return func(p *Publisher) { p.keyType = t } }

// WithLifetime sets how long a role's newly signed metadata stays valid.
func WithLifetime(role string, d time.Duration) Option {
	return func(p *Publisher) { p.lifetimes[role] = d }
}

// WithClock sets the time source (tests).
func WithClock(now func() time.Time) Option { return func(p *Publisher) { p.now = now } }

// WithProgress shows upload progress bars on w when it is a terminal.
func WithProgress(w io.Writer) Option { return func(p *Publisher) { p.progress = w } }

// WithForce publishes even when the registry holds metadata this state did
// not publish (a foreign repository, a newer version, a versioned file
// with other bytes): the operator knowingly replaces it.
func WithForce(force bool) Option { return func(p *Publisher) { p.force = force } }

// WithSettle sets how long a publish waits after writing its first
// versioned tag before reading it back (default DefaultSettle). A
// concurrent publisher that wrote the same tag in that time is detected.
func WithSettle(d time.Duration) Option { return func(p *Publisher) { p.settle = d } }

// DefaultSettle is the wait between writing and re-reading the claim tag.
const DefaultSettle = 100 * time.Millisecond

// New returns a publisher keeping its state in dir and publishing to store.
func New(store *ocistore.Store, dir string, opts ...Option) *Publisher {
	p := &Publisher{dir: dir, store: store, lifetimes: map[string]time.Duration{}, now: time.Now,
		passwords: func(string) ([]byte, error) { return nil, nil }, settle: DefaultSettle}
	for r, d := range defaultLifetimes {
		p.lifetimes[r] = d
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Open is a shortcut: the publisher of registry repository repo.
func Open(client *registry.Client, repo, dir string, opts ...Option) (*Publisher, error) {
	s, err := ocistore.New(client, repo)
	if err != nil {
		return nil, err
	}
	return New(s, dir, opts...), nil
}

func (p *Publisher) lifetime(role string) time.Duration {
	if d, ok := p.lifetimes[role]; ok {
		return d
	}
	return p.lifetimes[Targets]
}

// roleDir is the on-disk directory name of a role (escaped like go-tuf's files).
func roleDir(role string) string { return url.PathEscape(role) }

func (p *Publisher) keyDir(role string) string { return filepath.Join(p.dir, "keys", roleDir(role)) }

// RootPath is the local file of the latest root metadata: what clients
// should be given to bootstrap (pull-metadata <root.json>).
func (p *Publisher) RootPath() string { return p.metaPath(Root) }
