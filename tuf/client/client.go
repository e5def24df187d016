// Package client is the TUF client over an OCI registry (dtuf's "copy"):
// the full TUF 1.0 workflow of go-tuf's updater with a registry fetcher,
// and targets streamed from the registry and verified by length and hashes
// before a byte reaches the caller's file.
//
// Updates are transactional: the updater works on a copy of the trusted
// metadata and only a fully successful operation replaces it, so a refused
// update (rollback, freeze, tampering...) leaves the trusted state as it was.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/internal/flock"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/ocistore"
)

// Client keeps trusted metadata for one repository in dir/metadata.
type Client struct {
	store    *ocistore.Store
	dir      string
	now      func() time.Time
	progress io.Writer
	limits   Limits
}

// Limits are the largest metadata files accepted (endless-data attack).
type Limits struct{ Root, Timestamp, Snapshot, Targets int64 }

// DefaultLimits returns the limits a Client has unless WithLimits says
// otherwise: go-tuf's defaults, with room for ~20,000 targets. A function,
// not a variable, so no importer can loosen every client's limits.
func DefaultLimits() Limits {
	return Limits{Root: 512000, Timestamp: 16384, Snapshot: 2000000, Targets: 10000000}
}

// Option configures a Client.
type Option func(*Client)

// WithClock fixes the reference time for expiry checks (tests, conformance).
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// WithProgress shows download progress on w when it is a terminal.
func WithProgress(w io.Writer) Option { return func(c *Client) { c.progress = w } }

// WithLimits sets metadata size limits.
func WithLimits(l Limits) Option { return func(c *Client) { c.limits = l } }

