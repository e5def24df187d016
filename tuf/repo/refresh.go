package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/client"
)

// A role is due for re-signing when less than half of its lifetime is
// left: a refresh run every hour (or every few hours) then always re-signs
// long before anything expires, and a missed run or two is harmless.
func (p *Publisher) dueAt(role string, expires time.Time) time.Time {
	return expires.Add(-p.lifetime(role) / 2)
}

// NextDue returns when the first role of the published metadata becomes
// due for re-signing (a --watch loop sleeps until then).
func (p *Publisher) NextDue() (time.Time, error) {
	exps, err := p.Expirations()
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, e := range exps {
		if d := p.dueAt(e.Role, e.Expires); next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next, nil
}

// Refresh re-signs and publishes what is due: the timestamp alone when only
// it is due; snapshot and timestamp when the snapshot is due (no targets
// key needed); targets (and due delegated roles), snapshot and timestamp
// when a targets role is due; a new root version (same keys) first when
// the root is due. It returns the roles it re-signed, none when
// nothing was due. Safe to run from cron: every publish is guarded
// (ErrConflict when another admin published).
func (p *Publisher) Refresh(ctx context.Context) ([]string, error) {
	st, err := p.loadState()
	if err != nil {
		return nil, err
	}
	if st.Published[Timestamp] == 0 {
		return nil, errors.New("nothing published yet: publish the repository first")
	}
	// Even when nothing is due: a cron job must notice at once that this
	// state no longer matches the registry (another admin published).
	if err := p.checkRegistry(ctx, st); err != nil {
		return nil, err
	}
	exps, err := p.Expirations()
	if err != nil {
		return nil, err
	}
	now := p.now()
	due := map[string]bool{}
	var dueTargets []string
	for _, e := range exps {
		if !now.Before(p.dueAt(e.Role, e.Expires)) {
			due[e.Role] = true
			if e.Role != Root && e.Role != Snapshot && e.Role != Timestamp {
				dueTargets = append(dueTargets, e.Role)
			}
		}
	}
	switch {
	case due[Root]:
		if err := p.ResetKeys(ctx, nil); err != nil {
			return nil, fmt.Errorf("re-sign root: %w", err)
		}
		if err := p.PushMetadata(ctx); err != nil {
			return nil, err
		}
		return []string{Root, Targets, Snapshot, Timestamp}, nil
	case len(dueTargets) > 0:
		if err := p.markDirty(dueTargets); err != nil {
			return nil, err
		}
		if err := p.PushMetadata(ctx); err != nil {
			return nil, err
		}
		roles := []string{Targets}
		for _, r := range dueTargets {
			if r != Targets {
				roles = append(roles, r)
			}
		}
		return append(roles, Snapshot, Timestamp), nil
	case due[Snapshot]:
		if err := p.refreshSnapshot(ctx); err != nil {
			return nil, err
		}
		return []string{Snapshot, Timestamp}, nil
	case due[Timestamp]:
		if err := p.RefreshTimestamp(ctx); err != nil {
			return nil, err
		}
		return []string{Timestamp}, nil
	}
	return nil, nil
}

// refreshSnapshot re-signs the published snapshot (same contents, new
// version and expiry) and a timestamp for it: the snapshot and timestamp
// keys suffice, the targets key may stay offline.
func (p *Publisher) refreshSnapshot(ctx context.Context) error {
	return p.withRoot(func(root *metadata.Metadata[metadata.RootType], st *state) error {
		old, err := readMeta(p.metaPath(Snapshot), metadata.Snapshot())
		if err != nil {
			return err
		}
		snap := metadata.Snapshot(p.now().UTC().Add(p.lifetime(Snapshot)))
		snap.Signed.Meta = old.Signed.Meta
		ts, files, err := p.signSnapshotAndTimestamp(root, st, snap)
		if err != nil {
			return err
		}
		if err := p.publish(ctx, st, files, false); err != nil {
			return err
		}
		if err := p.recordTail(st, snap, ts); err != nil {
			return err
		}
		st.Pending = nil
		return p.saveState(st)
	})
}

// markDirty makes PushMetadata re-sign delegated roles that are due.
func (p *Publisher) markDirty(roles []string) error {
	return p.withState(func(st *state) error {
		for _, r := range roles {
			st.Dirty[r] = true
		}
		return p.saveState(st)
	})
}

// Pull replaces this state's metadata with the registry's current,
// TUF-verified repository: after another admin published (ErrConflict),
// pull, then redo the change. trustedRoot is the repository's root.json
// when this state has none yet (a new admin machine); otherwise the local
// root is the trust anchor and the registry's root chain is followed from
// it. Unpublished local changes are discarded; keys are kept.
func (p *Publisher) Pull(ctx context.Context, trustedRoot []byte) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	return p.locked(func() error { return p.pull(ctx, trustedRoot) })
}

