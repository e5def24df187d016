package seal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/internal/fsutil"
)

// RegistryTarget loads images into an OCI registry under
// <host>/<repo>:<tag>. Blobs are uploaded as they stream (the registry checks
// their digest again); manifests, which make images visible, are put only at
// Commit. A failed unseal can leave unreferenced blobs, never a tag.
type RegistryTarget struct {
	host  string
	nopts []name.Option
	ropts []remote.Option
	inv   *Inventory
	// firstRepo remembers where a blob was uploaded so that other
	// repositories can mount (or copy) it instead of reading the stream twice.
	firstRepo map[v1.Hash]name.Repository
}

// NewRegistryTarget returns a target for the registry at host (e.g.
// "127.0.0.1:5000"). Pass name.Insecure for plain HTTP beyond localhost and
// remote options for auth and transport.
func NewRegistryTarget(host string, nopts []name.Option, ropts ...remote.Option) *RegistryTarget {
	return &RegistryTarget{host: host, nopts: nopts, ropts: ropts}
}

func (t *RegistryTarget) ref(n string) (name.Tag, error) {
	return name.NewTag(t.host+"/"+n, t.nopts...)
}

// Ref returns the reference an archive image name is loaded under.
func (t *RegistryTarget) Ref(n string) string {
	r, err := t.ref(n)
	if err != nil {
		return t.host + "/" + n
	}
	return r.String()
}

func (t *RegistryTarget) opts(ctx context.Context) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx)}, t.ropts...)
}

// Prepare implements Target.
func (t *RegistryTarget) Prepare(_ context.Context, inv *Inventory) error {
	for _, im := range inv.Images {
		if _, err := t.ref(im.Name); err != nil {
			return fmt.Errorf("image name %s: %w", im.Name, err)
		}
	}
	t.inv, t.firstRepo = inv, map[v1.Hash]name.Repository{}
	return nil
}

// WriteBlob implements Target.
func (t *RegistryTarget) WriteBlob(ctx context.Context, d v1.Descriptor, r io.Reader) error {
	for _, i := range t.inv.Users(d.Digest) {
		tag, err := t.ref(t.inv.Images[i].Name)
		if err != nil {
			return err
		}
		repo := tag.Context()
		first, done := t.firstRepo[d.Digest]
		if !done {
			if err := remote.WriteLayer(repo, &streamBlob{d: d, r: r}, t.opts(ctx)...); err != nil {
				return fmt.Errorf("upload %s to %s: %w", d.Digest, repo, err)
			}
			t.firstRepo[d.Digest] = repo
			continue
		}
		if first.String() == repo.String() {
			continue
		}
		// Mount from the first repository (ggcr falls back to a copy).
		l, err := remote.Layer(first.Digest(d.Digest.String()), t.opts(ctx)...)
		if err != nil {
			return err
		}
		if err := remote.WriteLayer(repo, l, t.opts(ctx)...); err != nil {
			return fmt.Errorf("mount %s into %s: %w", d.Digest, repo, err)
		}
	}
	return nil
}

// Commit implements Target: it puts every manifest under its tag.
func (t *RegistryTarget) Commit(ctx context.Context) error {
	for _, im := range t.inv.Images {
		tag, err := t.ref(im.Name)
		if err != nil {
			return err
		}
		if err := remote.Put(tag, rawManifest{b: im.Manifest, mt: types.MediaType(im.MediaType)}, t.opts(ctx)...); err != nil {
			return fmt.Errorf("put manifest %s: %w", tag, err)
		}
	}
	return nil
}

// Abort implements Target. Uploaded blobs stay unreferenced until the
// registry's garbage collection.
func (t *RegistryTarget) Abort(context.Context) {}

// Resolve implements Target.
func (t *RegistryTarget) Resolve(ctx context.Context, n string) ([]string, error) {
	tag, err := t.ref(n)
	if err != nil {
		return nil, err
	}
	d, err := remote.Head(tag, t.opts(ctx)...)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return nil, nil // not there: the caller's expectation fails
	}
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", t.host, err)
	}
	return []string{d.Digest.String()}, nil
}

type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// streamBlob is a v1.Layer over a one-shot reader with a known digest.
type streamBlob struct {
	d    v1.Descriptor
	r    io.Reader
	used bool
}

func (s *streamBlob) Digest() (v1.Hash, error)            { return s.d.Digest, nil }
func (s *streamBlob) DiffID() (v1.Hash, error)            { return s.d.Digest, nil }
func (s *streamBlob) Size() (int64, error)                { return s.d.Size, nil }
func (s *streamBlob) MediaType() (types.MediaType, error) { return s.d.MediaType, nil }
func (s *streamBlob) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("seal: uncompressed view not available for a streamed blob")
}
func (s *streamBlob) Compressed() (io.ReadCloser, error) {
	if s.used {
		return nil, errors.New("seal: streamed blob can only be read once")
	}
	s.used = true
	return io.NopCloser(s.r), nil
}

