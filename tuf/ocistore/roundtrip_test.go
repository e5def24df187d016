package ocistore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
)

// testStore is a Store on a fresh in-process registry, reached through
// handler when it is not nil (to fail requests on purpose).
func testStore(t *testing.T, wrap func(http.Handler) http.Handler, opts ...registry.Option) (*Store, string) {
	t.Helper()
	var h = testutil.QuietRegistry()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	s, err := New(registry.NewClient(append([]registry.Option{registry.WithInsecure(true)}, opts...)...), host+"/tuf/repo")
	if err != nil {
		t.Fatal(err)
	}
	return s, host
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestMetadataRoundTrip: a metadata file comes back byte for byte under its
// tag and its extra tags, through the go-tuf fetcher too; its manifest
// digest is known before it is written; limits and absence are typed.
func TestMetadataRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, host := testStore(t, nil)
	if s.String() != host+"/tuf/repo" || s.Repository().RepositoryStr() != "tuf/repo" {
		t.Fatalf("store names %s / %s", s, s.Repository().RepositoryStr())
	}
	data := []byte(`{"signed":{"_type":"root","version":1}}`)
	if err := s.PutMetadata(ctx, "1.root.json", data, RootTag); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"1.root.json", "root.json"} {
		got, err := s.GetMetadata(ctx, f, int64(len(data)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %q, %v", f, got, err)
		}
	}
	want, err := s.MetadataDigest("1.root.json", data)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.TagDigest(ctx, "root.json"); err != nil || got != want {
		t.Fatalf("tag digest %s, %v; want %s", got, err, want)
	}
	if other, _ := s.MetadataDigest("1.root.json", append(data, ' ')); other == want {
		t.Fatal("different bytes, same manifest digest")
	}
	if _, err := s.GetMetadata(ctx, "1.root.json", int64(len(data))-1); !errors.Is(err, tuf.ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	// absent: tuf.ErrNotFound and go-tuf's 404, which ends the root walk
	_, err = s.GetMetadata(ctx, "2.root.json", 0)
	var dl *metadata.ErrDownloadHTTP
	if !errors.Is(err, tuf.ErrNotFound) || !errors.As(err, &dl) || dl.StatusCode != 404 {
		t.Fatalf("absent file: %v", err)
	}
	if _, err := s.TagDigest(ctx, "2.root.json"); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("absent tag: %v", err)
	}
	for _, bad := range []string{"root", ".json"} {
		if _, err := s.GetMetadata(ctx, bad, 0); err == nil {
			t.Fatalf("GetMetadata(%q) accepted", bad)
		}
		if _, err := s.TagDigest(ctx, bad); err == nil {
			t.Fatalf("TagDigest(%q) accepted", bad)
		}
		if err := s.PutMetadata(ctx, bad, data); err == nil {
			t.Fatalf("PutMetadata(%q) accepted", bad)
		}
	}
	// go-tuf's fetcher: the URL's last element, unescaped, is the file
	f := s.NewFetcher(ctx)
	if !strings.HasPrefix(s.MetadataURL(), "oci://"+host) {
		t.Fatalf("metadata URL %s", s.MetadataURL())
	}
	got, err := f.DownloadFile(s.MetadataURL()+"/1.root.json", 1<<20, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetcher: %q, %v", got, err)
	}
	if _, err := f.DownloadFile(s.MetadataURL()+"/%zz.json", 1<<20, 0); err == nil {
		t.Fatal("bad escape accepted")
	}
	if _, err := f.DownloadFile(s.MetadataURL()+"/9.root.json", 1<<20, 0); !errors.As(err, &dl) {
		t.Fatalf("fetcher, absent: %v", err)
	}
}

