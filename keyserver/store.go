// Package keyserver holds the key-server half of sealed archives: fragments
// per archive and per device in an embedded bbolt database, bearer tokens
// stored only as SHA-256 hashes, revocation, an audit log, and an HTTP API
// (the azaion seed's GET /binary-split/key-fragment plus a versioned /v1/)
// with per-IP and per-token rate limits; and the client unseal uses.
package keyserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/trainyard/trainyard/errdefs"
	"github.com/trainyard/trainyard/internal/ids"
)

// Errors callers branch on.
var (
	ErrUnauthorized = errdefs.New("unauthorized: missing, unknown, expired or revoked token", errdefs.ErrUnauthorized)
	ErrForbidden    = errors.New("forbidden: token not valid for this archive")
	ErrNotFound     = errdefs.New("no active fragment for this archive and device", errdefs.ErrNotFound)
	ErrAmbiguous    = errors.New("several archives have fragments for this device: name the archive")
	ErrExists       = errdefs.New("already exists", errdefs.ErrExists)
	ErrRateLimited  = errdefs.New("rate limited", errdefs.ErrLimit)
	ErrLocked       = errors.New("key-server database is locked (is a server running on this data dir?)")
	// ErrNoStore: OpenExisting found no database (a mistyped --data).
	ErrNoStore = errdefs.New("no key-server database", errdefs.ErrNotFound)
)

var (
	bTokens    = []byte("tokens")    // sha256(secret) hex -> Token
	bTokenIDs  = []byte("token_ids") // token id -> sha256 hex
	bFragments = []byte("fragments") // archive \x00 device -> Fragment
	bAudit     = []byte("audit")     // uint64 seq -> Event
	bRefusals  = []byte("refusals")  // uint64 unix minute, prefix \x00 reason -> uint64 count
	allBuckets = [][]byte{bTokens, bTokenIDs, bFragments, bAudit, bRefusals}
)

// DBFile is the database file name inside the data dir.
const DBFile = "keyserver.db"

// TokenPrefix starts every token secret, so leaked tokens are recognisable.
const TokenPrefix = "tyks_"

// MaxFragmentSize bounds stored fragments (trainyard's are 32 bytes; legacy
// azaion fragments are opaque bytes).
const MaxFragmentSize = 4096

// ValidName reports whether s is acceptable as an archive or device name.
func ValidName(s string) bool { return ids.Valid(s) }

