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
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/internal/flock"
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
	cache     map[string][]byte
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

// ---- keys ----

// CreateKey generates a key for role. Unless add is set, the role's current
// keys are retired (kept under keys/retired to cross-sign a new root). It
// returns the key id and the path of the public key file.
func (p *Publisher) CreateKey(role string, add bool) (string, string, error) {
	unlock, err := flock.Lock(p.dir)
	if err != nil {
		return "", "", err
	}
	defer unlock()

	if role == "" || role == "retired" {
		return "", "", fmt.Errorf("invalid role name %q", role)
	}
	existing, err := p.keyIDs(role)
	if err != nil {
		return "", "", err
	}
	var pw []byte
	if len(existing) == 0 && p.newPass != nil {
		pw, err = p.newPassword(role)
	} else {
		pw, err = p.password(role)
	}
	if err != nil {
		return "", "", err
	}
	k, err := keys.Generate(p.keyType)
	if err != nil {
		return "", "", err
	}
	enc, err := k.Encrypt(pw)
	if err != nil {
		return "", "", err
	}
	pub, err := keys.MarshalPublic(k.Public())
	if err != nil {
		return "", "", err
	}
	dir := p.keyDir(role)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if !add {
		if err := p.retire(role); err != nil {
			return "", "", err
		}
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, k.KeyID()+".key"), enc, 0o600); err != nil {
		return "", "", err
	}
	pubPath := filepath.Join(dir, k.KeyID()+".pub")
	if err := fsutil.WriteFileAtomic(pubPath, pub, 0o644); err != nil {
		return "", "", err
	}
	return k.KeyID(), pubPath, nil
}

func (p *Publisher) retire(role string) error {
	ids, err := p.keyIDs(role)
	if err != nil {
		return err
	}
	rdir := filepath.Join(p.dir, "keys", "retired")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return err
	}
	for _, id := range ids {
		src := filepath.Join(p.keyDir(role), id)
		if err := os.Rename(src+".key", filepath.Join(rdir, id+".key")); err != nil {
			return err
		}
		_ = os.Rename(src+".pub", filepath.Join(rdir, id+".pub"))
	}
	return nil
}

// keyIDs lists the active keys of a role.
func (p *Publisher) keyIDs(role string) ([]string, error) {
	ents, err := os.ReadDir(p.keyDir(role))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".key"); ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func (p *Publisher) publicKeys(role string) ([]*metadata.Key, error) {
	ids, err := p.keyIDs(role)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no keys for role %q: create them first", role)
	}
	var out []*metadata.Key
	for _, id := range ids {
		data, err := os.ReadFile(filepath.Join(p.keyDir(role), id+".key"))
		if err != nil {
			return nil, err
		}
		k, err := keys.ParsePublic(data)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
		out = append(out, k)
	}
	return out, nil
}

func (p *Publisher) password(role string) ([]byte, error) {
	if p.cache == nil {
		p.cache = map[string][]byte{}
	}
	if pw, ok := p.cache[role]; ok {
		return pw, nil
	}
	pw, err := p.passwords(role)
	if err != nil {
		return nil, fmt.Errorf("password for %s keys: %w", role, err)
	}
	p.cache[role] = pw
	return pw, nil
}

// newPassword is password for a role that has no keys yet.
func (p *Publisher) newPassword(role string) ([]byte, error) {
	if pw, ok := p.cache[role]; ok {
		return pw, nil
	}
	pw, err := p.newPass(role)
	if err != nil {
		return nil, fmt.Errorf("password for new %s keys: %w", role, err)
	}
	if p.cache == nil {
		p.cache = map[string][]byte{}
	}
	p.cache[role] = pw
	return pw, nil
}

