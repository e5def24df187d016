package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/ocistore"
)

// Publishing never destroys what is in the registry.
//
// A plain OCI registry has no compare-and-swap, so a publish guards itself
// in three steps:
//
//  1. before anything is written, the registry's timestamp (or, when it has
//     none, its latest root) must be the one this state published last;
//     a foreign repository or a newer version is refused (ErrConflict);
//  2. every versioned file (N.root.json, N.targets.json, ...) is written
//     only when its tag is absent or already holds the same bytes, and read
//     back after writing; the first one is the claim: the publish waits
//     the settle time before reading it back, so that a concurrent publisher
//     of the same version (which writes the same tag) is seen;
//  3. right before the timestamp, step 1 is repeated, and the timestamp
//     tag is read back after writing.
//
// The window that remains: two publishers whose check and write of the
// claim tag both fall within the other's settle time, or whose last check
// and timestamp write interleave within one request. docs/tuf.md says so.

// pubFile is one metadata file of a publish, in publish order.
type pubFile struct {
	name  string
	data  []byte
	extra []string // mutable tags that follow it (root.json, timestamp.json)
}

// hashedMetaFile describes a targets role in the snapshot with its length
// and sha256, so a client refuses a role file replaced in the registry
// instead of mixing it with the rest.
func hashedMetaFile(version int64, data []byte) *metadata.MetaFiles {
	mf := metadata.MetaFile(version)
	sum := sha256.Sum256(data)
	mf.Length = int64(len(data))
	mf.Hashes = metadata.Hashes{"sha256": sum[:]}
	return mf
}

// conflict builds the one-line refusal; the CLI adds its own hint.
func conflict(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{tuf.ErrConflict}, args...)...)
}

// checkRegistry is step 1: the registry's current timestamp (or root) must
// be what this state published last.
func (p *Publisher) checkRegistry(ctx context.Context, st *state) error {
	if p.force {
		return nil
	}
	remote, err := p.store.GetMetadata(ctx, "timestamp.json", 1<<20)
	if errors.Is(err, tuf.ErrNotFound) {
		return p.checkRegistryRoot(ctx, st)
	}
	if err != nil {
		return fmt.Errorf("read the registry's timestamp before publishing: %w", err)
	}
	if st.Published[Timestamp] == 0 {
		return conflict("%s already holds a TUF repository that this state (%s) did not publish", p.store, p.dir)
	}
	local, err := os.ReadFile(p.metaPath(Timestamp))
	if err == nil && bytes.Equal(local, remote) {
		return nil
	}
	ts, perr := metadata.Timestamp().FromBytes(remote)
	if perr != nil {
		return conflict("%s has a timestamp.json this state did not publish (unreadable: %v)", p.store, perr)
	}
	if ts.Signed.Version > st.Published[Timestamp] {
		return conflict("%s has timestamp version %d, newer than this state's %d (another admin published)", p.store, ts.Signed.Version, st.Published[Timestamp])
	}
	return conflict("%s has a timestamp (version %d) that this state did not publish (its last is %d)", p.store, ts.Signed.Version, st.Published[Timestamp])
}

// checkRegistryRoot: a registry without a timestamp may still hold a
// (half-published) repository; its root must be one of ours.
func (p *Publisher) checkRegistryRoot(ctx context.Context, st *state) error {
	remote, err := p.store.GetMetadata(ctx, "root.json", 1<<20)
	if errors.Is(err, tuf.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the registry's root before publishing: %w", err)
	}
	r, err := metadata.Root().FromBytes(remote)
	if err != nil {
		return conflict("%s has a root.json this state did not publish (unreadable: %v)", p.store, err)
	}
	local, err := os.ReadFile(p.rootHistoryPath(r.Signed.Version))
	if err == nil && bytes.Equal(local, remote) {
		return nil
	}
	if err == nil {
		if d, derr := p.store.MetadataDigest(fmt.Sprintf("%d.root.json", r.Signed.Version), remote); derr == nil && st.Pending[fmt.Sprintf("%d.root.json", r.Signed.Version)] == d {
			return nil
		}
	}
	return conflict("%s already holds a TUF repository (root version %d) that this state (%s) did not publish", p.store, r.Signed.Version, p.dir)
}

// publish writes files in order under the guard described above. The
// keeper manifest is rewritten once the claim is ours (withKeeper), so a
// refused publisher never drops the winner's blobs from it.
func (p *Publisher) publish(ctx context.Context, st *state, files []pubFile, withKeeper bool) error {
	if err := p.checkRegistry(ctx, st); err != nil {
		return err
	}
	for i, f := range files {
		last := i == len(files)-1
		if last && i > 0 {
			if err := p.checkRegistry(ctx, st); err != nil {
				return err
			}
		}
		if err := p.putVersioned(ctx, st, f, i == 0); err != nil {
			return err
		}
		if i == 0 && withKeeper {
			blobs, err := p.keeperBlobs()
			if err != nil {
				return err
			}
			if err := p.store.PutKeeper(ctx, blobs); err != nil {
				return err
			}
		}
	}
	return nil
}

