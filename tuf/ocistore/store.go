// Package ocistore is the registry layout of trainyard's TUF repositories:
// how metadata files and targets live in one OCI registry repository, and a
// go-tuf fetcher that reads metadata from it.
//
// Layout (docs/tuf.md has the long form):
//   - every metadata file is an OCI 1.1 artifact manifest (artifactType
//     application/vnd.tuf.metadata+json, empty config, one layer holding the
//     file, annotated with its file name), tagged by its consistent name:
//     "1.root.json", "7.targets.json", "7.snapshot.json", "7.<role>.json";
//     delegated role names that are not tag-safe become "7._<sha256(name)>.json".
//     Mutable tags: "root.json" (latest root, for key-pinned bootstrap) and
//     "timestamp.json", always written last.
//   - a target is one blob addressed by the sha256 in the signed metadata,
//     or, for a multi-part target, the concatenation of part blobs listed in
//     the target's custom field (see tuf.Parts). Every target or part blob is
//     a layer of the "tuf-targets" manifest, so registry
//     garbage collection keeps what is published (and staged) and nothing else.
package ocistore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
)

// Media types and tags of the layout.
const (
	MetadataMediaType = "application/vnd.tuf.metadata+json"
	TargetsArtifact   = "application/vnd.trainyard.tuf.targets.v1"
	TargetMediaType   = "application/octet-stream"
	EmptyMediaType    = "application/vnd.oci.empty.v1+json"
	TitleAnnotation   = "org.opencontainers.image.title"
	TargetAnnotation  = "io.trainyard.tuf.target"
	KeeperTag         = "tuf-targets"
	TimestampTag      = "timestamp.json"
	RootTag           = "root.json"
)

var emptyConfig = []byte("{}")

// Store reads and writes one TUF repository in one registry repository.
type Store struct {
	client *registry.Client
	repo   name.Repository
}

// New opens the repository repo ("host/path") through client.
func New(client *registry.Client, repo string) (*Store, error) {
	if client == nil {
		client = registry.NewClient()
	}
	r, err := client.ParseRepository(repo)
	if err != nil {
		return nil, err
	}
	return &Store{client: client, repo: r}, nil
}

// Repository returns the registry repository.
func (s *Store) Repository() name.Repository { return s.repo }

// String names the repository.
func (s *Store) String() string { return s.repo.String() }

var plainRole = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// TagFor maps a TUF metadata file name ("root.json", "3.targets.json",
// "5.my role.json") to its tag. Role names that are not tag-safe are hashed;
// a plain name never starts with "_", so the two forms cannot collide.
func TagFor(filename string) (string, error) {
	base, ok := strings.CutSuffix(filename, ".json")
	if !ok || base == "" {
		return "", fmt.Errorf("not a metadata file name: %q", filename)
	}
	version, role := "", base
	if i := strings.IndexByte(base, '.'); i > 0 {
		if _, err := strconv.ParseUint(base[:i], 10, 63); err == nil {
			version, role = base[:i]+".", base[i+1:]
		}
	}
	if role == "" {
		return "", fmt.Errorf("not a metadata file name: %q", filename)
	}
	if !plainRole.MatchString(role) {
		sum := sha256.Sum256([]byte(role))
		role = "_" + hex.EncodeToString(sum[:])
	}
	return version + role + ".json", nil
}

// notFound turns a registry 404 into go-tuf's ErrDownloadHTTP (which ends
// the root walk) wrapped with tuf.ErrNotFound.
func notFound(err error) error {
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", tuf.ErrNotFound, errHTTP404{err})
	}
	return err
}

// GetMetadata returns the metadata file filename, refusing anything larger
// than maxLength before reading it.
func (s *Store) GetMetadata(ctx context.Context, filename string, maxLength int64) ([]byte, error) {
	tag, err := TagFor(filename)
	if err != nil {
		return nil, err
	}
	opts := s.client.RemoteOptions(ctx)
	desc, err := remote.Get(s.repo.Tag(tag), opts...)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", filename, notFound(err))
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("get %s: bad manifest: %w", filename, err)
	}
	if len(m.Layers) != 1 || string(m.Layers[0].MediaType) != MetadataMediaType {
		return nil, fmt.Errorf("get %s: manifest is not a TUF metadata artifact", filename)
	}
	l := m.Layers[0]
	if maxLength > 0 && l.Size > maxLength {
		return nil, fmt.Errorf("get %s: %w: %d bytes, limit %d", filename, tuf.ErrTooLarge, l.Size, maxLength)
	}
	rc, err := s.openBlob(ctx, l.Digest)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", filename, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, l.Size+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", filename, err)
	}
	if int64(len(data)) != l.Size {
		return nil, fmt.Errorf("get %s: %w: blob is not %d bytes", filename, tuf.ErrTampered, l.Size)
	}
	return data, nil
}

