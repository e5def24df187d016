package station

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/trainyard/trainyard/protocol/hardened"
)

// DB is the station's own database (bbolt, in its state directory): one
// record per stop with its state, so a stop never runs twice and survives
// restarts; which inbox tags were handled; and an audit trail of every
// transition and operator decision. One process holds it at a time: the
// admin API serves it while `station serve` runs.
type DB struct {
	db   *bolt.DB
	path string
}

var (
	bucketStops  = []byte("stops2") // stop key -> Stop JSON
	bucketInputs = []byte("inputs") // input manifest digest -> stop key
	bucketSeen   = []byte("seen")   // inbox tag -> manifest digest handled
	bucketEvents = []byte("events") // sequence -> Event JSON (audit trail)
	// Indexes kept by store and unstore, so that Status (every metrics
	// scrape, every second of the console) reads a few keys instead of
	// decoding a year of stops.
	bucketCounts  = []byte("counts")  // state -> number of stops in it (8 bytes)
	bucketUpdated = []byte("updated") // Updated (20-digit unix ns) "/" stop key -> nil
)

// Event is one transition of a stop, with who caused it.
type Event struct {
	Time   time.Time `json:"time"`
	Key    string    `json:"key"`
	Train  string    `json:"train"`
	Index  int       `json:"index"`
	State  State     `json:"state"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
}

// ErrLocked means another process (a running `station serve`) holds the
// station's database.
var ErrLocked = errors.New("station database in use by another process")

// ErrNoStop means no stop matches the name given.
var ErrNoStop = errors.New("no such stop")

// OpenDB opens (or creates) the database file. Stops left Running by a
// station that died are marked Interrupted: the file lock says no live
// process owns them.
func OpenDB(path string) (*DB, error) {
	return openDB(path, 5*time.Second)
}

func openDB(path string, wait time.Duration) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("station db: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: wait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("station db %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("station db %s: %w", path, err)
	}
	d := &DB{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		indexed := tx.Bucket(bucketCounts) != nil
		for _, b := range [][]byte{bucketStops, bucketInputs, bucketSeen, bucketEvents, bucketCounts, bucketUpdated} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if !indexed {
			// A database from before the indexes: built once.
			if err := reindex(tx); err != nil {
				return err
			}
		}
		c := tx.Bucket(bucketStops).Cursor()
		var stale []*Stop
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var st Stop
			if json.Unmarshal(v, &st) == nil && st.State == Running {
				stale = append(stale, &st)
			}
		}
		for _, st := range stale {
			st.State, st.Reason = Interrupted, "the station stopped while the train ran"
			if err := d.put(tx, st, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Path is the database file.
func (d *DB) Path() string { return d.path }

// put stores st under its key, indexes its input and appends an event when
// its state changed.
func (d *DB) put(tx *bolt.Tx, st *Stop, by string) error {
	old, err := get(tx, st.Key)
	if err != nil {
		return err
	}
	// The audit trail has one event per change of state (or decision), not
	// one per save.
	changed := old == nil || old.State != st.State || old.Reason != st.Reason || by != ""
	st.Updated = time.Now().UTC()
	if err := store(tx, old, st); err != nil {
		return err
	}
	if st.Input != "" {
		if err := tx.Bucket(bucketInputs).Put([]byte(st.Input), []byte(st.Key)); err != nil {
			return err
		}
	}
	if !changed {
		return nil
	}
	ev, err := json.Marshal(Event{Time: st.Updated, Key: st.Key, Train: st.Train, Index: st.Index, State: st.State, Reason: st.Reason, By: by})
	if err != nil {
		return err
	}
	h := tx.Bucket(bucketEvents)
	seq, _ := h.NextSequence()
	return h.Put([]byte(fmt.Sprintf("%020d", seq)), ev)
}

// store writes st over old (nil: a new stop) and keeps the indexes.
func store(tx *bolt.Tx, old, st *Stop) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := unstore(tx, old); err != nil {
		return err
	}
	if err := tx.Bucket(bucketStops).Put([]byte(st.Key), b); err != nil {
		return err
	}
	return index(tx, st, 1)
}

// unstore removes old (nil: nothing) and its index entries.
func unstore(tx *bolt.Tx, old *Stop) error {
	if old == nil {
		return nil
	}
	if err := tx.Bucket(bucketStops).Delete([]byte(old.Key)); err != nil {
		return err
	}
	return index(tx, old, -1)
}

func updatedKey(st *Stop) []byte {
	return []byte(fmt.Sprintf("%020d/%s", st.Updated.UnixNano(), st.Key))
}

// index adds (delta 1) or removes (-1) st in the count of its state and
// the updated-time index.
func index(tx *bolt.Tx, st *Stop, delta int64) error {
	c := tx.Bucket(bucketCounts)
	n := int64(0)
	if v := c.Get([]byte(st.State)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	if n += delta; n < 0 {
		n = 0
	}
	if err := c.Put([]byte(st.State), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
		return err
	}
	u := tx.Bucket(bucketUpdated)
	if delta < 0 {
		return u.Delete(updatedKey(st))
	}
	return u.Put(updatedKey(st), nil)
}

// reindex builds the indexes from the stops.
func reindex(tx *bolt.Tx) error {
	return tx.Bucket(bucketStops).ForEach(func(k, v []byte) error {
		var st Stop
		if err := json.Unmarshal(v, &st); err != nil {
			return fmt.Errorf("station db: stop %s: %w", k, err)
		}
		return index(tx, &st, 1)
	})
}

// Counts returns how many stops are in each state.
func (d *DB) Counts() (map[State]int, error) {
	out := map[State]int{}
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCounts).ForEach(func(k, v []byte) error {
			if n := int(binary.BigEndian.Uint64(v)); len(v) == 8 && n > 0 {
				out[State(k)] = n
			}
			return nil
		})
	})
	return out, err
}

func get(tx *bolt.Tx, key string) (*Stop, error) {
	v := tx.Bucket(bucketStops).Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	var st Stop
	if err := json.Unmarshal(v, &st); err != nil {
		return nil, fmt.Errorf("station db: stop %s: %w", key, err)
	}
	return &st, nil
}

// Get returns the stop stored under key, or nil.
func (d *DB) Get(key string) (*Stop, error) {
	var st *Stop
	err := d.db.View(func(tx *bolt.Tx) (err error) { st, err = get(tx, key); return })
	return st, err
}

// ByInput returns the stop that handled the input manifest digest, or nil.
func (d *DB) ByInput(digest string) (*Stop, error) {
	var st *Stop
	err := d.db.View(func(tx *bolt.Tx) (err error) {
		k := tx.Bucket(bucketInputs).Get([]byte(digest))
		if k == nil {
			return nil
		}
		st, err = get(tx, string(k))
		return
	})
	return st, err
}

// Save stores st as is (by names who decided, "" for the station).
func (d *DB) Save(st *Stop, by string) error {
	return d.db.Update(func(tx *bolt.Tx) error { return d.put(tx, st, by) })
}

// Update applies f to the stop under key inside one transaction and stores
// the result; f may return an error to leave it unchanged.
func (d *DB) Update(key, by string, f func(st *Stop) error) (*Stop, error) {
	var out *Stop
	err := d.db.Update(func(tx *bolt.Tx) error {
		st, err := get(tx, key)
		if err != nil {
			return err
		}
		if st == nil {
			return fmt.Errorf("%w: %s", ErrNoStop, key)
		}
		if err := f(st); err != nil {
			return err
		}
		out = st
		return d.put(tx, st, by)
	})
	return out, err
}

// Begin moves the stop st.Key to Running, atomically: it fails with
// hardened.ErrReplay-wrapped errors when the stop is final, running or
// interrupted on other input, and with ErrHeld (recording the stop as
// Held) when hold is set and the operator has not accepted it. It returns the record as it was before
// (nil if new), so a refusal can put it back.
func (d *DB) Begin(st *Stop, hold bool) (prev *Stop, err error) {
	held := false
	err = d.db.Update(func(tx *bolt.Tx) error {
		prev, err = get(tx, st.Key)
		if err != nil {
			return err
		}
		if prev != nil {
			st.Attempts, st.Arrived = prev.Attempts, prev.Arrived
		}
		if hold && (prev == nil || prev.State == Held) {
			// Verified and waiting: recorded so the operator sees it.
			st.State, st.Reason, held = Held, "", true
			return d.put(tx, st, "")
		}
		if err := mayRun(prev, st.Input); err != nil {
			return err
		}
		st.Attempts++
		st.State, st.Reason = Running, ""
		return d.put(tx, st, "")
	})
	if err == nil && held {
		err = ErrHeld
	}
	return prev, err
}

// Restore puts back the record Begin replaced (prev nil: removes it), for
// a stop refused before the train ran: refused bytes must not cost a
// genuine copy of the train its stop.
func (d *DB) Restore(key string, prev *Stop) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		cur, err := get(tx, key)
		if err != nil {
			return err
		}
		if prev == nil {
			return unstore(tx, cur)
		}
		return store(tx, cur, prev)
	})
}

// Seen reports whether the inbox tag was already handled at this digest.
func (d *DB) Seen(tag, digest string) bool {
	seen := false
	_ = d.db.View(func(tx *bolt.Tx) error {
		seen = string(tx.Bucket(bucketSeen).Get([]byte(tag))) == digest
		return nil
	})
	return seen
}

// MarkSeen records the inbox tag as handled at digest.
func (d *DB) MarkSeen(tag, digest string) error {
	return d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSeen).Put([]byte(tag), []byte(digest)) })
}

// Forget drops the handled marks of tags at digest, so serve looks at the
// train again (after accept or retry).
func (d *DB) Forget(digest string) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSeen)
		var tags [][]byte
		_ = b.ForEach(func(k, v []byte) error {
			if string(v) == digest {
				tags = append(tags, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range tags {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Filter selects stops for History.
type Filter struct {
	States []State // any of these; none: all
	Train  string  // train id, stop key, inbox tag or input digest; "": all
	Limit  int     // at most this many, newest first; 0: 100
}

func (f Filter) match(st *Stop) bool {
	if len(f.States) > 0 {
		ok := false
		for _, s := range f.States {
			ok = ok || st.State == s
		}
		if !ok {
			return false
		}
	}
	return f.Train == "" || st.matches(f.Train)
}

// History returns the stops that match f, most recently updated first.
func (d *DB) History(f Filter) ([]Stop, error) {
	var out []Stop
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStops).ForEach(func(_, v []byte) error {
			var st Stop
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			if f.match(&st) {
				out = append(out, st)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Updated.After(out[j].Updated) })
	n := f.Limit
	if n <= 0 {
		n = 100
	}
	if len(out) > n {
		out = out[:n]
	}
	return out, err
}

// Recent returns up to n most recently updated stops, newest first, from
// the updated-time index.
func (d *DB) Recent(n int) ([]Stop, error) {
	var out []Stop
	err := d.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketUpdated).Cursor()
		for k, _ := c.Last(); k != nil && len(out) < n; k, _ = c.Prev() {
			i := bytes.IndexByte(k, '/')
			st, err := get(tx, string(k[i+1:]))
			if err != nil {
				return err
			}
			if st != nil {
				out = append(out, *st)
			}
		}
		return nil
	})
	return out, err
}

// Events returns the audit trail of the stop key (all stops: ""), oldest
// first, at most the last n.
func (d *DB) Events(key string, n int) ([]Event, error) {
	var out []Event
	err := d.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if key == "" || e.Key == key {
				out = append(out, e)
			}
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// Find returns the one stop name designates: a stop key, an input digest,
// a train id or an inbox tag (the most recent stop of that train when it
// stopped here more than once is ambiguous and refused).
func (d *DB) Find(name string) (*Stop, error) {
	if st, err := d.Get(name); err != nil || st != nil {
		return st, err
	}
	if strings.HasPrefix(name, "sha256:") {
		if st, err := d.ByInput(name); err != nil || st != nil {
			return st, err
		}
	}
	all, err := d.History(Filter{Train: name, Limit: 1 << 30})
	if err != nil {
		return nil, err
	}
	// Refusals of other copies are kept under their input; the stop itself
	// is what an operator means by the train's name.
	var stops []Stop
	for _, st := range all {
		if !strings.HasPrefix(st.Key, inputKeyPrefix) {
			stops = append(stops, st)
		}
	}
	if len(stops) == 0 {
		stops = all
	}
	switch len(stops) {
	case 0:
		return nil, fmt.Errorf("%w: %q", ErrNoStop, name)
	case 1:
		return &stops[0], nil
	}
	keys := make([]string, len(stops))
	for i, st := range stops {
		keys[i] = st.Key
	}
	return nil, fmt.Errorf("%w: %q names %d stops; use one of their keys: %s", ErrNoStop, name, len(stops), strings.Join(keys, ", "))
}

// mayRun refuses to start a stop whose record says it must not run again.
func mayRun(prev *Stop, input string) error {
	if prev == nil {
		return nil
	}
	switch prev.State {
	case Accepted, Retry, Held:
		return nil
	case Interrupted:
		if prev.Input != "" && prev.Input != input {
			return fmt.Errorf("%w: stop %d of train %s was interrupted on input %s, not %s; `station retry` runs it again", hardened.ErrReplay, prev.Index, prev.Train, prev.Input, input)
		}
		return nil
	case Review:
		return ErrUnderReview
	case Running:
		return fmt.Errorf("%w: stop %d of train %s is running", hardened.ErrReplay, prev.Index, prev.Train)
	}
	return replayed(prev)
}

// replayed refuses a stop that ended already, saying how and when.
func replayed(prev *Stop) error {
	return fmt.Errorf("%w: stop %d of train %s was already %s at this station (%s)%s", hardened.ErrReplay, prev.Index, prev.Train,
		prev.State, prev.Updated.Format(time.RFC3339), reasonSuffix(prev.Reason))
}

// Backup writes a consistent copy of the database to w (a bbolt file), while
// the station runs.
func (d *DB) Backup(w io.Writer) error {
	return d.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}
