package repo

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/tuf/keys"
)

// Thresholds maps role names to k (of n keys); missing roles keep theirs (1 initially).
type Thresholds map[string]int

// CreateMetadata writes version 1 of every top-level role from the key
// files (signed root; the online roles are signed by PushMetadata).
func (p *Publisher) CreateMetadata(ctx context.Context, th Thresholds) error {
	return p.locked(func() error {
		if _, err := os.Stat(p.metaPath(Root)); err == nil {
			return fmt.Errorf("metadata already exists in %s (use reset-keys to change keys)", p.dir)
		}
		now := p.now().UTC()
		root := metadata.Root(now.Add(p.lifetime(Root)))
		root.Signed.ConsistentSnapshot = true
		if err := p.setRootKeys(root, th); err != nil {
			return err
		}
		if err := p.signRoot(root, nil); err != nil {
			return err
		}
		// A new repository must not replace one already in the registry.
		if err := p.checkRegistry(ctx, &state{Published: map[string]int64{}}); err != nil {
			return err
		}
		targets := metadata.Targets(now.Add(p.lifetime(Targets)))
		if err := writeMeta(p.metaPath(Targets), targets); err != nil {
			return err
		}
		if err := writeMeta(p.rootHistoryPath(1), root); err != nil {
			return err
		}
		if err := writeMeta(p.metaPath(Root), root); err != nil {
			return err
		}
		return p.saveState(&state{Published: map[string]int64{}, Dirty: map[string]bool{Root: true, Targets: true}})
	})
}

// setRootKeys replaces the keys of the four top-level roles with the
// active key files, keeping (or overriding) thresholds.
func (p *Publisher) setRootKeys(root *metadata.Metadata[metadata.RootType], th Thresholds) error {
	for _, role := range []string{Root, Targets, Snapshot, Timestamp} {
		ks, err := p.publicKeys(role)
		if err != nil {
			return err
		}
		r := root.Signed.Roles[role]
		if r == nil {
			r = &metadata.Role{Threshold: 1}
			root.Signed.Roles[role] = r
		}
		for _, id := range append([]string(nil), r.KeyIDs...) {
			if err := root.Signed.RevokeKey(id, role); err != nil {
				return err
			}
		}
		for _, k := range ks {
			if err := root.Signed.AddKey(k, role); err != nil {
				return err
			}
		}
		if t, ok := th[role]; ok {
			r.Threshold = t
		}
		if r.Threshold < 1 || r.Threshold > len(ks) {
			return fmt.Errorf("%w: role %s threshold %d with %d keys", ErrThreshold, role, r.Threshold, len(ks))
		}
	}
	return nil
}

