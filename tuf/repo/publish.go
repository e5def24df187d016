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