// openBlob streams a blob; go-containerregistry checks its digest at EOF.
func (s *Store) openBlob(ctx context.Context, d v1.Hash) (io.ReadCloser, error) {
	l, err := remote.Layer(s.repo.Digest(d.String()), s.client.RemoteOptions(ctx)...)
	if err != nil {
		return nil, notFound(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, notFound(err)
	}
	return checkedBlob{rc, d}, nil
}

// checkedBlob reports go-containerregistry's digest or size mismatch at EOF
// as tuf.ErrTampered, so that callers can rely on this one check instead of
// hashing the same bytes again. Its error type is internal to that module,
// so the message prefix is what can be matched (TestOpenBlobTampered pins it).
type checkedBlob struct {
	io.ReadCloser
	d v1.Hash
}

func (b checkedBlob) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && strings.HasPrefix(err.Error(), "error verifying ") {
		err = fmt.Errorf("%w: blob %s: %v", tuf.ErrTampered, b.d, err)
	}
	return n, err
}

// OpenBlob streams the blob with the given sha256 hex digest. The read
// that reaches EOF fails with tuf.ErrTampered when the bytes do not have
// that digest, so the caller must read to EOF and need not hash them again
// for this digest; it must verify the length itself.
func (s *Store) OpenBlob(ctx context.Context, sha256Hex string) (io.ReadCloser, error) {
	h, err := v1.NewHash("sha256:" + sha256Hex)
	if err != nil {
		return nil, fmt.Errorf("bad digest: %w", err)
	}
	return s.openBlob(ctx, h)
}

// BlobSize returns the size the registry reports for a blob.
func (s *Store) BlobSize(ctx context.Context, sha256Hex string) (int64, error) {
	h, err := v1.NewHash("sha256:" + sha256Hex)
	if err != nil {
		return 0, fmt.Errorf("bad digest: %w", err)
	}
	l, err := remote.Layer(s.repo.Digest(h.String()), s.client.RemoteOptions(ctx)...)
	if err != nil {
		return 0, notFound(err)
	}
	n, err := l.Size()
	return n, notFound(err)
}

// PutMetadata uploads a metadata file and tags it; extra tags (e.g.
// "root.json", "timestamp.json") point at the same manifest.
func (s *Store) PutMetadata(ctx context.Context, filename string, data []byte, extraTags ...string) error {
	if err := s.UploadMetadataBlobs(ctx, filename, data); err != nil {
		return err
	}
	return s.TagMetadata(ctx, filename, data, extraTags...)
}

func (s *Store) metadataManifest(filename string, data []byte) *v1.Manifest {
	d, _ := bytesLayer{data: data, mt: MetadataMediaType}.Digest()
	return s.artifact(MetadataMediaType, []v1.Descriptor{{MediaType: MetadataMediaType, Digest: d, Size: int64(len(data)),
		Annotations: map[string]string{TitleAnnotation: filename}}})
}

// UploadMetadataBlobs uploads the blobs of a metadata file's manifest
// without tagging it: a publisher uploads first so that the check of a
// versioned tag and its write are one request apart.
func (s *Store) UploadMetadataBlobs(ctx context.Context, filename string, data []byte) error {
	if err := s.writeBlob(ctx, bytesLayer{data: data, mt: MetadataMediaType}); err != nil {
		return fmt.Errorf("push %s: %w", filename, err)
	}
	if err := s.writeBlob(ctx, bytesLayer{data: emptyConfig, mt: EmptyMediaType}); err != nil {
		return fmt.Errorf("push %s: %w", filename, err)
	}
	return nil
}

