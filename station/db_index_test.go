package station

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// scanStatus is what Status said before the indexes: every stop decoded.
func scanStatus(t *testing.T, d *DB) (map[State]int, []string) {
	t.Helper()
	all, err := d.History(Filter{Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[State]int{}
	var recent []string
	for i, st := range all {
		counts[st.State]++
		if i < 5 {
			recent = append(recent, st.Key)
		}
	}
	return counts, recent
}

func indexedStatus(t *testing.T, d *DB) (map[State]int, []string) {
	t.Helper()
	counts, err := d.Counts()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := d.Recent(5)
	if err != nil {
		t.Fatal(err)
	}
	var recent []string
	for _, st := range rec {
		recent = append(recent, st.Key)
	}
	return counts, recent
}

func checkIndexes(t *testing.T, d *DB, what string) {
	t.Helper()
	wc, wr := scanStatus(t, d)
	gc, gr := indexedStatus(t, d)
	if !reflect.DeepEqual(wc, gc) || !reflect.DeepEqual(wr, gr) {
		t.Fatalf("%s: indexes say %v %v, the stops %v %v", what, gc, gr, wc, wr)
	}
}

// The counts and the recent list Status reads from the indexes agree with
// a scan of every stop through begins, state changes, restores, a restart
// and a database from before the indexes.
func TestDBIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "station.db")
	d, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		st := &Stop{Key: fmt.Sprintf("sha256:%02d/0", i), Input: fmt.Sprintf("sha256:in%02d", i), Train: fmt.Sprint("t", i)}
		prev, err := d.Begin(st, i%4 == 0)
		if i%4 == 0 {
			continue // held
		}
		if err != nil {
			t.Fatal(err)
		}
		switch i % 4 {
		case 1:
			st.State = Done
			if err := d.Save(st, ""); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := d.Restore(st.Key, prev); err != nil { // refused before it ran
				t.Fatal(err)
			}
		case 3:
			if _, err := d.Update(st.Key, "admin", func(s *Stop) error { s.State = Failed; return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkIndexes(t, d, "after the stops")
	if c, _ := d.Counts(); c[Held] != 5 || c[Done] != 5 || c[Failed] != 5 || c[Running] != 0 {
		t.Fatalf("counts %v", c)
	}
	// Left running by a killed station: interrupted on the next open.
	if _, err := d.Begin(&Stop{Key: "sha256:run/0", Input: "sha256:inrun"}, false); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d, err = OpenDB(path); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, d, "after a restart")
	if c, _ := d.Counts(); c[Interrupted] != 1 || c[Running] != 0 {
		t.Fatalf("counts after restart %v", c)
	}

	// A database written before the indexes existed is indexed once.
	if err := d.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketCounts); err != nil {
			return err
		}
		return tx.DeleteBucket(bucketUpdated)
	}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d, err = OpenDB(path); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	checkIndexes(t, d, "after reindexing an old database")
}
