package repo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/ocistore"
)

// Source is the content of a target: a local file (FromFile), bytes in
// memory (FromBytes), the content of a target already in the working
// metadata (FromTarget, dtuf's "@name"), a blob already in the registry
// (FromBlob), or the concatenation of several (Concat, a multi-part
// target). The zero Source is invalid.
type Source struct {
	kind  sourceKind
	path  string               // file
	data  []byte               // bytes
	name  string               // target
	tf    metadata.TargetFiles // blob
	parts []Source             // concat
}

type sourceKind int

const (
	sourceNone sourceKind = iota
	sourceFile
	sourceBytes
	sourceTarget
	sourceBlob
	sourceConcat
)

// FromFile is a local file, uploaded as one blob unless the registry has it.
func FromFile(path string) Source { return Source{kind: sourceFile, path: path} }

// FromBytes is a small target held in memory (trust documents), one blob.
func FromBytes(data []byte) Source { return Source{kind: sourceBytes, data: data} }

// FromTarget is the content of target name of the working metadata (staged
// or published): alone it copies that target's length, hashes and parts;
// in a Concat its parts are reused (streamed back and checked, not
// uploaded again).
func FromTarget(name string) Source { return Source{kind: sourceTarget, name: name} }

// FromBlob is content already in the registry (a blob pushed by another
// tool, or many names for one blob), given by its length and sha256 hash
// and, for a multi-part target, its parts in the custom field
// (tuf.SetParts). Every blob must exist with that size: nothing is uploaded.
func FromBlob(tf metadata.TargetFiles) Source { return Source{kind: sourceBlob, tf: tf} }

// Concat is a multi-part target: the parts in order, each a file, bytes, a
// target or a blob (a nested Concat is flattened). The target is signed
// as the whole (length and sha256 of the concatenation, so clients verify
// it as one) with the parts in its custom field (tuf.Parts). A Concat of
// one source is that source.
func Concat(srcs ...Source) Source { return Source{kind: sourceConcat, parts: srcs} }

// TargetOption configures AddTarget and AddTargets.
type TargetOption func(*targetConfig)

type targetConfig struct{ role string }

// InRole makes a delegated role sign the targets (they must lie inside
// its delegated paths). Default: the top-level targets role.
func InRole(role string) TargetOption { return func(c *targetConfig) { c.role = role } }

// AddTarget stages (adds or replaces) target name with the content of src:
// uploaded now, kept safe from registry GC at once, published by the next
// PushMetadata.
func (p *Publisher) AddTarget(ctx context.Context, name string, src Source, opts ...TargetOption) error {
	return p.AddTargets(ctx, map[string]Source{name: src}, opts...)
}

// AddTargets stages several targets in one step (one state write, one
// keeper update): AddTarget for each. FromTarget sees the working metadata
// as it was before the call, not the other targets of the same call.
func (p *Publisher) AddTargets(ctx context.Context, targets map[string]Source, opts ...TargetOption) error {
	var cfg targetConfig
	for _, o := range opts {
		o(&cfg)
	}
	names := slices.Sorted(maps.Keys(targets))
	for _, name := range names {
		if err := ValidTargetName(name); err != nil {
			return err
		}
	}
	return p.withState(func(st *state) error {
		r := &resolver{p: p, checked: map[string]bool{}}
		resolved := map[string]*metadata.TargetFiles{}
		for _, name := range names {
			tf, err := r.resolve(ctx, targets[name])
			if err != nil {
				return fmt.Errorf("target %q: %w", name, err)
			}
			resolved[name] = tf
		}
		return p.stage(ctx, st, cfg.role, resolved)
	})
}

// stage writes resolved targets into the working metadata of their roles,
// marks those dirty and keeps the new blobs referenced at once, together
// with what is published.
func (p *Publisher) stage(ctx context.Context, st *state, role string, targets map[string]*metadata.TargetFiles) error {
	top, err := p.targets(Targets)
	if err != nil {
		return err
	}
	byRole := map[string]*metadata.Metadata[metadata.TargetsType]{}
	for name, tf := range targets {
		r, err := p.roleFor(top, role, name)
		if err != nil {
			return err
		}
		md := byRole[r]
		if md == nil {
			if md, err = p.targets(r); err != nil {
				return err
			}
			byRole[r] = md
		}
		tf.Path = name
		md.Signed.Targets[name] = tf
	}
	for r, md := range byRole {
		if err := writeMeta(p.metaPath(r), md); err != nil {
			return err
		}
		st.Dirty[r] = true
	}
	if err := p.saveState(st); err != nil {
		return err
	}
	return p.keepStaged(ctx)
}

// resolver turns Sources into signed target descriptions during one call.
type resolver struct {
	p       *Publisher
	all     map[string]*metadata.TargetFiles // working metadata, read once
	checked map[string]bool                  // blobs whose size was checked
}