// signRoot signs root with its own keys and, for a rotation, the previous
// root's keys; then checks both thresholds as a client would.
func (p *Publisher) signRoot(root, prev *metadata.Metadata[metadata.RootType]) error {
	root.ClearSignatures()
	ids := append([]string(nil), root.Signed.Roles[Root].KeyIDs...)
	if prev != nil {
		ids = append(ids, prev.Signed.Roles[Root].KeyIDs...)
	}
	signers, err := p.signers(Root, dedup(ids))
	if err != nil {
		return err
	}
	if err := keys.SignMetadata(root, signers...); err != nil {
		return err
	}
	if err := root.VerifyDelegate(Root, root); err != nil {
		return fmt.Errorf("%w: new root: %w", ErrThreshold, err)
	}
	if prev != nil {
		if err := prev.VerifyDelegate(Root, root); err != nil {
			return fmt.Errorf("%w: new root is not signed by enough keys of version %d: %w", ErrThreshold, prev.Signed.Version, err)
		}
	}
	return nil
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// ResetKeys writes a new root version from the current key files (after
// create-root-key or create-metadata-keys), signed by the new root keys and
// by the previous root's keys so that existing clients follow the rotation.
// Delegated roles take their keys from keys/<role> too. Everything is
// re-signed at the next PushMetadata.
func (p *Publisher) ResetKeys(ctx context.Context, th Thresholds) error {
	return p.withRoot(func(prev *metadata.Metadata[metadata.RootType], st *state) error {
		data, err := os.ReadFile(p.metaPath(Root))
		if err != nil {
			return err
		}
		root, err := metadata.Root().FromBytes(data)
		if err != nil {
			return err
		}
		if prev.Signed.Version <= st.Published[Root] {
			root.Signed.Version++
		} else if prev.Signed.Version > 1 {
			// the unpublished version is rewritten; cross-sign against the one before
			prev, err = readMeta(p.rootHistoryPath(prev.Signed.Version-1), metadata.Root())
			if err != nil {
				return err
			}
		} else {
			prev = nil
		}
		root.Signed.Expires = p.now().UTC().Add(p.lifetime(Root))
		if err := p.setRootKeys(root, th); err != nil {
			return err
		}
		if err := p.signRoot(root, prev); err != nil {
			return err
		}
		// delegated roles
		top, err := p.targets(Targets)
		if err != nil {
			return err
		}
		for i := range delegatedRoles(top) {
			dr := &top.Signed.Delegations.Roles[i]
			ks, err := p.publicKeys(dr.Name)
			if err != nil {
				return err
			}
			for _, id := range append([]string(nil), dr.KeyIDs...) {
				if err := top.Signed.RevokeKey(id, dr.Name); err != nil {
					return err
				}
			}
			for _, k := range ks {
				if err := top.Signed.AddKey(k, dr.Name); err != nil {
					return err
				}
			}
			if t, ok := th[dr.Name]; ok {
				dr.Threshold = t
			}
			if dr.Threshold > len(ks) {
				return fmt.Errorf("%w: role %s threshold %d with %d keys", ErrThreshold, dr.Name, dr.Threshold, len(ks))
			}
			st.Dirty[dr.Name] = true
		}
		if err := writeMeta(p.metaPath(Targets), top); err != nil {
			return err
		}
		if err := writeMeta(p.rootHistoryPath(root.Signed.Version), root); err != nil {
			return err
		}
		if err := writeMeta(p.metaPath(Root), root); err != nil {
			return err
		}
		st.Dirty[Root] = true
		st.Dirty[Targets] = true
		return p.saveState(st)
	})
}

// AddDelegation delegates paths (glob patterns) from the top-level targets
// role to role, whose keys must exist under keys/<role>.
func (p *Publisher) AddDelegation(ctx context.Context, role string, paths []string, threshold int, terminating bool) error {
	return p.withState(func(st *state) error {
		switch role {
		case Root, Targets, Snapshot, Timestamp, "", "retired":
			return fmt.Errorf("invalid delegated role name %q", role)
		}
		if len(paths) == 0 {
			return errors.New("a delegation needs at least one path pattern")
		}
		top, err := p.targets(Targets)
		if err != nil {
			return err
		}
		ks, err := p.publicKeys(role)
		if err != nil {
			return err
		}
		if threshold < 1 || threshold > len(ks) {
			return fmt.Errorf("%w: role %s threshold %d with %d keys", ErrThreshold, role, threshold, len(ks))
		}
		if top.Signed.Delegations == nil {
			top.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
		}
		for _, dr := range top.Signed.Delegations.Roles {
			if dr.Name == role {
				return fmt.Errorf("role %q is already delegated", role)
			}
		}
		top.Signed.Delegations.Roles = append(top.Signed.Delegations.Roles, metadata.DelegatedRole{
			Name: role, Threshold: threshold, Terminating: terminating, Paths: paths, KeyIDs: []string{}})
		for _, k := range ks {
			if err := top.Signed.AddKey(k, role); err != nil {
				return err
			}
		}
		if err := writeMeta(p.metaPath(Targets), top); err != nil {
			return err
		}
		if _, err := os.Stat(p.metaPath(role)); errors.Is(err, os.ErrNotExist) {
			if err := writeMeta(p.metaPath(role), metadata.Targets(p.now().UTC().Add(p.lifetime(role)))); err != nil {
				return err
			}
		}
		st.Dirty[Targets] = true
		st.Dirty[role] = true
		return p.saveState(st)
	})
}
