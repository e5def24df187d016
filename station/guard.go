package station

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DB is the station's own small database (bbolt): the stops it has started,
// so a replayed train is refused even after a restart, and the recent stop
// records the status endpoint shows.
type DB struct{ db *bolt.DB }

var (
	bucketStops   = []byte("stops")   // trainDigest/index -> time started
	bucketHistory = []byte("history") // time-ordered key -> Stop JSON
	bucketSeen    = []byte("seen")    // inbox tag -> manifest digest handled
)

// OpenDB opens (or creates) the database file.
func OpenDB(path string) (*DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("station db %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketStops, bucketHistory, bucketSeen} {
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
	return &DB{db: db}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Mark implements hardened.ReplayGuard durably.
func (d *DB) Mark(_ context.Context, trainDigest string, stop int) (bool, error) {
	fresh := false
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStops)
		k := []byte(trainDigest + "/" + strconv.Itoa(stop))
		if b.Get(k) != nil {
			return nil
		}
		fresh = true
		return b.Put(k, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	})
	return fresh, err
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

// Record stores a stop and marks its inbox tag as handled.
func (d *DB) Record(tag, digest string, st *Stop) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return d.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketSeen).Put([]byte(tag), []byte(digest)); err != nil {
			return err
		}
		h := tx.Bucket(bucketHistory)
		seq, _ := h.NextSequence()
		return h.Put([]byte(fmt.Sprintf("%020d", seq)), b)
	})
}

// Recent returns up to n most recent stops, newest first.
func (d *DB) Recent(n int) ([]Stop, error) {
	var out []Stop
	err := d.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHistory).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			var s Stop
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}