func (r *resolver) existing(name string) (*metadata.TargetFiles, error) {
	if r.all == nil {
		all, err := r.p.allTargets()
		if err != nil {
			return nil, err
		}
		r.all = all
	}
	tf, ok := r.all[name]
	if !ok {
		return nil, fmt.Errorf("%w: no target %q to copy", tuf.ErrNotFound, name)
	}
	cp := *tf
	cp.Path = name
	return &cp, nil
}

// resolve returns the length, hashes and custom field of src.
func (r *resolver) resolve(ctx context.Context, src Source) (*metadata.TargetFiles, error) {
	p := r.p
	switch src.kind {
	case sourceFile:
		tb, err := p.store.PushTargetFile(ctx, src.path, p.progress)
		if err != nil {
			return nil, err
		}
		return targetFiles(tb), nil
	case sourceBytes:
		tb, err := p.store.PushTargetBytes(ctx, src.data)
		if err != nil {
			return nil, err
		}
		return targetFiles(tb), nil
	case sourceTarget:
		tf, err := r.existing(src.name)
		if err != nil {
			return nil, err
		}
		return &metadata.TargetFiles{Length: tf.Length, Hashes: tf.Hashes, Custom: tf.Custom}, nil
	case sourceBlob:
		if err := r.checkBlob(ctx, &src.tf); err != nil {
			return nil, err
		}
		return &metadata.TargetFiles{Length: src.tf.Length, Hashes: src.tf.Hashes, Custom: src.tf.Custom}, nil
	case sourceConcat:
		parts := flatten(src.parts)
		if len(parts) == 1 {
			return r.resolve(ctx, parts[0])
		}
		return r.concat(ctx, parts)
	}
	return nil, errors.New("a target needs a source: a file, bytes, a target or a blob")
}

// checkBlob checks that every blob of a FromBlob source exists with its
// signed size.
func (r *resolver) checkBlob(ctx context.Context, tf *metadata.TargetFiles) error {
	if _, ok := tf.Hashes["sha256"]; !ok {
		return errors.New("a sha256 hash is required")
	}
	parts, err := tuf.Parts(tf)
	if err != nil {
		return err
	}
	for _, part := range parts {
		if r.checked[part.SHA256] {
			continue
		}
		n, err := r.p.store.BlobSize(ctx, part.SHA256)
		if err != nil {
			return fmt.Errorf("blob sha256:%s: %w", part.SHA256, err)
		}
		if n != part.Length {
			return fmt.Errorf("%w: blob sha256:%s is %d bytes, not %d", tuf.ErrTampered, part.SHA256, n, part.Length)
		}
		r.checked[part.SHA256] = true
	}
	return nil
}

func flatten(srcs []Source) []Source {
	var out []Source
	for _, s := range srcs {
		if s.kind == sourceConcat {
			out = append(out, flatten(s.parts)...)
		} else {
			out = append(out, s)
		}
	}
	return out
}

// concat signs the concatenation of parts: length and sha256 of the whole
// (so clients verify the whole), the parts in the custom field. The whole
// is hashed in order in one pass: files and bytes while they are hashed
// for upload, the parts of targets and blobs streamed back from the
// registry (and checked).
func (r *resolver) concat(ctx context.Context, srcs []Source) (*metadata.TargetFiles, error) {
	p := r.p
	if len(srcs) == 0 {
		return nil, errors.New("a target needs at least one source")
	}
	whole := sha256.New()
	var parts []tuf.Part
	var length int64
	add := func(tb ocistore.TargetBlob) {
		parts = append(parts, tuf.Part{SHA256: tb.SHA256, Length: tb.Size})
		length += tb.Size
	}
	for _, src := range srcs {
		switch src.kind {
		case sourceFile:
			tb, err := p.store.PushTargetFileTee(ctx, src.path, p.progress, whole)
			if err != nil {
				return nil, err
			}
			add(tb)
		case sourceBytes:
			tb, err := p.store.PushTargetBytes(ctx, src.data)
			if err != nil {
				return nil, err
			}
			whole.Write(src.data)
			add(tb)
		case sourceTarget, sourceBlob:
			tf, label := &src.tf, "blob"
			if src.kind == sourceTarget {
				var err error
				if tf, err = r.existing(src.name); err != nil {
					return nil, err
				}
				label = "@" + src.name
			}
			ps, err := tuf.Parts(tf)
			if err != nil {
				return nil, err
			}
			for _, part := range ps {
				if err := p.hashPart(ctx, part, whole); err != nil {
					return nil, fmt.Errorf("%s: %w", label, err)
				}
				parts = append(parts, part)
				length += part.Length
			}
		default:
			return nil, errors.New("a target part needs a source: a file, bytes, a target or a blob")
		}
	}
	tf := &metadata.TargetFiles{Length: length, Hashes: metadata.Hashes{"sha256": whole.Sum(nil)}}
	if err := tuf.SetParts(tf, parts); err != nil {
		return nil, err
	}
	return tf, nil
}