// TagMetadata writes the manifest of a metadata file whose blobs are
// uploaded, under its own tag and extraTags.
func (s *Store) TagMetadata(ctx context.Context, filename string, data []byte, extraTags ...string) error {
	tag, err := TagFor(filename)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(s.metadataManifest(filename, data))
	if err != nil {
		return err
	}
	t := rawManifest{raw: raw, mt: types.OCIManifestSchema1}
	for _, tg := range append([]string{tag}, extraTags...) {
		if err := remote.Put(s.repo.Tag(tg), t, s.client.RemoteOptions(ctx)...); err != nil {
			return fmt.Errorf("push %s: tag %s: %w", filename, tg, err)
		}
	}
	return nil
}

// MetadataDigest is the manifest digest PutMetadata writes for filename
// with data: the manifest is deterministic, so equal digests mean equal
// content and a publisher compares tags without downloading them.
func (s *Store) MetadataDigest(filename string, data []byte) (string, error) {
	raw, err := json.Marshal(s.metadataManifest(filename, data))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// TagDigest returns the manifest digest the tag of metadata file filename
// points at, or an error wrapping tuf.ErrNotFound when there is none.
func (s *Store) TagDigest(ctx context.Context, filename string) (string, error) {
	tag, err := TagFor(filename)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(s.repo.Tag(tag), s.client.RemoteOptions(ctx)...)
	if err != nil {
		return "", fmt.Errorf("head %s: %w", filename, notFound(err))
	}
	return desc.Digest.String(), nil
}

func (s *Store) artifact(artifactType string, layers []v1.Descriptor) *v1.Manifest {
	sum := sha256.Sum256(emptyConfig)
	return &v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: artifactType,
		Config: v1.Descriptor{MediaType: EmptyMediaType, Size: int64(len(emptyConfig)),
			Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, Data: emptyConfig},
		Layers: layers}
}