func (p *Publisher) pull(ctx context.Context, trustedRoot []byte) error {
	var err error
	anchor := trustedRoot
	if anchor == nil {
		if anchor, err = os.ReadFile(p.metaPath(Root)); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: give the repository's root.json to pull it into %s", ErrNoMetadata, p.dir)
		} else if err != nil {
			return err
		}
	}
	first, err := metadata.Root().FromBytes(anchor)
	if err != nil {
		return fmt.Errorf("trusted root: %w", err)
	}
	tmp, err := os.MkdirTemp(p.dir, ".pull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	c := client.New(p.store, tmp, client.WithClock(p.now))
	if _, err := c.Bootstrap(ctx, anchor); err != nil {
		return fmt.Errorf("pull %s: %w", p.store, err)
	}
	mdir := filepath.Join(tmp, "metadata")
	latestData, err := os.ReadFile(filepath.Join(mdir, "root.json"))
	if err != nil {
		return err
	}
	latest, err := metadata.Root().FromBytes(latestData)
	if err != nil {
		return fmt.Errorf("pulled root: %w", err)
	}
	// Root history, each version checked against the one before it (the
	// client verified the same chain; these are the bytes kept for later
	// cross-signing and the publish guard).
	history := map[int64][]byte{first.Signed.Version: anchor}
	prev := first
	for v := first.Signed.Version + 1; v <= latest.Signed.Version; v++ {
		data, err := p.store.GetMetadata(ctx, fmt.Sprintf("%d.root.json", v), 1<<20)
		if err != nil {
			return fmt.Errorf("pull root version %d: %w", v, err)
		}
		r, err := metadata.Root().FromBytes(data)
		if err != nil || r.Signed.Version != v {
			return fmt.Errorf("pull root version %d: not that version: %v", v, err)
		}
		if err := prev.VerifyDelegate(Root, r); err != nil {
			return fmt.Errorf("pull root version %d: %w", v, err)
		}
		if err := r.VerifyDelegate(Root, r); err != nil {
			return fmt.Errorf("pull root version %d: %w", v, err)
		}
		history[v], prev = data, r
	}
	if !bytes.Equal(history[latest.Signed.Version], latestData) {
		return fmt.Errorf("%w: the registry's root changed while pulling; pull again", tuf.ErrConflict)
	}
	st := &state{Published: map[string]int64{}, Dirty: map[string]bool{}}
	ents, err := os.ReadDir(mdir)
	if err != nil {
		return err
	}
	files := map[string][]byte{}
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		role, err := url.PathUnescape(base)
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(mdir, e.Name()))
		if err != nil {
			return err
		}
		var probe struct {
			Signed struct {
				Version int64 `json:"version"`
			} `json:"signed"`
		}
		if err := json.Unmarshal(data, &probe); err != nil {
			return fmt.Errorf("pulled %s: %w", e.Name(), err)
		}
		st.Published[role] = probe.Signed.Version
		files[role] = data
	}
	for v, data := range history {
		if err := os.MkdirAll(filepath.Dir(p.rootHistoryPath(v)), 0o755); err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(p.rootHistoryPath(v), data, 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(p.dir, "metadata"), 0o755); err != nil {
		return err
	}
	for role, data := range files {
		if err := fsutil.WriteFileAtomic(p.metaPath(role), data, 0o644); err != nil {
			return err
		}
	}
	return p.saveState(st)
}