// LayoutTarget loads images into an OCI image layout directory. A blob is
// written to an unnamed file (O_TMPFILE, where the filesystem has it) that is
// linked in as blobs/sha256/<hex> only when its digest matched, so a killed
// unseal leaves no partial plaintext behind; elsewhere to a .tmp- file that
// the next unseal into the layout removes. index.json (the only thing naming
// images) is rewritten atomically at Commit. One unseal at a time holds the
// layout's lock file.
type LayoutTarget struct {
	dir    string
	inv    *Inventory
	unlock func()
	// added lists the blob files this unseal linked in, which Abort removes
	// (a one-pass unseal writes them before the archive's end is known).
	// The syncer appends to it, under mu.
	mu    sync.Mutex
	added []string
	// A verified blob is synced and named on the syncer goroutine while the
	// next one is decrypted and hashed here; Commit and Abort wait for it.
	jobs    chan blobFile
	synced  chan struct{}
	syncErr error // the syncer's first error, under mu
}

// blobFile is a verified blob written to f, waiting to be synced and named.
type blobFile struct {
	f       *os.File
	final   string
	unnamed bool // f is an O_TMPFILE file, else a .tmp- one renamed into place
}

// syncQueue bounds the blobs waiting for the syncer (each holds a file open).
const syncQueue = 8

// NewLayoutTarget returns a target for the OCI layout at dir (created if needed).
func NewLayoutTarget(dir string) *LayoutTarget { return &LayoutTarget{dir: dir} }

// layoutLockFile sits in the layout dir while an unseal writes to it.
const layoutLockFile = ".trainyard-unseal.lock"

// Prepare implements Target. It takes the layout's lock and removes what an
// earlier, killed unseal left: .tmp-* blobs (plaintext that never verified).
func (t *LayoutTarget) Prepare(_ context.Context, inv *Inventory) error {
	t.inv, t.added, t.syncErr = inv, nil, nil
	blobs := filepath.Join(t.dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	unlock, err := lockDir(filepath.Join(t.dir, layoutLockFile))
	if err != nil {
		return fmt.Errorf("oci layout %s: %w", t.dir, err)
	}
	t.unlock = unlock
	if err := removeStale(blobs); err != nil {
		t.release()
		return err
	}
	t.startSyncer()
	lp := filepath.Join(t.dir, ociLayoutFile)
	if _, err := os.Stat(lp); errors.Is(err, os.ErrNotExist) {
		if err := fsutil.WriteFileAtomic(lp, []byte(ociLayoutBytes), 0o644); err != nil {
			t.release()
			return err
		}
	}
	return nil
}

func (t *LayoutTarget) release() {
	t.waitSynced()
	if t.unlock != nil {
		t.unlock()
		t.unlock = nil
	}
}

// removeStale deletes the temp files of earlier runs (only ever called with
// the layout's lock held, so never another live unseal's).
func removeStale(blobs string) error {
	ents, err := os.ReadDir(blobs)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			if err := os.Remove(filepath.Join(blobs, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing a killed unseal's leftover: %w", err)
			}
		}
	}
	return nil
}

func (t *LayoutTarget) blobFile(h v1.Hash) string {
	return filepath.Join(t.dir, "blobs", h.Algorithm, h.Hex)
}

// WriteBlob implements Target.
func (t *LayoutTarget) WriteBlob(_ context.Context, d v1.Descriptor, r io.Reader) error {
	return t.put(d, r)
}

func (t *LayoutTarget) put(d v1.Descriptor, r io.Reader) error {
	if err := t.failed(); err != nil {
		return err
	}
	final := t.blobFile(d.Digest)
	if st, err := os.Stat(final); err == nil && st.Size() == d.Size {
		return nil // content-addressed: already there (the stream is still verified by the caller)
	}
	dir := filepath.Dir(final)
	unnamed := true
	f, err := createUnnamed(dir)
	if err != nil {
		unnamed = false
		if f, err = os.CreateTemp(dir, ".tmp-"+d.Digest.Hex[:12]+"-*"); err != nil {
			return err
		}
	}
	// r fails at its end unless the blob's digest and size matched, so
	// only a verified blob is ever handed on to be named.
	if _, err := copyBlob(f, r); err != nil {
		discardBlob(f, unnamed)
		return err
	}
	b := blobFile{f: f, final: final, unnamed: unnamed}
	if t.jobs == nil {
		return t.finish(b) // no syncer (Commit's manifests): in line
	}
	t.jobs <- b
	return nil
}