// New returns a client of store with trusted state in dir.
func New(store *ocistore.Store, dir string, opts ...Option) *Client {
	c := &Client{store: store, dir: dir, limits: DefaultLimits()}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Open is a shortcut: the client of registry repository repo.
func Open(rc *registry.Client, repo, dir string, opts ...Option) (*Client, error) {
	s, err := ocistore.New(rc, repo)
	if err != nil {
		return nil, err
	}
	return New(s, dir, opts...), nil
}

func (c *Client) metaDir() string { return filepath.Join(c.dir, "metadata") }

// Initialized reports whether a trusted root exists.
func (c *Client) Initialized() bool {
	_, err := os.Stat(filepath.Join(c.metaDir(), "root.json"))
	return err == nil
}

// update runs fn with an updater over a copy of the trusted metadata and
// commits the copy only when everything succeeded. trustedRoot, when not
// nil, replaces the trusted root (bootstrap).
func (c *Client) update(ctx context.Context, trustedRoot []byte, fn func(u *updater.Updater, dir string) error) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	unlock, err := flock.Lock(c.dir)
	if err != nil {
		return err
	}
	defer unlock()
	root := trustedRoot
	if root == nil {
		root, err = os.ReadFile(filepath.Join(c.metaDir(), "root.json"))
		if errors.Is(err, os.ErrNotExist) {
			return tuf.ErrNotInitialized
		}
		if err != nil {
			return err
		}
	}
	if err := os.MkdirAll(c.metaDir(), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(c.dir, ".update-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if trustedRoot == nil {
		if err := copyJSON(c.metaDir(), tmp); err != nil {
			return err
		}
	}
	cfg, err := config.New(c.store.MetadataURL(), root)
	if err != nil {
		return err
	}
	cfg.LocalMetadataDir = tmp
	cfg.LocalTargetsDir = tmp
	cfg.Fetcher = c.store.NewFetcher(ctx)
	cfg.RootMaxLength, cfg.TimestampMaxLength = c.limits.Root, c.limits.Timestamp
	cfg.SnapshotMaxLength, cfg.TargetsMaxLength = c.limits.Snapshot, c.limits.Targets
	u, err := updater.New(cfg)
	if err != nil {
		return fmt.Errorf("trusted root: %w", tuf.Classify(err))
	}
	if c.now != nil {
		u.UnsafeSetRefTime(c.now())
	}
	if err := u.Refresh(); err != nil {
		return fmt.Errorf("update %s: %w", c.store, tuf.Classify(err))
	}
	if fn != nil {
		if err := fn(u, tmp); err != nil {
			return err
		}
	}
	if trustedRoot != nil {
		// a new trust anchor: forget what the old one vouched for
		if err := os.RemoveAll(c.metaDir()); err != nil {
			return err
		}
		if err := os.MkdirAll(c.metaDir(), 0o755); err != nil {
			return err
		}
	}
	return commitJSON(tmp, c.metaDir())
}

func copyJSON(from, to string) error {
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			data, err := os.ReadFile(filepath.Join(from, e.Name()))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// commitJSON writes every changed file of from into to (each atomically);
// root.json goes last so that a crash leaves the old anchor with new
// non-root files, which the next update re-verifies anyway.
func commitJSON(from, to string) error {
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[j].Name() == "root.json" })
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		old, err := os.ReadFile(filepath.Join(to, e.Name()))
		if err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Bootstrap sets the trust anchor and runs a full update. trust is either a
// root.json (recommended: the publisher's metadata/root.json) or a root
// public key (PEM, TUF key JSON or a .pub file); with a key, the registry's
// latest root is accepted only if that key signed it and it meets its own
// root threshold. Nothing is stored unless the whole update succeeds.
func (c *Client) Bootstrap(ctx context.Context, trust []byte) ([]string, error) {
	root, err := c.rootFromTrust(ctx, trust)
	if err != nil {
		return nil, err
	}
	return c.pull(ctx, root)
}

func (c *Client) rootFromTrust(ctx context.Context, trust []byte) ([]byte, error) {
	var probe struct {
		Signed json.RawMessage `json:"signed"`
	}
	if json.Unmarshal(trust, &probe) == nil && len(probe.Signed) > 0 {
		md, err := metadata.Root().FromBytes(trust)
		if err != nil {
			return nil, fmt.Errorf("trusted root: %w", err)
		}
		if err := md.VerifyDelegate(metadata.ROOT, md); err != nil {
			return nil, fmt.Errorf("trusted root: %w", tuf.Classify(err))
		}
		return trust, nil
	}
	key, err := keys.ParsePublic(trust)
	if err != nil {
		return nil, fmt.Errorf("trust anchor is neither a root.json nor a public key: %w", err)
	}
	id, err := key.ID()
	if err != nil {
		return nil, err
	}
	// newest root first, then older versions: a retired key still
	// bootstraps through the chain of cross-signed roots that follows it
	file := "root.json"
	for n := 0; n < 256; n++ {
		data, err := c.store.GetMetadata(ctx, file, c.limits.Root)
		if err != nil {
			return nil, err
		}
		md, err := metadata.Root().FromBytes(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if signedBy(md, key, id) {
			if err := md.VerifyDelegate(metadata.ROOT, md); err != nil {
				return nil, fmt.Errorf("%s: %w", file, tuf.Classify(err))
			}
			return data, nil
		}
		if md.Signed.Version <= 1 {
			break
		}
		file = fmt.Sprintf("%d.root.json", md.Signed.Version-1)
	}
	return nil, fmt.Errorf("%w: no root in %s is signed by the given root key %s", tuf.ErrSignature, c.store, id)
}

// signedBy reports whether key (id) made a valid signature over md.
func signedBy(md *metadata.Metadata[metadata.RootType], key *metadata.Key, id string) bool {
	probe := metadata.Root()
	probe.Signed.Keys = map[string]*metadata.Key{id: key}
	probe.Signed.Roles[metadata.ROOT] = &metadata.Role{KeyIDs: []string{id}, Threshold: 1}
	return probe.VerifyDelegate(metadata.ROOT, md) == nil
}

// PullMetadata runs the TUF update (root chain, timestamp, snapshot,
// targets and delegated targets) and returns the targets that are new or
// changed since the previous trusted state.
func (c *Client) PullMetadata(ctx context.Context) ([]string, error) {
	return c.pull(ctx, nil)
}

func (c *Client) pull(ctx context.Context, root []byte) ([]string, error) {
	before, _ := c.Targets()
	var after map[string]*metadata.TargetFiles
	err := c.update(ctx, root, func(u *updater.Updater, dir string) error {
		var err error
		after, err = c.loadDelegations(ctx, u, dir)
		return err
	})
	if err != nil {
		return nil, err
	}
	var changed []string
	for name, tf := range after {
		if old, ok := before[name]; !ok || !old.Equal(*tf) {
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	return changed, nil
}

// loadDelegations verifies and stores every delegated targets role (go-tuf
// loads them lazily per target; listing needs all), then returns all targets.
func (c *Client) loadDelegations(ctx context.Context, u *updater.Updater, dir string) (map[string]*metadata.TargetFiles, error) {
	tm := u.GetTrustedMetadataSet()
	all := map[string]*metadata.TargetFiles{}
	type rp struct {
		role, parent string
		dr           *metadata.DelegatedRole
	}
	queue := []rp{{metadata.TARGETS, "", nil}}
	seen := map[string]bool{}
	for len(queue) > 0 && len(seen) <= 32 {
		cur := queue[0]
		queue = queue[1:]
		if seen[cur.role] {
			continue
		}
		seen[cur.role] = true
		md := tm.Targets[cur.role]
		if md == nil {
			mf, ok := tm.Snapshot.Signed.Meta[cur.role+".json"]
			if !ok {
				return nil, fmt.Errorf("%w: role %s is not in the snapshot", tuf.ErrNotFound, cur.role)
			}
			file := fmt.Sprintf("%d.%s.json", mf.Version, url.PathEscape(cur.role))
			data, err := c.store.NewFetcher(ctx).DownloadFile(file, c.limits.Targets, 0)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", cur.role, tuf.Classify(err))
			}
			md, err = tm.UpdateDelegatedTargets(data, cur.role, cur.parent)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", cur.role, tuf.Classify(err))
			}
			if err := os.WriteFile(filepath.Join(dir, url.PathEscape(cur.role)+".json"), data, 0o644); err != nil {
				return nil, err
			}
		}
		for name, tf := range md.Signed.Targets {
			if cur.dr != nil {
				if ok, err := cur.dr.IsDelegatedPath(name); err != nil || !ok {
					continue // not this role's to sign
				}
			}
			if _, ok := all[name]; !ok {
				all[name] = tf
			}
		}
		if md.Signed.Delegations != nil {
			for i := range md.Signed.Delegations.Roles {
				dr := &md.Signed.Delegations.Roles[i]
				queue = append(queue, rp{dr.Name, cur.role, dr})
			}
		}
	}
	return all, nil
}

// readLocal parses a trusted local file (written only after verification).
func readLocal[T metadata.Roles](c *Client, role string, md *metadata.Metadata[T]) (*metadata.Metadata[T], error) {
	data, err := os.ReadFile(filepath.Join(c.metaDir(), url.PathEscape(role)+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, tuf.ErrNotInitialized
	}
	if err != nil {
		return nil, err
	}
	return md.FromBytes(data)
}

// Targets returns the targets of the trusted local copy (top-level and
// the delegated roles already pulled), without network access.
func (c *Client) Targets() (map[string]*metadata.TargetFiles, error) {
	top, err := readLocal(c, metadata.TARGETS, metadata.Targets())
	if err != nil {
		return nil, err
	}
	all := map[string]*metadata.TargetFiles{}
	var walk func(md *metadata.Metadata[metadata.TargetsType], dr *metadata.DelegatedRole, depth int)
	walk = func(md *metadata.Metadata[metadata.TargetsType], dr *metadata.DelegatedRole, depth int) {
		for name, tf := range md.Signed.Targets {
			if dr != nil {
				if ok, err := dr.IsDelegatedPath(name); err != nil || !ok {
					continue
				}
			}
			if _, ok := all[name]; !ok {
				all[name] = tf
			}
		}
		if md.Signed.Delegations == nil || depth > 8 {
			return
		}
		for i := range md.Signed.Delegations.Roles {
			d := &md.Signed.Delegations.Roles[i]
			// a role delegated by two roles lists targets only on the
			// paths whose delegator's keys signed it (see walk.go)
			if child, err := readLocal(c, d.Name, metadata.Targets()); err == nil && md.VerifyDelegate(d.Name, child) == nil {
				walk(child, d, depth+1)
			}
		}
	}
	walk(top, nil, 0)
	return all, nil
}

// TargetNames lists the local copy's target names, sorted.
func (c *Client) TargetNames() ([]string, error) {
	all, err := c.Targets()
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(all)), nil
}

// Expiration is one role's expiry.
type Expiration = tuf.Expiration

// Expirations lists the expiry of the trusted local metadata.
func (c *Client) Expirations() ([]Expiration, error) {
	root, err := readLocal(c, metadata.ROOT, metadata.Root())
	if err != nil {
		return nil, err
	}
	out := []Expiration{{Role: metadata.ROOT, Expires: root.Signed.Expires}}
	if t, err := readLocal(c, metadata.TARGETS, metadata.Targets()); err == nil {
		out = append(out, Expiration{Role: metadata.TARGETS, Expires: t.Signed.Expires})
		if t.Signed.Delegations != nil {
			for _, d := range t.Signed.Delegations.Roles {
				if dt, err := readLocal(c, d.Name, metadata.Targets()); err == nil {
					out = append(out, Expiration{Role: d.Name, Expires: dt.Signed.Expires})
				}
			}
		}
	}
	if s, err := readLocal(c, metadata.SNAPSHOT, metadata.Snapshot()); err == nil {
		out = append(out, Expiration{Role: metadata.SNAPSHOT, Expires: s.Signed.Expires})
	}
	if t, err := readLocal(c, metadata.TIMESTAMP, metadata.Timestamp()); err == nil {
		out = append(out, Expiration{Role: metadata.TIMESTAMP, Expires: t.Signed.Expires})
	}
	return out, nil
}

// Freshness is one trusted role's expiry and when this copy stored that
// version (the file's modification time: files are rewritten only when
// they change).
type Freshness struct {
	Role    string
	Expires time.Time
	Stored  time.Time
}

// Freshness lists Expirations with the time each version was stored.
func (c *Client) Freshness() ([]Freshness, error) {
	exps, err := c.Expirations()
	if err != nil {
		return nil, err
	}
	out := make([]Freshness, 0, len(exps))
	for _, e := range exps {
		fi, err := os.Stat(filepath.Join(c.metaDir(), url.PathEscape(e.Role)+".json"))
		if err != nil {
			return nil, err
		}
		out = append(out, Freshness{Role: e.Role, Expires: e.Expires, Stored: fi.ModTime()})
	}
	return out, nil
}

// TargetInfo updates the metadata and returns the signed description of
// the named targets (length, hashes), searching delegations as TUF says.
func (c *Client) TargetInfo(ctx context.Context, names ...string) ([]*metadata.TargetFiles, error) {
	var out []*metadata.TargetFiles
	err := c.update(ctx, nil, func(u *updater.Updater, dir string) error {
		// our walk, not u.GetTargetInfo: see walk.go (delegation diamonds)
		w := newWalker(u, dir, c.store.MetadataURL(), c.store.NewFetcher(ctx), c.limits.Targets)
		for _, n := range names {
			tf, err := w.find(n)
			if err != nil {
				return fmt.Errorf("target %q: %w", n, err)
			}
			if _, ok := tf.Hashes["sha256"]; !ok {
				return fmt.Errorf("target %q: no sha256 hash, cannot address it in a registry", n)
			}
			out = append(out, tf)
		}
		return nil
	})
	return out, err
}

// verifier checks length and every known hash of a target while it streams.
type verifier struct {
	tf     *metadata.TargetFiles
	n      int64
	hashes map[string]hash.Hash
}

func newVerifier(tf *metadata.TargetFiles) (*verifier, error) {
	v := &verifier{tf: tf, hashes: map[string]hash.Hash{}}
	for alg := range tf.Hashes {
		switch alg {
		case "sha256":
			v.hashes[alg] = sha256.New()
		case "sha512":
			v.hashes[alg] = sha512.New()
		}
	}
	if len(v.hashes) == 0 {
		return nil, fmt.Errorf("target %q: no supported hash algorithm", tf.Path)
	}
	return v, nil
}

// covered drops v's own SHA-256 when the stream it checks is the blob of
// that very digest: ocistore.OpenBlob fails the read at EOF on a mismatch
// (tuf.ErrTampered), so hashing again would only repeat that check. Call it
// before the first Write.
func (v *verifier) covered(blobHex string) {
	if want, ok := v.tf.Hashes["sha256"]; ok && v.n == 0 && hex.EncodeToString(want) == blobHex {
		delete(v.hashes, "sha256")
	}
}

func (v *verifier) Write(p []byte) (int, error) {
	v.n += int64(len(p))
	if v.n > v.tf.Length {
		return 0, fmt.Errorf("%w: target %q is longer than its signed length %d", tuf.ErrTampered, v.tf.Path, v.tf.Length)
	}
	for _, h := range v.hashes {
		h.Write(p)
	}
	return len(p), nil
}

func (v *verifier) check() error {
	if v.n != v.tf.Length {
		return fmt.Errorf("%w: target %q is %d bytes, signed length %d", tuf.ErrTampered, v.tf.Path, v.n, v.tf.Length)
	}
	for alg, h := range v.hashes {
		if subtle.ConstantTimeCompare(h.Sum(nil), v.tf.Hashes[alg]) != 1 {
			return fmt.Errorf("%w: target %q %s mismatch", tuf.ErrTampered, v.tf.Path, alg)
		}
	}
	return nil
}

// partVerifier checks one part of a multi-part target (nil for a
// single-part target: the whole verifier covers it).
func partVerifier(tf *metadata.TargetFiles, parts []tuf.Part, i int) (*verifier, error) {
	if len(parts) <= 1 {
		return nil, nil
	}
	h, err := hex.DecodeString(parts[i].SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: part %d: bad sha256", tuf.ErrTampered, tf.Path, i+1)
	}
	return newVerifier(&metadata.TargetFiles{Length: parts[i].Length, Hashes: metadata.Hashes{"sha256": h},
		Path: fmt.Sprintf("%s (part %d/%d)", tf.Path, i+1, len(parts))})
}

// copyVerified streams the target's blob, or its part blobs one after the
// other, into w, checking the length and hashes of the whole (and of each
// part) on the way; w holds unverified bytes until it returns nil, so w
// must be a temp file or a bounded buffer.
func (c *Client) copyVerified(ctx context.Context, tf *metadata.TargetFiles, w io.Writer) error {
	v, err := newVerifier(tf)
	if err != nil {
		return err
	}
	parts, err := tuf.Parts(tf)
	if err != nil {
		return err
	}
	for i := range parts {
		if err := c.copyPart(ctx, tf, parts, i, v, w); err != nil {
			return err
		}
	}
	return v.check()
}

func (c *Client) copyPart(ctx context.Context, tf *metadata.TargetFiles, parts []tuf.Part, i int, whole *verifier, w io.Writer) error {
	part := parts[i]
	pv, err := partVerifier(tf, parts, i)
	if err != nil {
		return err
	}
	label := tf.Path
	ws := []io.Writer{whole}
	if pv != nil {
		label = pv.tf.Path
		ws = append(ws, pv)
		pv.covered(part.SHA256)
	} else {
		whole.covered(part.SHA256) // one part: the blob is the whole target
	}
	rc, err := c.store.OpenBlob(ctx, part.SHA256)
	if err != nil {
		return fmt.Errorf("target %q: %w", label, err)
	}
	defer rc.Close()
	r := registry.NewProgressReader(io.LimitReader(rc, part.Length+1), part.Length, c.progress, label)
	if _, err := io.CopyBuffer(io.MultiWriter(append(ws, w)...), r, make([]byte, 1<<20)); err != nil {
		if errors.Is(err, tuf.ErrTampered) {
			return err
		}
		// the registry client's own digest check fails at EOF: say why
		check := whole
		if pv != nil {
			check = pv
		}
		if cerr := check.check(); cerr != nil && check.n == check.tf.Length {
			return cerr
		}
		return fmt.Errorf("target %q: %w", label, err)
	}
	if pv != nil {
		return pv.check()
	}
	return nil
}

// Download updates the metadata, then downloads the target into path:
// temp file next to it, verify, rename. A refused target leaves path as it was.
func (c *Client) Download(ctx context.Context, name, path string) (*metadata.TargetFiles, error) {
	tfs, err := c.TargetInfo(ctx, name)
	if err != nil {
		return nil, err
	}
	return tfs[0], c.downloadTo(ctx, tfs[0], path)
}

func (c *Client) downloadTo(ctx context.Context, tf *metadata.TargetFiles, path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tuf-download-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := c.copyVerified(ctx, tf, f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteTo updates the metadata and writes the verified targets to w, one
// after the other. Each is buffered in a temp file under the client dir and
// verified before its first byte reaches w. blobInfo, when not nil, gets a
// "sha256:<hex> <size>" line before each part of each target (a
// single-part target has one: the target's own digest; DTUF_BLOB_INFO).
func (c *Client) WriteTo(ctx context.Context, w io.Writer, blobInfo io.Writer, names ...string) error {
	tfs, err := c.TargetInfo(ctx, names...)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	for _, tf := range tfs {
		f, err := os.CreateTemp(c.dir, ".tuf-target-*")
		if err != nil {
			return err
		}
		err = func() error {
			defer os.Remove(f.Name())
			defer f.Close()
			if err := c.copyVerified(ctx, tf, f); err != nil {
				return err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			parts, err := tuf.Parts(tf)
			if err != nil {
				return err
			}
			for _, part := range parts {
				if blobInfo != nil {
					fmt.Fprintf(blobInfo, "sha256:%s %d\n", part.SHA256, part.Length)
				}
				if _, err := io.CopyN(w, f, part.Length); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// Fetch updates the metadata and returns a small target verified in
// memory, refusing targets whose signed length exceeds maxSize (trust
// documents and other small JSON files).
func (c *Client) Fetch(ctx context.Context, name string, maxSize int64) ([]byte, error) {
	tfs, err := c.TargetInfo(ctx, name)
	if err != nil {
		return nil, err
	}
	tf := tfs[0]
	if tf.Length > maxSize {
		return nil, fmt.Errorf("%w: target %q is %d bytes, limit %d", tuf.ErrTooLarge, name, tf.Length, maxSize)
	}
	var buf bytes.Buffer
	if err := c.copyVerified(ctx, tf, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CheckTarget updates the metadata and reports whether local files are the
// named target (nil) or not (ErrTampered): one file per part, in order (one
// file for a single-part target), each checked against its part and all of
// them, concatenated, against the target's signed length and hashes.
func (c *Client) CheckTarget(ctx context.Context, name string, paths ...string) error {
	tfs, err := c.TargetInfo(ctx, name)
	if err != nil {
		return err
	}
	tf := tfs[0]
	parts, err := tuf.Parts(tf)
	if err != nil {
		return err
	}
	if len(paths) != len(parts) {
		return fmt.Errorf("%w: target %q has %d part(s), %d file(s) given", tuf.ErrTampered, name, len(parts), len(paths))
	}
	v, err := newVerifier(tf)
	if err != nil {
		return err
	}
	for i, path := range paths {
		if err := checkPart(tf, parts, i, v, path); err != nil {
			return err
		}
	}
	if err := v.check(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(paths, ", "), err)
	}
	return nil
}

func checkPart(tf *metadata.TargetFiles, parts []tuf.Part, i int, whole *verifier, path string) error {
	pv, err := partVerifier(tf, parts, i)
	if err != nil {
		return err
	}
	var w io.Writer = whole
	if pv != nil {
		w = io.MultiWriter(pv, whole)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if pv != nil {
		if err := pv.check(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}
