package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/ocistore"
)

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

// DelTarget removes targets from the working metadata. Their blobs stay in
// the registry until the next PushMetadata drops them from the keeper
// manifest; a blob another target still uses stays referenced.
func (p *Publisher) DelTarget(ctx context.Context, names ...string) error {
	return p.withState(func(st *state) error {
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
	})
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