// signers loads the private keys with the given ids, looking in the role's
// directory and in keys/retired. Keys it cannot find are skipped.
func (p *Publisher) signers(role string, ids []string) ([]keys.Signer, error) {
	var out []keys.Signer
	for _, id := range ids {
		var data []byte
		var err error
		for _, dir := range []string{p.keyDir(role), filepath.Join(p.dir, "keys", "retired")} {
			data, err = os.ReadFile(filepath.Join(dir, id+".key"))
			if err == nil {
				break
			}
		}
		if err != nil {
			continue
		}
		pw, err := p.password(role)
		if err != nil {
			return nil, err
		}
		k, err := keys.Decrypt(data, pw)
		if err != nil {
			return nil, fmt.Errorf("%s key %s: %w", role, id, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// ---- state ----

type state struct {
	Published map[string]int64 `json:"published"`
	Dirty     map[string]bool  `json:"dirty"`
	// Pending records the manifest digests of versioned files a publish
	// wrote before it finished: a retry may replace its own leftovers,
	// never another publisher's file.
	Pending map[string]string `json:"pending,omitempty"`
}

func (p *Publisher) loadState() (*state, error) {
	st := &state{Published: map[string]int64{}, Dirty: map[string]bool{}}
	data, err := os.ReadFile(filepath.Join(p.dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("state.json: %w", err)
	}
	if st.Published == nil {
		st.Published = map[string]int64{}
	}
	if st.Dirty == nil {
		st.Dirty = map[string]bool{}
	}
	if st.Pending == nil {
		st.Pending = map[string]string{}
	}
	return st, nil
}

func (p *Publisher) saveState(st *state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(p.dir, "state.json"), data, 0o600)
}

func (p *Publisher) metaPath(role string) string {
	return filepath.Join(p.dir, "metadata", url.PathEscape(role)+".json")
}

func (p *Publisher) rootHistoryPath(v int64) string {
	return filepath.Join(p.dir, "metadata", "root-history", fmt.Sprintf("%d.root.json", v))
}

func writeMeta[T metadata.Roles](path string, md *metadata.Metadata[T]) error {
	data, err := md.ToBytes(true)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, data, 0o644)
}

func readMeta[T metadata.Roles](path string, md *metadata.Metadata[T]) (*metadata.Metadata[T], error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoMetadata
	}
	if err != nil {
		return nil, err
	}
	return md.FromBytes(data)
}

func (p *Publisher) root() (*metadata.Metadata[metadata.RootType], error) {
	return readMeta(p.metaPath(Root), metadata.Root())
}

func (p *Publisher) targets(role string) (*metadata.Metadata[metadata.TargetsType], error) {
	return readMeta(p.metaPath(role), metadata.Targets())
}

// delegatedRoles lists the roles delegated by the top-level targets role.
func delegatedRoles(t *metadata.Metadata[metadata.TargetsType]) []metadata.DelegatedRole {
	if t.Signed.Delegations == nil {
		return nil
	}
	return t.Signed.Delegations.Roles
}

// ---- metadata ----

// Thresholds maps role names to k (of n keys); missing roles keep theirs (1 initially).
type Thresholds map[string]int

// CreateMetadata writes version 1 of every top-level role from the key
// files (signed root; the online roles are signed by PushMetadata).
func (p *Publisher) CreateMetadata(ctx context.Context, th Thresholds) error {
	unlock, err := flock.Lock(p.dir)
	if err != nil {
		return err
	}
	defer unlock()

	if _, err := os.Stat(p.metaPath(Root)); err == nil {
		return fmt.Errorf("metadata already exists in %s (use reset-keys to change keys)", p.dir)
	}
	now := p.now().UTC()
	root := metadata.Root(now.Add(p.lifetime(Root)))
	root.Signed.ConsistentSnapshot = true
	if err := p.setRootKeys(root, th); err != nil {
		return err
	}
	if err := p.signRoot(root, nil); err != nil {
		return err
	}
	// A new repository must not replace one already in the registry.
	if err := p.checkRegistry(ctx, &state{Published: map[string]int64{}}); err != nil {
		return err
	}
	targets := metadata.Targets(now.Add(p.lifetime(Targets)))
	if err := writeMeta(p.metaPath(Targets), targets); err != nil {
		return err
	}
	if err := writeMeta(p.rootHistoryPath(1), root); err != nil {
		return err
	}
	if err := writeMeta(p.metaPath(Root), root); err != nil {
		return err
	}
	return p.saveState(&state{Published: map[string]int64{}, Dirty: map[string]bool{Root: true, Targets: true}})
}

// setRootKeys replaces the keys of the four top-level roles with the
// active key files, keeping (or overriding) thresholds.
func (p *Publisher) setRootKeys(root *metadata.Metadata[metadata.RootType], th Thresholds) error {
	for _, role := range []string{Root, Targets, Snapshot, Timestamp} {
		ks, err := p.publicKeys(role)
		if err != nil {
			return err
		}
		r := root.Signed.Roles[role]
		if r == nil {
			r = &metadata.Role{Threshold: 1}
			root.Signed.Roles[role] = r
		}
		for _, id := range append([]string(nil), r.KeyIDs...) {
			if err := root.Signed.RevokeKey(id, role); err != nil {
				return err
			}
		}
		for _, k := range ks {
			if err := root.Signed.AddKey(k, role); err != nil {
				return err
			}
		}
		if t, ok := th[role]; ok {
			r.Threshold = t
		}
		if r.Threshold < 1 || r.Threshold > len(ks) {
			return fmt.Errorf("%w: role %s threshold %d with %d keys", ErrThreshold, role, r.Threshold, len(ks))
		}
	}
	return nil
}

// signRoot signs root with its own keys and, for a rotation, the previous
// root's keys; then checks both thresholds as a client would.
func (p *Publisher) signRoot(root, prev *metadata.Metadata[metadata.RootType]) error {
	root.ClearSignatures()
	ids := append([]string(nil), root.Signed.Roles[Root].KeyIDs...)
	if prev != nil {
		ids = append(ids, prev.Signed.Roles[Root].KeyIDs...)
	}
	signers, err := p.signers(Root, dedup(ids))
	if err != nil {
		return err
	}
	if err := keys.SignMetadata(root, signers...); err != nil {
		return err
	}
	if err := root.VerifyDelegate(Root, root); err != nil {
		return fmt.Errorf("%w: new root: %w", ErrThreshold, err)
	}
	if prev != nil {
		if err := prev.VerifyDelegate(Root, root); err != nil {
			return fmt.Errorf("%w: new root is not signed by enough keys of version %d: %w", ErrThreshold, prev.Signed.Version, err)
		}
	}
	return nil
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// locked runs fn under the admin directory's lock with the current root and
// publishing state: the prologue of every job that signs and publishes.
func (p *Publisher) locked(fn func(root *metadata.Metadata[metadata.RootType], st *state) error) error {
	unlock, err := flock.Lock(p.dir)
	if err != nil {
		return err
	}
	defer unlock()
	root, err := p.root()
	if err != nil {
		return err
	}
	st, err := p.loadState()
	if err != nil {
		return err
	}
	return fn(root, st)
}

// ResetKeys writes a new root version from the current key files (after
// create-root-key or create-metadata-keys), signed by the new root keys and
// by the previous root's keys so that existing clients follow the rotation.
// Delegated roles take their keys from keys/<role> too. Everything is
// re-signed at the next PushMetadata.
func (p *Publisher) ResetKeys(ctx context.Context, th Thresholds) error {
	return p.locked(func(prev *metadata.Metadata[metadata.RootType], st *state) error {
		data, err := os.ReadFile(p.metaPath(Root))
		if err != nil {
			return err
		}
		root, err := metadata.Root().FromBytes(data)
		if err != nil {
			return err
		}
		if prev.Signed.Version <= st.Published[Root] {
			root.Signed.Version++
		} else if prev.Signed.Version > 1 {
			// the unpublished version is rewritten; cross-sign against the one before
			prev, err = readMeta(p.rootHistoryPath(prev.Signed.Version-1), metadata.Root())
			if err != nil {
				return err
			}
		} else {
			prev = nil
		}
		root.Signed.Expires = p.now().UTC().Add(p.lifetime(Root))
		if err := p.setRootKeys(root, th); err != nil {
			return err
		}
		if err := p.signRoot(root, prev); err != nil {
			return err
		}
		// delegated roles
		top, err := p.targets(Targets)
		if err != nil {
			return err
		}
		for i := range delegatedRoles(top) {
			dr := &top.Signed.Delegations.Roles[i]
			ks, err := p.publicKeys(dr.Name)
			if err != nil {
				return err
			}
			for _, id := range append([]string(nil), dr.KeyIDs...) {
				if err := top.Signed.RevokeKey(id, dr.Name); err != nil {
					return err
				}
			}
			for _, k := range ks {
				if err := top.Signed.AddKey(k, dr.Name); err != nil {
					return err
				}
			}
			if t, ok := th[dr.Name]; ok {
				dr.Threshold = t
			}
			if dr.Threshold > len(ks) {
				return fmt.Errorf("%w: role %s threshold %d with %d keys", ErrThreshold, dr.Name, dr.Threshold, len(ks))
			}
			st.Dirty[dr.Name] = true
		}
		if err := writeMeta(p.metaPath(Targets), top); err != nil {
			return err
		}
		if err := writeMeta(p.rootHistoryPath(root.Signed.Version), root); err != nil {
			return err
		}
		if err := writeMeta(p.metaPath(Root), root); err != nil {
			return err
		}
		st.Dirty[Root] = true
		st.Dirty[Targets] = true
		return p.saveState(st)
	})
}

// AddDelegation delegates paths (glob patterns) from the top-level targets
// role to role, whose keys must exist under keys/<role>.
func (p *Publisher) AddDelegation(ctx context.Context, role string, paths []string, threshold int, terminating bool) error {
	unlock, err := flock.Lock(p.dir)
	if err != nil {
		return err
	}
	defer unlock()

	switch role {
	case Root, Targets, Snapshot, Timestamp, "", "retired":
		return fmt.Errorf("invalid delegated role name %q", role)
	}
	if len(paths) == 0 {
		return errors.New("a delegation needs at least one path pattern")
	}
	top, err := p.targets(Targets)
	if err != nil {
		return err
	}
	ks, err := p.publicKeys(role)
	if err != nil {
		return err
	}
	if threshold < 1 || threshold > len(ks) {
		return fmt.Errorf("%w: role %s threshold %d with %d keys", ErrThreshold, role, threshold, len(ks))
	}
	if top.Signed.Delegations == nil {
		top.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	for _, dr := range top.Signed.Delegations.Roles {
		if dr.Name == role {
			return fmt.Errorf("role %q is already delegated", role)
		}
	}
	top.Signed.Delegations.Roles = append(top.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: role, Threshold: threshold, Terminating: terminating, Paths: paths, KeyIDs: []string{}})
	for _, k := range ks {
		if err := top.Signed.AddKey(k, role); err != nil {
			return err
		}
	}
	if err := writeMeta(p.metaPath(Targets), top); err != nil {
		return err
	}
	if _, err := os.Stat(p.metaPath(role)); errors.Is(err, os.ErrNotExist) {
		if err := writeMeta(p.metaPath(role), metadata.Targets(p.now().UTC().Add(p.lifetime(role)))); err != nil {
			return err
		}
	}
	st, err := p.loadState()
	if err != nil {
		return err
	}
	st.Dirty[Targets] = true
	st.Dirty[role] = true
	return p.saveState(st)
}

// ---- targets ----

// ValidTargetName rejects names go-tuf or a file system would treat
// ambiguously: empty, absolute, not clean, "..", backslashes, NUL.
func ValidTargetName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name || name == "." ||
		strings.HasPrefix(name, "../") || name == ".." || strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("%w: %q", tuf.ErrReserved, name)
	}
	return nil
}

// roleFor returns the role that will hold name: role if given (checked
// against its delegated paths), else the top-level targets role.
func (p *Publisher) roleFor(top *metadata.Metadata[metadata.TargetsType], role, name string) (string, error) {
	if role == "" || role == Targets {
		return Targets, nil
	}
	for _, dr := range delegatedRoles(top) {
		if dr.Name == role {
			ok, err := dr.IsDelegatedPath(name)
			if err != nil {
				return "", err
			}
			if !ok {
				return "", fmt.Errorf("target %q is outside the paths delegated to %s", name, role)
			}
			return role, nil
		}
	}
	return "", fmt.Errorf("no delegated role %q", role)
}

// resolveSources turns the sources of a pushed target into its signed
// description. A source is a local file (uploaded as a blob unless the
// registry has it) or "@name", the parts of an existing target. One source
// is stored as today: a file is one blob, "@name" copies the target's
// length, hashes and custom field. Several sources make a multi-part
// target: length and hashes of the concatenation (so clients verify the
// whole), the parts in the custom field (tuf.Parts). The concatenation is
// hashed in order in one pass: files while they are hashed for upload, the
// parts of "@name" sources streamed back from the registry (and checked).
func (p *Publisher) resolveSources(ctx context.Context, srcs []string) (*metadata.TargetFiles, error) {
	if len(srcs) == 0 {
		return nil, errors.New("a target needs at least one file or @target")
	}
	var all map[string]*metadata.TargetFiles
	existing := func(other string) (*metadata.TargetFiles, error) {
		if all == nil {
			var err error
			if all, err = p.allTargets(); err != nil {
				return nil, err
			}
		}
		tf, ok := all[other]
		if !ok {
			return nil, fmt.Errorf("%w: no target %q to copy", tuf.ErrNotFound, other)
		}
		return tf, nil
	}
	if len(srcs) == 1 {
		if other, ok := strings.CutPrefix(srcs[0], "@"); ok {
			tf, err := existing(other)
			if err != nil {
				return nil, err
			}
			return &metadata.TargetFiles{Length: tf.Length, Hashes: tf.Hashes, Custom: tf.Custom}, nil
		}
		tb, err := p.store.PushTargetFile(ctx, srcs[0], p.progress)
		if err != nil {
			return nil, err
		}
		return targetFiles(tb), nil
	}
	whole := sha256.New()
	var parts []tuf.Part
	var length int64
	for _, src := range srcs {
		if other, ok := strings.CutPrefix(src, "@"); ok {
			tf, err := existing(other)
			if err != nil {
				return nil, err
			}
			cp := *tf
			cp.Path = other
			ps, err := tuf.Parts(&cp)
			if err != nil {
				return nil, err
			}
			for _, part := range ps {
				if err := p.hashPart(ctx, part, whole); err != nil {
					return nil, fmt.Errorf("@%s: %w", other, err)
				}
				parts = append(parts, part)
				length += part.Length
			}
			continue
		}
		tb, err := p.store.PushTargetFileTee(ctx, src, p.progress, whole)
		if err != nil {
			return nil, err
		}
		parts = append(parts, tuf.Part{SHA256: tb.SHA256, Length: tb.Size})
		length += tb.Size
	}
	tf := &metadata.TargetFiles{Length: length, Hashes: metadata.Hashes{"sha256": whole.Sum(nil)}}
	if err := tuf.SetParts(tf, parts); err != nil {
		return nil, err
	}
	return tf, nil
}

// hashPart streams a part blob from the registry into w, checking its
// length and sha256 (a reused part must be what its target signed).
func (p *Publisher) hashPart(ctx context.Context, part tuf.Part, w io.Writer) error {
	rc, err := p.store.OpenBlob(ctx, part.SHA256)
	if err != nil {
		return fmt.Errorf("blob sha256:%s: %w", part.SHA256, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, w), io.LimitReader(rc, part.Length+1))
	if err != nil {
		return fmt.Errorf("blob sha256:%s: %w", part.SHA256, err)
	}
	if n != part.Length || hex.EncodeToString(h.Sum(nil)) != part.SHA256 {
		return fmt.Errorf("%w: blob sha256:%s is not the %d bytes its target signed", tuf.ErrTampered, part.SHA256, part.Length)
	}
	return nil
}

func targetFiles(tb ocistore.TargetBlob) *metadata.TargetFiles {
	h, _ := hex.DecodeString(tb.SHA256)
	return &metadata.TargetFiles{Length: tb.Size, Hashes: metadata.Hashes{"sha256": h}}
}

// PushTarget uploads src (a file path or "@existing-target") as target name
// into role ("" = top-level targets). It is published by PushMetadata.
func (p *Publisher) PushTarget(ctx context.Context, name, src, role string) error {
	return p.PushTargetParts(ctx, name, role, src)
}

// PushTargetParts stages target name (in role, "" = top-level targets) as
// the concatenation of srcs, each a file path or "@existing-target" (whose
// parts are reused): dtuf's push-target. One source is a plain single-blob
// target; several make a multi-part target (see resolveSources). It is
// published by PushMetadata.
func (p *Publisher) PushTargetParts(ctx context.Context, name, role string, srcs ...string) error {
	unlock, err := flock.Lock(p.dir)
	if err != nil {
		return err
	}
	defer unlock()

	if err := ValidTargetName(name); err != nil {
		return err
	}
	tf, err := p.resolveSources(ctx, srcs)
	if err != nil {
		return err
	}
	return p.stage(ctx, name, role, tf)
}

// PutTargetBytes uploads a small target held in memory (trust documents).
func (p *Publisher) PutTargetBytes(ctx context.Context, name, role string, data []byte) error {
	unlock, err := flock.Lock(p.dir)
	if err != nil {
		return err
	}
	defer unlock()

	if err := ValidTargetName(name); err != nil {
		return err
	}
	tb, err := p.store.PushTargetBytes(ctx, data)
	if err != nil {
		return err
	}
	return p.stage(ctx, name, role, targetFiles(tb))
}

func (p *Publisher) stage(ctx context.Context, name, role string, tf *metadata.TargetFiles) error {
	top, err := p.targets(Targets)
	if err != nil {
		return err
	}
	role, err = p.roleFor(top, role, name)
	if err != nil {
		return err
	}
	md, err := p.targets(role)
	if err != nil {
		return err
	}
	tf.Path = name
	md.Signed.Targets[name] = tf
	if err := writeMeta(p.metaPath(role), md); err != nil {
		return err
	}
	st, err := p.loadState()
	if err != nil {
		return err
	}
	st.Dirty[role] = true
	if err := p.saveState(st); err != nil {
		return err
	}
	// keep the new blob referenced at once, together with what is published
	return p.keepStaged(ctx)
}

// DelTarget removes targets from the working metadata. Their blobs stay in
// the registry until the next PushMetadata drops them from the keeper
// manifest; a blob another target still uses stays referenced.
func (p *Publisher) DelTarget(ctx context.Context, names ...string) error {
	unlock, err := flock.Lock(p.dir)
	if err != nil {
		return err
	}
	defer unlock()

	st, err := p.loadState()
	if err != nil {
		return err
	}
	roles, err := p.targetRoles()
	if err != nil {
		return err
	}
	for _, name := range names {
		found := false
		for _, role := range roles {
			md, err := p.targets(role)
			if err != nil {
				return err
			}
			if _, ok := md.Signed.Targets[name]; ok {
				delete(md.Signed.Targets, name)
				if err := writeMeta(p.metaPath(role), md); err != nil {
					return err
				}
				st.Dirty[role] = true
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%w: target %q", tuf.ErrNotFound, name)
		}
	}
	return p.saveState(st)
}

// targetRoles lists "targets" and its delegated roles.
func (p *Publisher) targetRoles() ([]string, error) {
	top, err := p.targets(Targets)
	if err != nil {
		return nil, err
	}
	roles := []string{Targets}
	for _, dr := range delegatedRoles(top) {
		roles = append(roles, dr.Name)
	}
	return roles, nil
}

func (p *Publisher) allTargets() (map[string]*metadata.TargetFiles, error) {
	roles, err := p.targetRoles()
	if err != nil {
		return nil, err
	}
	all := map[string]*metadata.TargetFiles{}
	for _, role := range roles {
		md, err := p.targets(role)
		if err != nil {
			return nil, err
		}
		for n, tf := range md.Signed.Targets {
			if _, ok := all[n]; !ok {
				all[n] = tf
			}
		}
	}
	return all, nil
}

func (p *Publisher) keeperBlobs() ([]ocistore.TargetBlob, error) {
	all, err := p.allTargets()
	if err != nil {
		return nil, err
	}
	var out []ocistore.TargetBlob
	for n, tf := range all {
		cp := *tf
		cp.Path = n
		parts, err := tuf.Parts(&cp)
		if err != nil {
			return nil, err
		}
		for _, part := range parts {
			out = append(out, ocistore.TargetBlob{Name: n, SHA256: part.SHA256, Size: part.Length})
		}
	}
	return out, nil
}

// keepStaged adds the working metadata's blobs to the keeper manifest,
// keeping what it already references, so a staged target's blobs are safe
// from registry GC before they are published.
func (p *Publisher) keepStaged(ctx context.Context) error {
	blobs, err := p.keeperBlobs()
	if err != nil {
		return err
	}
	old, err := p.store.Keeper(ctx)
	if err != nil && !errors.Is(err, tuf.ErrNotFound) {
		return err
	}
	return p.store.PutKeeper(ctx, append(blobs, old...))
}

// ListTargets returns every target name in the working metadata.
func (p *Publisher) ListTargets() ([]string, error) {
	all, err := p.allTargets()
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(all)), nil
}

// Expiration is one role's expiry.
type Expiration = tuf.Expiration

// Expirations lists the expiry of every role's working metadata.
func (p *Publisher) Expirations() ([]Expiration, error) {
	root, err := p.root()
	if err != nil {
		return nil, err
	}
	out := []Expiration{{Role: Root, Expires: root.Signed.Expires}}
	roles, err := p.targetRoles()
	if err != nil {
		return nil, err
	}
	for _, role := range roles {
		md, err := p.targets(role)
		if err != nil {
			return nil, err
		}
		out = append(out, Expiration{Role: role, Expires: md.Signed.Expires})
	}
	if s, err := readMeta(p.metaPath(Snapshot), metadata.Snapshot()); err == nil {
		out = append(out, Expiration{Role: Snapshot, Expires: s.Signed.Expires})
	}
	if t, err := readMeta(p.metaPath(Timestamp), metadata.Timestamp()); err == nil {
		out = append(out, Expiration{Role: Timestamp, Expires: t.Signed.Expires})
	}
	return out, nil
}

// ---- publication ----

// signRole signs md with every available key of role, checking the
// threshold the delegator (root or top-level targets) sets.
func (p *Publisher) signRole(role string, keyIDs []string, threshold int, sign func([]keys.Signer) error) error {
	signers, err := p.signers(role, keyIDs)
	if err != nil {
		return err
	}
	if len(signers) < threshold {
		return fmt.Errorf("%w: role %s needs %d signatures, %d keys available", ErrThreshold, role, threshold, len(signers))
	}
	return sign(signers)
}

// PushMetadata re-signs the top-level targets role and every changed
// delegated role, then a new snapshot and timestamp, and publishes in the
// order that keeps clients consistent: target blobs (already pushed) and
// the keeper manifest, new roots, delegated roles, targets, snapshot, and
// the timestamp tag last.
func (p *Publisher) PushMetadata(ctx context.Context) error {
	return p.locked(func(root *metadata.Metadata[metadata.RootType], st *state) error {
		now := p.now().UTC()
		top, err := p.targets(Targets)
		if err != nil {
			return err
		}
		type pending struct {
			file string
			data []byte
		}
		var delegated []pending
		snap := metadata.Snapshot(now.Add(p.lifetime(Snapshot)))
		if old, err := readMeta(p.metaPath(Snapshot), metadata.Snapshot()); err == nil {
			snap.Signed.Meta = old.Signed.Meta
		}
		for _, dr := range delegatedRoles(top) {
			md, err := p.targets(dr.Name)
			if err != nil {
				return err
			}
			if st.Dirty[dr.Name] || st.Published[dr.Name] == 0 {
				md.Signed.Version = st.Published[dr.Name] + 1
				md.Signed.Expires = now.Add(p.lifetime(dr.Name))
				md.ClearSignatures()
				if err := p.signRole(dr.Name, dr.KeyIDs, dr.Threshold, func(s []keys.Signer) error { return keys.SignMetadata(md, s...) }); err != nil {
					return err
				}
				if err := top.VerifyDelegate(dr.Name, md); err != nil {
					return fmt.Errorf("%w: %s: %w", ErrThreshold, dr.Name, err)
				}
				data, err := md.ToBytes(true)
				if err != nil {
					return err
				}
				delegated = append(delegated, pending{fmt.Sprintf("%d.%s.json", md.Signed.Version, dr.Name), data})
				if err := writeMeta(p.metaPath(dr.Name), md); err != nil {
					return err
				}
			}
			data, err := md.ToBytes(true)
			if err != nil {
				return err
			}
			snap.Signed.Meta[dr.Name+".json"] = hashedMetaFile(md.Signed.Version, data)
		}
		// top-level targets
		top.Signed.Version = st.Published[Targets] + 1
		top.Signed.Expires = now.Add(p.lifetime(Targets))
		top.ClearSignatures()
		tr := root.Signed.Roles[Targets]
		if err := p.signRole(Targets, tr.KeyIDs, tr.Threshold, func(s []keys.Signer) error { return keys.SignMetadata(top, s...) }); err != nil {
			return err
		}
		if err := root.VerifyDelegate(Targets, top); err != nil {
			return fmt.Errorf("%w: targets: %w", ErrThreshold, err)
		}
		topData, err := top.ToBytes(true)
		if err != nil {
			return err
		}
		snap.Signed.Meta[Targets+".json"] = hashedMetaFile(top.Signed.Version, topData)
		// snapshot and timestamp
		ts, tail, err := p.signSnapshotAndTimestamp(root, st, snap)
		if err != nil {
			return err
		}
		// publish: roots, delegated, targets, snapshot, timestamp; the keeper
		// once the first versioned file is ours (see publish)
		var files []pubFile
		for v := st.Published[Root] + 1; v <= root.Signed.Version; v++ {
			data, err := os.ReadFile(p.rootHistoryPath(v))
			if err != nil {
				return fmt.Errorf("root version %d: %w", v, err)
			}
			files = append(files, pubFile{fmt.Sprintf("%d.root.json", v), data, []string{ocistore.RootTag}})
		}
		for _, d := range delegated {
			files = append(files, pubFile{d.file, d.data, nil})
		}
		files = append(files, pubFile{fmt.Sprintf("%d.targets.json", top.Signed.Version), topData, nil})
		files = append(files, tail...)
		if err := p.publish(ctx, st, files, true); err != nil {
			return err
		}
		// record
		if err := writeMeta(p.metaPath(Targets), top); err != nil {
			return err
		}
		if err := writeMeta(p.metaPath(Snapshot), snap); err != nil {
			return err
		}
		if err := writeMeta(p.metaPath(Timestamp), ts); err != nil {
			return err
		}
		st.Published[Root] = root.Signed.Version
		st.Published[Targets] = top.Signed.Version
		st.Published[Snapshot] = snap.Signed.Version
		st.Published[Timestamp] = ts.Signed.Version
		for _, dr := range delegatedRoles(top) {
			md, err := p.targets(dr.Name)
			if err != nil {
				return err
			}
			st.Published[dr.Name] = md.Signed.Version
		}
		st.Dirty = map[string]bool{}
		st.Pending = nil
		return p.saveState(st)
	})
}

// signSnapshotAndTimestamp signs snap as the next snapshot version and a
// timestamp over it, and returns the two files to publish last, in order.
func (p *Publisher) signSnapshotAndTimestamp(root *metadata.Metadata[metadata.RootType], st *state, snap *metadata.Metadata[metadata.SnapshotType]) (*metadata.Metadata[metadata.TimestampType], []pubFile, error) {
	snap.Signed.Version = st.Published[Snapshot] + 1
	sr := root.Signed.Roles[Snapshot]
	if err := p.signRole(Snapshot, sr.KeyIDs, sr.Threshold, func(s []keys.Signer) error { return keys.SignMetadata(snap, s...) }); err != nil {
		return nil, nil, err
	}
	if err := root.VerifyDelegate(Snapshot, snap); err != nil {
		return nil, nil, fmt.Errorf("%w: snapshot: %w", ErrThreshold, err)
	}
	snapData, err := snap.ToBytes(true)
	if err != nil {
		return nil, nil, err
	}
	ts, tsData, err := p.signTimestamp(root, st, snapData, snap.Signed.Version)
	if err != nil {
		return nil, nil, err
	}
	return ts, []pubFile{
		{fmt.Sprintf("%d.snapshot.json", snap.Signed.Version), snapData, nil},
		{fmt.Sprintf("%d.timestamp.json", ts.Signed.Version), tsData, []string{ocistore.TimestampTag}},
	}, nil
}

func (p *Publisher) signTimestamp(root *metadata.Metadata[metadata.RootType], st *state, snapData []byte, snapVersion int64) (*metadata.Metadata[metadata.TimestampType], []byte, error) {
	ts := metadata.Timestamp(p.now().UTC().Add(p.lifetime(Timestamp)))
	ts.Signed.Version = st.Published[Timestamp] + 1
	sum := sha256.Sum256(snapData)
	mf := metadata.MetaFile(snapVersion)
	mf.Length = int64(len(snapData))
	mf.Hashes = metadata.Hashes{"sha256": sum[:]}
	ts.Signed.Meta[Snapshot+".json"] = mf
	r := root.Signed.Roles[Timestamp]
	if err := p.signRole(Timestamp, r.KeyIDs, r.Threshold, func(s []keys.Signer) error { return keys.SignMetadata(ts, s...) }); err != nil {
		return nil, nil, err
	}
	if err := root.VerifyDelegate(Timestamp, ts); err != nil {
		return nil, nil, fmt.Errorf("%w: timestamp: %w", ErrThreshold, err)
	}
	data, err := ts.ToBytes(true)
	return ts, data, err
}

// RefreshTimestamp re-signs only the timestamp (new version, new expiry)
// for the published snapshot: a cron job needs the timestamp key alone.
func (p *Publisher) RefreshTimestamp(ctx context.Context) error {
	return p.locked(func(root *metadata.Metadata[metadata.RootType], st *state) error {
		if st.Published[Snapshot] == 0 {
			return errors.New("nothing published yet: run push-metadata first")
		}
		snapData, err := os.ReadFile(p.metaPath(Snapshot))
		if err != nil {
			return err
		}
		ts, tsData, err := p.signTimestamp(root, st, snapData, st.Published[Snapshot])
		if err != nil {
			return err
		}
		if err := p.publish(ctx, st, []pubFile{{fmt.Sprintf("%d.timestamp.json", ts.Signed.Version), tsData, []string{ocistore.TimestampTag}}}, false); err != nil {
			return err
		}
		if err := writeMeta(p.metaPath(Timestamp), ts); err != nil {
			return err
		}
		st.Published[Timestamp] = ts.Signed.Version
		st.Pending = nil
		return p.saveState(st)
	})
}

// RootPath is the local file of the latest root metadata: what clients
// should be given to bootstrap (pull-metadata <root.json>).
func (p *Publisher) RootPath() string { return p.metaPath(Root) }

// AddTargets signs targets whose content is already in the registry,
// given only their length and hashes (e.g. a blob pushed by another tool,
// or many names for one blob), and for a multi-part target its parts in
// the custom field (tuf.SetParts). Each distinct blob must exist with that size.
func (p *Publisher) AddTargets(ctx context.Context, role string, targets map[string]*metadata.TargetFiles) error {
	unlock, err := flock.Lock(p.dir)
	if err != nil {
		return err
	}
	defer unlock()

	checked := map[string]bool{}
	for name, tf := range targets {
		if err := ValidTargetName(name); err != nil {
			return err
		}
		if _, ok := tf.Hashes["sha256"]; !ok {
			return fmt.Errorf("target %q: a sha256 hash is required", name)
		}
		cp := *tf
		cp.Path = name
		parts, err := tuf.Parts(&cp)
		if err != nil {
			return err
		}
		for _, part := range parts {
			d := part.SHA256
			if checked[d] {
				continue
			}
			n, err := p.store.BlobSize(ctx, d)
			if err != nil {
				return fmt.Errorf("target %q: blob sha256:%s: %w", name, d, err)
			}
			if n != part.Length {
				return fmt.Errorf("%w: target %q: blob is %d bytes, not %d", tuf.ErrTampered, name, n, part.Length)
			}
			checked[d] = true
		}
	}
	top, err := p.targets(Targets)
	if err != nil {
		return err
	}
	byRole := map[string]*metadata.Metadata[metadata.TargetsType]{}
	for name, tf := range targets {
		r, err := p.roleFor(top, role, name)
		if err != nil {
			return err
		}
		md := byRole[r]
		if md == nil {
			if md, err = p.targets(r); err != nil {
				return err
			}
			byRole[r] = md
		}
		cp := *tf
		cp.Path = name
		md.Signed.Targets[name] = &cp
	}
	st, err := p.loadState()
	if err != nil {
		return err
	}
	for r, md := range byRole {
		if err := writeMeta(p.metaPath(r), md); err != nil {
			return err
		}
		st.Dirty[r] = true
	}
	if err := p.saveState(st); err != nil {
		return err
	}
	return p.keepStaged(ctx)
}

// PublishTarget adds or replaces one small target held in memory and
// publishes at once (the trust directory's path): PutTargetBytes, then
// PushMetadata.
func (p *Publisher) PublishTarget(ctx context.Context, name, role string, data []byte) error {
	if err := p.PutTargetBytes(ctx, name, role, data); err != nil {
		return err
	}
	return p.PushMetadata(ctx)
}

// ReadTarget returns a small target of the working metadata (staged or
// published), read from the registry and checked against the length and
// sha256 this state signed or will sign: the admin reads its own
// directory with the same guarantee a client has.
func (p *Publisher) ReadTarget(ctx context.Context, name string, maxSize int64) ([]byte, error) {
	all, err := p.allTargets()
	if err != nil {
		return nil, err
	}
	tf, ok := all[name]
	if !ok {
		return nil, fmt.Errorf("%w: target %q", tuf.ErrNotFound, name)
	}
	if tf.Length > maxSize {
		return nil, fmt.Errorf("%w: target %q is %d bytes, limit %d", tuf.ErrTooLarge, name, tf.Length, maxSize)
	}
	h, ok := tf.Hashes["sha256"]
	if !ok {
		return nil, fmt.Errorf("target %q: no sha256 hash", name)
	}
	var buf strings.Builder
	cp := *tf
	cp.Path = name
	parts, err := tuf.Parts(&cp)
	if err != nil {
		return nil, err
	}
	whole := sha256.New()
	for _, part := range parts {
		if err := p.hashPart(ctx, part, io.MultiWriter(whole, &buf)); err != nil {
			return nil, fmt.Errorf("target %q: %w", name, err)
		}
	}
	if int64(buf.Len()) != tf.Length || hex.EncodeToString(whole.Sum(nil)) != hex.EncodeToString(h) {
		return nil, fmt.Errorf("%w: target %q differs from its signed length or sha256", tuf.ErrTampered, name)
	}
	return []byte(buf.String()), nil
}