// startSyncer starts the goroutine that syncs and names verified blobs.
func (t *LayoutTarget) startSyncer() {
	t.jobs, t.synced = make(chan blobFile, syncQueue), make(chan struct{})
	go func(jobs <-chan blobFile, done chan<- struct{}) {
		defer close(done)
		for b := range jobs {
			if t.failed() != nil {
				discardBlob(b.f, b.unnamed) // an earlier blob failed: the unseal will abort
				continue
			}
			if err := t.finish(b); err != nil {
				t.mu.Lock()
				t.syncErr = err
				t.mu.Unlock()
			}
		}
	}(t.jobs, t.synced)
}

// waitSynced stops the syncer after the blobs queued for it and returns its
// first error.
func (t *LayoutTarget) waitSynced() error {
	if t.jobs != nil {
		close(t.jobs)
		<-t.synced
		t.jobs, t.synced = nil, nil
	}
	return t.failed()
}

func (t *LayoutTarget) failed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.syncErr
}

// syncBlob makes a blob file durable (a variable: tests make it fail).
var syncBlob = (*os.File).Sync

// finish makes a verified blob durable, then names it as final.
func (t *LayoutTarget) finish(b blobFile) error {
	if err := syncBlob(b.f); err != nil {
		discardBlob(b.f, b.unnamed)
		return err
	}
	if b.unnamed {
		err := linkUnnamed(b.f, b.final)
		b.f.Close()
		if err != nil {
			return err
		}
	} else {
		tmp := b.f.Name()
		if err := b.f.Close(); err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, b.final); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	t.mu.Lock()
	t.added = append(t.added, b.final)
	t.mu.Unlock()
	return nil
}

// discardBlob closes a blob file that will not be named (an unnamed one
// vanishes with its last descriptor).
func discardBlob(f *os.File, unnamed bool) {
	f.Close()
	if !unnamed {
		os.Remove(f.Name())
	}
}

// copyBlob writes r to f in 1 MiB writes (os.File's ReadFrom would use
// 32 KiB ones, eight syscalls for every AEAD chunk), starting the disk's
// write-out of every few MiB as they are written, so the Sync that follows
// waits for the blob's tail, not all of it.
func copyBlob(f *os.File, r io.Reader) (int64, error) {
	return fsutil.NewWritebackWriter(f).ReadFrom(r)
}

// Commit implements Target.
func (t *LayoutTarget) Commit(_ context.Context) error {
	// Every blob durable and named before any manifest is.
	if err := t.waitSynced(); err != nil {
		return err
	}
	for _, im := range t.inv.Images {
		h, _ := v1.NewHash(im.Digest)
		v := newVerifier(h, int64(len(im.Manifest)))
		if err := t.put(v1.Descriptor{Digest: h, Size: im.Size}, &verifyReader{r: bytes.NewReader(im.Manifest), v: v}); err != nil {
			return err
		}
	}
	idx, err := t.readIndex()
	if err != nil {
		return err
	}
	for _, im := range t.inv.Images {
		h, _ := v1.NewHash(im.Digest)
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if d.Annotations[AnnotationRefName] != im.Name {
				kept = append(kept, d)
			}
		}
		idx.Manifests = append(kept, v1.Descriptor{MediaType: types.MediaType(im.MediaType), Size: im.Size, Digest: h,
			Annotations: map[string]string{AnnotationRefName: im.Name}})
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(t.dir, indexFile), b, 0o644); err != nil {
		return err // Abort removes the blobs and releases the lock
	}
	t.added = nil
	t.release()
	return nil
}

func (t *LayoutTarget) readIndex() (*v1.IndexManifest, error) {
	b, err := os.ReadFile(filepath.Join(t.dir, indexFile))
	if errors.Is(err, os.ErrNotExist) {
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}, nil
	}
	if err != nil {
		return nil, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(t.dir, indexFile), err)
	}
	return &idx, nil
}

// Abort implements Target: it removes the blobs this unseal linked in
// (blobs the layout already had stay), then releases the lock.
func (t *LayoutTarget) Abort(context.Context) {
	t.waitSynced() // whatever it named is in added, and removed below
	for _, p := range t.added {
		_ = os.Remove(p) // best effort: a blob left is verified and unreferenced
	}
	t.added = nil
	t.release()
}

// Resolve implements Target.
func (t *LayoutTarget) Resolve(_ context.Context, n string) ([]string, error) {
	idx, err := t.readIndex()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range idx.Manifests {
		if canonicalName(d.Annotations[AnnotationRefName]) == n {
			out = append(out, d.Digest.String())
		}
	}
	return out, nil
}