// Token is a stored token; the secret itself is never stored.
type Token struct {
	ID      string     `json:"id"`
	Hash    string     `json:"hash"`
	Device  string     `json:"device"`
	Archive string     `json:"archive,omitempty"` // empty: any archive of the device
	Name    string     `json:"name,omitempty"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Fragment is one archive's key fragment for one device.
type Fragment struct {
	Archive string     `json:"archive"`
	Device  string     `json:"device"`
	Data    []byte     `json:"data,omitempty"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Event is one audit record.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Action  string    `json:"action"`
	Result  string    `json:"result"`
	TokenID string    `json:"token_id,omitempty"`
	Device  string    `json:"device,omitempty"`
	Archive string    `json:"archive,omitempty"`
	Remote  string    `json:"remote,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// RefusalCount is how many requests were refused for one reason from one
// address prefix in one minute.
type RefusalCount struct {
	Minute time.Time `json:"minute"`
	Prefix string    `json:"prefix"`
	Reason string    `json:"reason"`
	Count  uint64    `json:"count"`
}

// Store is the key server's database.
type Store struct {
	db      *bolt.DB
	now     func() time.Time
	maxAge  time.Duration
	maxRows int
}

// Retention defaults: audit rows and refusal counts older than this, or
// past this many, are deleted oldest first.
const (
	DefaultAuditMaxAge  = 90 * 24 * time.Hour
	DefaultAuditMaxRows = 100000
)

// SetRetention bounds the audit log and the refusal counts (each) by age and
// by row count; zero keeps the default.
func (s *Store) SetRetention(maxAge time.Duration, maxRows int) {
	if maxAge > 0 {
		s.maxAge = maxAge
	}
	if maxRows > 0 {
		s.maxRows = maxRows
	}
}

// OpenExisting opens the store in dataDir only if its database exists, for
// commands that read or change existing state: a mistyped --data must not
// silently create an empty database.
func OpenExisting(dataDir string) (*Store, error) {
	p := filepath.Join(dataDir, DBFile)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s", ErrNoStore, p)
		}
		return nil, fmt.Errorf("open key-server store: %w", err)
	}
	return Open(dataDir)
}

// Open opens (creating if needed) the store in dataDir. bbolt takes an
// exclusive lock: while a server runs on dataDir, the CLI cannot open it.
func Open(dataDir string) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(dataDir, DBFile), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("open key-server store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	st := &Store{db: db, now: time.Now, maxAge: DefaultAuditMaxAge, maxRows: DefaultAuditMaxRows}
	return st, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func hashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CreateToken makes a token for device (optionally limited to one archive)
// and returns its secret, which is shown once and stored only as a hash.
func (s *Store) CreateToken(device, archive, label string) (string, *Token, error) {
	return s.CreateTokenTTL(device, archive, label, DefaultTokenTTL)
}

// DefaultTokenTTL is how long a token made by CreateToken lives: a leaked or
// forgotten token stops working by itself.
const DefaultTokenTTL = 90 * 24 * time.Hour

// CreateTokenTTL is CreateToken with an expiry (ttl <= 0: never expires).
func (s *Store) CreateTokenTTL(device, archive, label string, ttl time.Duration) (string, *Token, error) {
	if !ValidName(device) || (archive != "" && !ValidName(archive)) {
		return "", nil, fmt.Errorf("invalid device %q or archive %q", device, archive)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, err
	}
	secret := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	t := &Token{ID: "tok_" + randHex(6), Hash: hashToken(secret), Device: device, Archive: archive, Name: label, Created: s.now().UTC()}
	if ttl > 0 {
		exp := t.Created.Add(ttl)
		t.Expires = &exp
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, _ := json.Marshal(t)
		if err := tx.Bucket(bTokens).Put([]byte(t.Hash), b); err != nil {
			return err
		}
		if err := tx.Bucket(bTokenIDs).Put([]byte(t.ID), []byte(t.Hash)); err != nil {
			return err
		}
		return s.audit(tx, Event{Action: "token.create", Result: "ok", TokenID: t.ID, Device: device, Archive: archive})
	})
	if err != nil {
		return "", nil, err
	}
	return secret, t, nil
}

// RevokeToken revokes a token by its id or by its secret.
func (s *Store) RevokeToken(idOrSecret string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		h := tx.Bucket(bTokenIDs).Get([]byte(idOrSecret))
		if h == nil && strings.HasPrefix(idOrSecret, TokenPrefix) {
			// The secret itself, as the operator who holds it would paste it.
			if hs := []byte(hashToken(idOrSecret)); tx.Bucket(bTokens).Get(hs) != nil {
				h = hs
			} else {
				return fmt.Errorf("token (given by its secret): %w", ErrNotFoundToken)
			}
		}
		if h == nil {
			return fmt.Errorf("token %s: %w", idOrSecret, ErrNotFoundToken)
		}
		var t Token
		if err := json.Unmarshal(tx.Bucket(bTokens).Get(h), &t); err != nil {
			return err
		}
		if t.Revoked == nil {
			now := s.now().UTC()
			t.Revoked = &now
		}
		b, _ := json.Marshal(t)
		if err := tx.Bucket(bTokens).Put(h, b); err != nil {
			return err
		}
		return s.audit(tx, Event{Action: "token.revoke", Result: "ok", TokenID: t.ID, Device: t.Device})
	})
}

// ErrNotFoundToken: no token with that id.
var ErrNotFoundToken = errdefs.New("no such token", errdefs.ErrNotFound)

// ListTokens returns every token (hashes included, secrets never).
func (s *Store) ListTokens() ([]Token, error) {
	var out []Token
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bTokens).ForEach(func(_, v []byte) error {
			var t Token
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, err
}

// Authenticate returns the active token whose secret this is.
func (s *Store) Authenticate(secret string) (*Token, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 200 {
		return nil, ErrUnauthorized
	}
	var t *Token
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bTokens).Get([]byte(hashToken(secret)))
		if v == nil {
			return ErrUnauthorized
		}
		t = new(Token)
		return json.Unmarshal(v, t)
	})
	if err != nil {
		return nil, err
	}
	if t.Revoked != nil {
		return t, fmt.Errorf("%w (token %s revoked)", ErrUnauthorized, t.ID)
	}
	if t.Expires != nil && !s.now().Before(*t.Expires) {
		return t, fmt.Errorf("%w (token %s expired)", ErrUnauthorized, t.ID)
	}
	return t, nil
}

func fragKey(archive, device string) []byte { return []byte(archive + "\x00" + device) }

// AddFragment stores an archive's fragment for a device. An active fragment
// is never overwritten; revoke it first.
func (s *Store) AddFragment(archive, device string, data []byte) error {
	if !ValidName(archive) || !ValidName(device) {
		return fmt.Errorf("invalid archive %q or device %q", archive, device)
	}
	if len(data) == 0 || len(data) > MaxFragmentSize {
		return fmt.Errorf("fragment must be 1 to %d bytes, got %d", MaxFragmentSize, len(data))
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFragments)
		if v := b.Get(fragKey(archive, device)); v != nil {
			var f Fragment
			if err := json.Unmarshal(v, &f); err == nil && f.Revoked == nil {
				return fmt.Errorf("fragment %s/%s: %w (revoke it first)", archive, device, ErrExists)
			}
		}
		v, _ := json.Marshal(Fragment{Archive: archive, Device: device, Data: data, Created: s.now().UTC()})
		if err := b.Put(fragKey(archive, device), v); err != nil {
			return err
		}
		return s.audit(tx, Event{Action: "fragment.add", Result: "ok", Device: device, Archive: archive})
	})
}

// RevokeFragment revokes the fragment of archive for device, or for every
// device when device is empty. It returns how many were revoked.
func (s *Store) RevokeFragment(archive, device string) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFragments)
		var keys [][]byte
		c := b.Cursor()
		prefix := []byte(archive + "\x00")
		for k, _ := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, _ = c.Next() {
			if device == "" || string(k) == string(fragKey(archive, device)) {
				keys = append(keys, append([]byte(nil), k...))
			}
		}
		for _, k := range keys {
			var f Fragment
			if err := json.Unmarshal(b.Get(k), &f); err != nil {
				return err
			}
			if f.Revoked != nil {
				continue
			}
			now := s.now().UTC()
			f.Revoked = &now
			f.Data = nil // a revoked fragment is erased, not only flagged
			v, _ := json.Marshal(f)
			if err := b.Put(k, v); err != nil {
				return err
			}
			n++
			if err := s.audit(tx, Event{Action: "fragment.revoke", Result: "ok", Device: f.Device, Archive: archive}); err != nil {
				return err
			}
		}
		if n == 0 {
			return fmt.Errorf("fragment %s/%s: %w", archive, device, ErrNotFound)
		}
		return nil
	})
	return n, err
}

// ListFragments lists fragments (without their bytes), optionally of one archive.
func (s *Store) ListFragments(archive string) ([]Fragment, error) {
	var out []Fragment
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bFragments).ForEach(func(_, v []byte) error {
			var f Fragment
			if err := json.Unmarshal(v, &f); err != nil {
				return err
			}
			if archive == "" || f.Archive == archive {
				f.Data = nil
				out = append(out, f)
			}
			return nil
		})
	})
	return out, err
}

// Fragment returns the active fragment of archive for device. With archive
// empty, the device must have exactly one active fragment (the seed's API
// names no archive).
func (s *Store) Fragment(archive, device string) (*Fragment, error) {
	var out *Fragment
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFragments)
		if archive != "" {
			v := b.Get(fragKey(archive, device))
			if v == nil {
				return ErrNotFound
			}
			out = new(Fragment)
			if err := json.Unmarshal(v, out); err != nil {
				return err
			}
			if out.Revoked != nil {
				return ErrNotFound
			}
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var f Fragment
			if err := json.Unmarshal(v, &f); err != nil {
				return err
			}
			if f.Device != device || f.Revoked != nil {
				return nil
			}
			if out != nil {
				return ErrAmbiguous
			}
			out = &f
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, ErrNotFound
	}
	return out, nil
}

// Audit appends an event to the audit log.
func (s *Store) Audit(e Event) error {
	return s.db.Update(func(tx *bolt.Tx) error { return s.audit(tx, e) })
}

func (s *Store) audit(tx *bolt.Tx, e Event) error {
	b := tx.Bucket(bAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	if e.Time.IsZero() {
		e.Time = s.now().UTC()
	}
	v, _ := json.Marshal(e)
	if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
		return err
	}
	return s.pruneAudit(b)
}

// pruneAudit deletes the oldest rows past maxRows or maxAge. Rows are only
// ever deleted from the front, so their keys stay one contiguous run of
// sequence numbers and the count is last-first+1, no scan needed.
func (s *Store) pruneAudit(b *bolt.Bucket) error {
	c := b.Cursor()
	lk, _ := c.Last()
	if lk == nil {
		return nil
	}
	last := binary.BigEndian.Uint64(lk)
	cutoff := s.now().Add(-s.maxAge)
	for k, v := c.First(); k != nil; k, v = c.First() {
		first := binary.BigEndian.Uint64(k)
		if last-first+1 <= uint64(s.maxRows) {
			var e Event
			if err := json.Unmarshal(v, &e); err == nil && !e.Time.Before(cutoff) {
				return nil
			}
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func refusalKeyBytes(minute int64, prefix, reason string) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(minute))
	return append(append(append(k, prefix...), 0), reason...)
}

// AddRefusals merges refusal counts into the store and applies retention.
func (s *Store) AddRefusals(counts []RefusalCount) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRefusals)
		for _, c := range counts {
			k := refusalKeyBytes(c.Minute.Unix()/60, c.Prefix, c.Reason)
			n := c.Count
			if old := b.Get(k); len(old) == 8 {
				n += binary.BigEndian.Uint64(old)
			}
			if err := b.Put(k, binary.BigEndian.AppendUint64(nil, n)); err != nil {
				return err
			}
		}
		return s.pruneRefusals(b)
	})
}

// pruneRefusals: keys start with the minute, so the oldest come first.
func (s *Store) pruneRefusals(b *bolt.Bucket) error {
	excess := b.Stats().KeyN - s.maxRows
	cutoff := s.now().Add(-s.maxAge).Unix() / 60
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		if excess <= 0 && len(k) >= 8 && int64(binary.BigEndian.Uint64(k[:8])) >= cutoff {
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
		excess--
	}
	return nil
}

// Prune applies retention to the audit log and the refusal counts now (it
// also happens on every write).
func (s *Store) Prune() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := s.pruneAudit(tx.Bucket(bAudit)); err != nil {
			return err
		}
		return s.pruneRefusals(tx.Bucket(bRefusals))
	})
}

// Refusals returns the stored refusal counts, oldest minute first.
func (s *Store) Refusals() ([]RefusalCount, error) {
	var out []RefusalCount
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bRefusals).ForEach(func(k, v []byte) error {
			if len(k) < 9 || len(v) != 8 {
				return nil
			}
			prefix, reason, _ := strings.Cut(string(k[8:]), "\x00")
			out = append(out, RefusalCount{Minute: time.Unix(int64(binary.BigEndian.Uint64(k[:8]))*60, 0).UTC(),
				Prefix: prefix, Reason: reason, Count: binary.BigEndian.Uint64(v)})
			return nil
		})
	})
	return out, err
}

// AuditLog returns the last n events (all when n <= 0), oldest first.
func (s *Store) AuditLog(n int) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bAudit).Cursor()
		for k, v := c.Last(); k != nil && (n <= 0 || len(out) < n); k, v = c.Prev() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}