// putManifest tags a hand-made manifest at the metadata tag of file.
func putRawManifest(t *testing.T, s *Store, file string, m *v1.Manifest) {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := TagFor(file)
	if err := remote.Put(s.repo.Tag(tag), rawManifest{raw: raw, mt: types.OCIManifestSchema1}, s.client.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
}

// TestGetMetadataRefusesBadArtifacts: a tag that is not a TUF metadata
// artifact, a layer whose size is not the blob's, a blob that is missing or
// whose bytes are not its digest's: each refused, none read as valid.
func TestGetMetadataRefusesBadArtifacts(t *testing.T) {
	ctx := context.Background()
	on := false
	s, _ := testStore(t, nil, registry.WithTransport(flipTransport{&on}))
	data := []byte(`{"signed":{}}`)
	if err := s.UploadMetadataBlobs(ctx, "1.x.json", data); err != nil {
		t.Fatal(err)
	}
	layer := func(mt string, size int64, digest string) *v1.Manifest {
		h, _ := v1.NewHash("sha256:" + digest)
		return s.artifact(MetadataMediaType, []v1.Descriptor{{MediaType: types.MediaType(mt), Size: size, Digest: h}})
	}
	sum := hexSum(data)
	n := int64(len(data))
	putRawManifest(t, s, "1.wrongtype.json", layer("application/octet-stream", n, sum))
	putRawManifest(t, s, "1.twolayers.json", s.artifact(MetadataMediaType, append(layer(MetadataMediaType, n, sum).Layers, layer(MetadataMediaType, n, sum).Layers...)))
	putRawManifest(t, s, "1.longer.json", layer(MetadataMediaType, n+5, sum))
	putRawManifest(t, s, "1.shorter.json", layer(MetadataMediaType, n-5, sum))
	putRawManifest(t, s, "1.missing.json", layer(MetadataMediaType, n, hexSum([]byte("never pushed"))))
	putRawManifest(t, s, "1.good.json", layer(MetadataMediaType, n, sum))
	for file, want := range map[string]error{
		"1.longer.json":  tuf.ErrTampered,
		"1.shorter.json": tuf.ErrTampered,
		"1.missing.json": tuf.ErrNotFound,
	} {
		if _, err := s.GetMetadata(ctx, file, 0); !errors.Is(err, want) {
			t.Fatalf("%s: want %v, got %v", file, want, err)
		}
	}
	for _, file := range []string{"1.wrongtype.json", "1.twolayers.json"} {
		if _, err := s.GetMetadata(ctx, file, 0); err == nil || !strings.Contains(err.Error(), "not a TUF metadata artifact") {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if got, err := s.GetMetadata(ctx, "1.good.json", 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("good: %q, %v", got, err)
	}
	on = true // every blob byte flipped in transit: the digest check refuses it
	if _, err := s.GetMetadata(ctx, "1.good.json", 0); !errors.Is(err, tuf.ErrTampered) {
		t.Fatalf("flipped blob: %v", err)
	}
}

// TestTargetBlobs: targets pushed from a file (teed) and from memory read
// back through OpenBlob with their sizes; a missing blob and a bad digest
// are refused.
func TestTargetBlobs(t *testing.T) {
	ctx := context.Background()
	s, _ := testStore(t, nil)
	path := filepath.Join(t.TempDir(), "t.bin")
	content := bytes.Repeat([]byte("target "), 1000)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	var tee bytes.Buffer
	tb, err := s.PushTargetFileTee(ctx, path, io.Discard, &tee)
	if err != nil {
		t.Fatal(err)
	}
	if tb.SHA256 != hexSum(content) || tb.Size != int64(len(content)) || !bytes.Equal(tee.Bytes(), content) {
		t.Fatalf("pushed %+v, tee %d bytes", tb, tee.Len())
	}
	if again, err := s.PushTargetFile(ctx, path, nil); err != nil || again != tb {
		t.Fatalf("second push %+v, %v", again, err)
	}
	small, err := s.PushTargetBytes(ctx, []byte("small"))
	if err != nil || small.SHA256 != hexSum([]byte("small")) || small.Size != 5 {
		t.Fatalf("bytes %+v, %v", small, err)
	}
	for _, b := range []TargetBlob{tb, small} {
		n, err := s.BlobSize(ctx, b.SHA256)
		if err != nil || n != b.Size {
			t.Fatalf("size of %s: %d, %v", b.SHA256, n, err)
		}
		rc, err := s.OpenBlob(ctx, b.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || hexSum(got) != b.SHA256 {
			t.Fatalf("read %s: %v", b.SHA256, err)
		}
	}
	missing := hexSum([]byte("never pushed"))
	if _, err := s.BlobSize(ctx, missing); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("size of a missing blob: %v", err)
	}
	if rc, err := s.OpenBlob(ctx, missing); err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, tuf.ErrNotFound) {
			t.Fatalf("missing blob read: %v", err)
		}
	} else if !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	for _, bad := range []string{"", "xyz", missing[:10]} {
		if _, err := s.OpenBlob(ctx, bad); err == nil {
			t.Fatalf("OpenBlob(%q) accepted", bad)
		}
		if _, err := s.BlobSize(ctx, bad); err == nil {
			t.Fatalf("BlobSize(%q) accepted", bad)
		}
	}
	if _, err := s.PushTargetFile(ctx, filepath.Join(t.TempDir(), "absent"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("absent file: %v", err)
	}
}

// TestKeeper: absent at first; then exactly the given blobs, one layer per
// digest, in name order; an empty keeper references none.
func TestKeeper(t *testing.T) {
	ctx := context.Background()
	s, _ := testStore(t, nil)
	if _, err := s.Keeper(ctx); !errors.Is(err, tuf.ErrNotFound) {
		t.Fatalf("no keeper yet: %v", err)
	}
	a, err := s.PushTargetBytes(ctx, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.PushTargetBytes(ctx, []byte("bb"))
	if err != nil {
		t.Fatal(err)
	}
	a.Name, b.Name = "x/a", "b"
	dupe := a
	dupe.Name = "z/also-a"
	if err := s.PutKeeper(ctx, []TargetBlob{dupe, a, b}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Keeper(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []TargetBlob{b, a}) {
		t.Fatalf("keeper %+v", got)
	}
	if err := s.PutKeeper(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Keeper(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty keeper %+v, %v", got, err)
	}
}

// failing answers status to every request while *on, else passes it on.
func failing(status int, on *atomic.Bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if on.Load() {
				w.WriteHeader(status)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestRegistryFailures: a registry error (a 5xx; refused credentials) is
// passed on with its status, never read as "not found" (which would end a
// client's root walk as if the repository had no newer root).
func TestRegistryFailures(t *testing.T) {
	ctx := context.Background()
	for _, status := range []int{http.StatusInsufficientStorage, http.StatusUnauthorized, http.StatusForbidden} {
		var on atomic.Bool
		s, host := testStore(t, failing(status, &on))
		data := []byte(`{}`)
		if err := s.PutMetadata(ctx, "1.root.json", data); err != nil {
			t.Fatal(err)
		}
		blob, err := s.PushTargetBytes(ctx, []byte("blob"))
		if err != nil {
			t.Fatal(err)
		}
		on.Store(true)
		check := func(what string, err error) {
			t.Helper()
			var te *transport.Error
			if !errors.As(err, &te) || te.StatusCode != status {
				t.Fatalf("%d: %s: %v", status, what, err)
			}
			if errors.Is(err, tuf.ErrNotFound) {
				t.Fatalf("%d: %s reads as not found: %v", status, what, err)
			}
		}
		_, err = s.GetMetadata(ctx, "1.root.json", 0)
		check("get metadata", err)
		_, err = s.TagDigest(ctx, "1.root.json")
		check("tag digest", err)
		check("put metadata", s.PutMetadata(ctx, "2.root.json", data))
		_, err = s.BlobSize(ctx, blob.SHA256)
		check("blob size", err)
		_, err = s.PushTargetBytes(ctx, []byte("other"))
		check("push target", err)
		_, err = s.Keeper(ctx)
		check("keeper", err)
		check("put keeper", s.PutKeeper(ctx, []TargetBlob{blob}))
		_, err = ListRepos(ctx, s.client, host)
		check("list repositories", err)
		if rc, err := s.OpenBlob(ctx, blob.SHA256); err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
			check("read blob", err)
		} else {
			check("open blob", err)
		}
	}
}

// TestListRepos: the catalog names the repositories written; a bad host is
// refused before any request.
func TestListRepos(t *testing.T) {
	ctx := context.Background()
	s, host := testStore(t, nil)
	if err := s.PutMetadata(ctx, "1.root.json", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	repos, err := ListRepos(ctx, s.client, host)
	if err != nil || !slices.Equal(repos, []string{"tuf/repo"}) {
		t.Fatalf("repos %v, %v", repos, err)
	}
	if _, err := ListRepos(ctx, nil, "bad host/x"); err == nil {
		t.Fatal("bad host accepted")
	}
	if _, err := New(nil, "UPPER/case"); err == nil {
		t.Fatal("bad repository accepted")
	}
}
