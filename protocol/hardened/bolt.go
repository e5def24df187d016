package hardened

import (
	"context"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

var replayBucket = []byte("trainyard-v1-stops")

// BoltReplayGuard is a ReplayGuard kept in a bbolt database file, so a
// station remembers the stops it started across restarts.
type BoltReplayGuard struct{ db *bolt.DB }

// OpenBoltReplayGuard opens (or creates) the database at path.
func OpenBoltReplayGuard(path string) (*BoltReplayGuard, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	return &BoltReplayGuard{db: db}, nil
}

// Close closes the database.
func (g *BoltReplayGuard) Close() error { return g.db.Close() }

// Mark implements ReplayGuard: the check and the record are one transaction.
func (g *BoltReplayGuard) Mark(_ context.Context, trainDigest string, stop int) (bool, error) {
	fresh := false
	err := g.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(replayBucket)
		if err != nil {
			return err
		}
		k := []byte(trainDigest + "#" + strconv.Itoa(stop))
		if b.Get(k) != nil {
			return nil
		}
		fresh = true
		return b.Put(k, []byte(time.Now().UTC().Format(time.RFC3339)))
	})
	return fresh, err
}
