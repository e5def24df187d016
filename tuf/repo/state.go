package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/tuf/internal/flock"
)

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

// The prologue of every job that changes the directory, written once: the
// directory's lock (two admins or a cron refresh on one directory never
// interleave), then what the job reads first.

// locked runs fn under the directory's lock.
func (p *Publisher) locked(fn func() error) error {
	unlock, err := flock.Lock(p.dir)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// withState runs fn under the lock with the publishing state; fn saves it
// when it changes it (some jobs save before their last registry write).
func (p *Publisher) withState(fn func(st *state) error) error {
	return p.locked(func() error {
		st, err := p.loadState()
		if err != nil {
			return err
		}
		return fn(st)
	})
}

// withRoot runs fn under the lock with the current root and publishing
// state: the prologue of every job that signs and publishes.
func (p *Publisher) withRoot(fn func(root *metadata.Metadata[metadata.RootType], st *state) error) error {
	return p.withState(func(st *state) error {
		root, err := p.root()
		if err != nil {
			return err
		}
		return fn(root, st)
	})
}