func (s *Store) putManifest(ctx context.Context, m *v1.Manifest, tags ...string) error {
	if err := s.writeBlob(ctx, bytesLayer{data: emptyConfig, mt: EmptyMediaType}); err != nil {
		return err
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	t := rawManifest{raw: raw, mt: types.OCIManifestSchema1}
	for _, tag := range tags {
		if err := remote.Put(s.repo.Tag(tag), t, s.client.RemoteOptions(ctx)...); err != nil {
			return fmt.Errorf("tag %s: %w", tag, err)
		}
	}
	return nil
}

func (s *Store) writeBlob(ctx context.Context, l v1.Layer) error {
	return remote.WriteLayer(s.repo, l, s.client.RemoteOptions(ctx)...)
}

// TargetBlob describes one target (or target part) blob for the keeper manifest.
type TargetBlob struct {
	Name   string // a target name using the blob (the first one, sorted)
	SHA256 string // hex
	Size   int64
}

// PushTargetFile uploads a file as a blob (skipped when the registry has
// it) and returns its sha256 and size. It reads the file twice (hash, then
// upload) and never holds it in memory.
func (s *Store) PushTargetFile(ctx context.Context, path string, progress io.Writer) (TargetBlob, error) {
	return s.PushTargetFileTee(ctx, path, progress, nil)
}

// PushTargetFileTee is PushTargetFile that also writes the file's bytes,
// as they are hashed, to tee (when not nil): the publisher hashes a
// multi-part target's concatenation in the same pass. The upload itself is
// checked by the registry against the digest of that pass.
func (s *Store) PushTargetFileTee(ctx context.Context, path string, progress, tee io.Writer) (TargetBlob, error) {
	f, err := os.Open(path)
	if err != nil {
		return TargetBlob{}, err
	}
	h := sha256.New()
	var w io.Writer = h
	if tee != nil {
		w = io.MultiWriter(h, tee)
	}
	n, err := io.Copy(w, f)
	f.Close()
	if err != nil {
		return TargetBlob{}, fmt.Errorf("hash %s: %w", path, err)
	}
	tb := TargetBlob{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
	l := fileLayer{path: path, size: n, hash: v1.Hash{Algorithm: "sha256", Hex: tb.SHA256}, progress: progress}
	if err := s.writeBlob(ctx, l); err != nil {
		return TargetBlob{}, fmt.Errorf("push %s: %w", path, err)
	}
	return tb, nil
}

// PushTargetBytes uploads a small target held in memory.
func (s *Store) PushTargetBytes(ctx context.Context, data []byte) (TargetBlob, error) {
	l := bytesLayer{data: data, mt: TargetMediaType}
	if err := s.writeBlob(ctx, l); err != nil {
		return TargetBlob{}, err
	}
	d, _ := l.Digest()
	return TargetBlob{SHA256: d.Hex, Size: int64(len(data))}, nil
}

// PutKeeper rewrites the "tuf-targets" manifest so that it references
// exactly the given blobs (deduplicated by digest). Blobs that no longer
// appear become garbage for the registry's GC unless another manifest
// still uses them; trainyard itself never deletes a blob.
func (s *Store) PutKeeper(ctx context.Context, blobs []TargetBlob) error {
	sort.SliceStable(blobs, func(i, j int) bool {
		if blobs[i].Name != blobs[j].Name {
			return blobs[i].Name < blobs[j].Name
		}
		return blobs[i].SHA256 < blobs[j].SHA256
	})
	seen := map[string]bool{}
	var layers []v1.Descriptor
	for _, b := range blobs {
		if seen[b.SHA256] {
			continue
		}
		seen[b.SHA256] = true
		layers = append(layers, v1.Descriptor{MediaType: TargetMediaType, Size: b.Size,
			Digest:      v1.Hash{Algorithm: "sha256", Hex: b.SHA256},
			Annotations: map[string]string{TargetAnnotation: b.Name}})
	}
	if len(layers) == 0 {
		// An OCI manifest needs at least one layer: keep the empty blob.
		sum := sha256.Sum256(emptyConfig)
		layers = []v1.Descriptor{{MediaType: EmptyMediaType, Size: 2, Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, Data: emptyConfig}}
	}
	return s.putManifest(ctx, s.artifact(TargetsArtifact, layers), KeeperTag)
}

// Keeper returns the blobs the "tuf-targets" manifest references.
func (s *Store) Keeper(ctx context.Context) ([]TargetBlob, error) {
	desc, err := remote.Get(s.repo.Tag(KeeperTag), s.client.RemoteOptions(ctx)...)
	if err != nil {
		return nil, notFound(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, err
	}
	var out []TargetBlob
	for _, l := range m.Layers {
		if string(l.MediaType) == TargetMediaType {
			out = append(out, TargetBlob{Name: l.Annotations[TargetAnnotation], SHA256: l.Digest.Hex, Size: l.Size})
		}
	}
	return out, nil
}

// ListRepos lists the registry's repositories (the _catalog API).
func ListRepos(ctx context.Context, client *registry.Client, host string) ([]string, error) {
	if client == nil {
		client = registry.NewClient()
	}
	var nopts []name.Option
	if client.Insecure() {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, nopts...)
	if err != nil {
		return nil, fmt.Errorf("invalid registry %q: %w", host, err)
	}
	repos, err := remote.Catalog(ctx, reg, client.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("list repositories of %s: %w", host, err)
	}
	return repos, nil
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// bytesLayer is a small blob held in memory (metadata, config, trust docs).
type bytesLayer struct {
	data []byte
	mt   types.MediaType
}

func (b bytesLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(b.data))
	return h, err
}
func (b bytesLayer) DiffID() (v1.Hash, error) { return b.Digest() }
func (b bytesLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(b.data)), nil
}
func (b bytesLayer) Uncompressed() (io.ReadCloser, error) { return b.Compressed() }
func (b bytesLayer) Size() (int64, error)                 { return int64(len(b.data)), nil }
func (b bytesLayer) MediaType() (types.MediaType, error)  { return b.mt, nil }

// fileLayer streams a file whose digest is already known.
type fileLayer struct {
	path     string
	size     int64
	hash     v1.Hash
	progress io.Writer
}

func (f fileLayer) Digest() (v1.Hash, error) { return f.hash, nil }
func (f fileLayer) DiffID() (v1.Hash, error) { return f.hash, nil }
func (f fileLayer) Compressed() (io.ReadCloser, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	r := registry.NewProgressReader(fh, f.size, f.progress, "push "+f.path)
	return struct {
		io.Reader
		io.Closer
	}{r, fh}, nil
}
func (f fileLayer) Uncompressed() (io.ReadCloser, error) { return f.Compressed() }
func (f fileLayer) Size() (int64, error)                 { return f.size, nil }
func (f fileLayer) MediaType() (types.MediaType, error)  { return TargetMediaType, nil }