// putVersioned is step 2 for one file.
func (p *Publisher) putVersioned(ctx context.Context, st *state, f pubFile, claim bool) error {
	want, err := p.store.MetadataDigest(f.name, f.data)
	if err != nil {
		return err
	}
	if err := p.store.UploadMetadataBlobs(ctx, f.name, f.data); err != nil {
		return err
	}
	if !p.force {
		have, err := p.store.TagDigest(ctx, f.name)
		switch {
		case errors.Is(err, tuf.ErrNotFound), err == nil && (have == want || st.Pending[f.name] == have):
			// absent, already ours, or our own leftover of a failed publish
		case err != nil:
			return fmt.Errorf("check %s before publishing: %w", f.name, err)
		default:
			return conflict("%s in %s already holds other bytes (another admin published version %s first)", f.name, p.store, f.name)
		}
	}
	// Recorded before the write: a crash after it leaves a leftover that a
	// retry of this state recognises as its own.
	st.Pending[f.name] = want
	if err := p.saveState(st); err != nil {
		return err
	}
	if err := p.store.TagMetadata(ctx, f.name, f.data, f.extra...); err != nil {
		return err
	}
	if p.force {
		return nil
	}
	if claim && p.settle > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.settle):
		}
	}
	tags := append([]string{f.name}, f.extra...)
	for _, tag := range tags {
		have, err := p.store.TagDigest(ctx, tag)
		if err != nil {
			return fmt.Errorf("read back %s: %w", tag, err)
		}
		if have != want {
			return conflict("%s in %s was replaced by another publisher while this one published", tag, p.store)
		}
	}
	return nil
}

// CheckRegistry reports (ErrConflict) whether a publish from this state
// would be refused because the registry holds metadata it did not
// publish; nil when it may publish (or WithForce is set).
func (p *Publisher) CheckRegistry(ctx context.Context) error {
	st, err := p.loadState()
	if err != nil {
		return err
	}
	return p.checkRegistry(ctx, st)
}

// HasMetadata reports whether this state has metadata (create-metadata ran).
func (p *Publisher) HasMetadata() bool {
	_, err := os.Stat(p.metaPath(Root))
	return err == nil
}

// Dir is the publisher's state directory.
func (p *Publisher) Dir() string { return p.dir }

// delegator is metadata that delegates to a role: root, or the top-level
// targets role for delegated roles.
type delegator interface {
	VerifyDelegate(role string, md any) error
}

// signAs signs md with every available key of role (keyIDs, threshold:
// what its delegator sets) and checks it as a client will, against the
// delegator.
func signAs[T metadata.Roles](p *Publisher, by delegator, role string, keyIDs []string, threshold int, md *metadata.Metadata[T]) error {
	signers, err := p.signers(role, keyIDs)
	if err != nil {
		return err
	}
	if len(signers) < threshold {
		return fmt.Errorf("%w: role %s needs %d signatures, %d keys available", ErrThreshold, role, threshold, len(signers))
	}
	if err := keys.SignMetadata(md, signers...); err != nil {
		return err
	}
	if err := by.VerifyDelegate(role, md); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrThreshold, role, err)
	}
	return nil
}

// signTopLevel is signAs for a role root delegates to.
func signTopLevel[T metadata.Roles](p *Publisher, root *metadata.Metadata[metadata.RootType], role string, md *metadata.Metadata[T]) error {
	r := root.Signed.Roles[role]
	return signAs(p, root, role, r.KeyIDs, r.Threshold, md)
}

// PushMetadata re-signs the top-level targets role and every changed
// delegated role, then a new snapshot and timestamp, and publishes in the
// order that keeps clients consistent: target blobs (already pushed) and
// the keeper manifest, new roots, delegated roles, targets, snapshot, and
// the timestamp tag last.
func (p *Publisher) PushMetadata(ctx context.Context) error {
	return p.withRoot(func(root *metadata.Metadata[metadata.RootType], st *state) error {
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
				if err := signAs(p, top, dr.Name, dr.KeyIDs, dr.Threshold, md); err != nil {
					return err
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
		if err := signTopLevel(p, root, Targets, top); err != nil {
			return err
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
		if err := p.recordTail(st, snap, ts); err != nil {
			return err
		}
		st.Published[Root] = root.Signed.Version
		st.Published[Targets] = top.Signed.Version
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

// recordTail keeps a published snapshot and timestamp as the working
// metadata and their versions as published.
func (p *Publisher) recordTail(st *state, snap *metadata.Metadata[metadata.SnapshotType], ts *metadata.Metadata[metadata.TimestampType]) error {
	if err := writeMeta(p.metaPath(Snapshot), snap); err != nil {
		return err
	}
	if err := writeMeta(p.metaPath(Timestamp), ts); err != nil {
		return err
	}
	st.Published[Snapshot], st.Published[Timestamp] = snap.Signed.Version, ts.Signed.Version
	return nil
}

// signSnapshotAndTimestamp signs snap as the next snapshot version and a
// timestamp over it, and returns the two files to publish last, in order.
func (p *Publisher) signSnapshotAndTimestamp(root *metadata.Metadata[metadata.RootType], st *state, snap *metadata.Metadata[metadata.SnapshotType]) (*metadata.Metadata[metadata.TimestampType], []pubFile, error) {
	snap.Signed.Version = st.Published[Snapshot] + 1
	if err := signTopLevel(p, root, Snapshot, snap); err != nil {
		return nil, nil, err
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
	if err := signTopLevel(p, root, Timestamp, ts); err != nil {
		return nil, nil, err
	}
	data, err := ts.ToBytes(true)
	return ts, data, err
}

// RefreshTimestamp re-signs only the timestamp (new version, new expiry)
// for the published snapshot: a cron job needs the timestamp key alone.
func (p *Publisher) RefreshTimestamp(ctx context.Context) error {
	return p.withRoot(func(root *metadata.Metadata[metadata.RootType], st *state) error {
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
