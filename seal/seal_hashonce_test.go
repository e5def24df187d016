package seal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// lyingLayers is an image whose layer streams are one byte off their digest.
type lyingLayers struct{ v1.Image }

func (l lyingLayers) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	ly, err := l.Image.LayerByDigest(h)
	return lyingLayer{ly}, err
}

type lyingLayer struct{ v1.Layer }

func (l lyingLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	b[len(b)/2] ^= 1
	return io.NopCloser(bytes.NewReader(b)), nil
}

// TestSealChecksUnverifiedLayers: an image that does not check its own
// layers (Verified false) gets Seal's SHA-256, and a wrong byte fails the
// seal with ErrTampered and leaves no archive.
func TestSealChecksUnverifiedLayers(t *testing.T) {
	img, err := random.Image(5000, 2)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "x.sealed")
	_, err = SealFile(context.Background(), out, []Source{{Name: "a/b:1", Image: lyingLayers{img}}})
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("lying layer: %v", err)
	}
	if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("archive left after a refused seal: %v", serr)
	}
	// The same image, honest: seals.
	if _, err := SealFile(context.Background(), out, []Source{{Name: "a/b:1", Image: img}}); err != nil {
		t.Fatal(err)
	}
}

// TestSealVerifiedSourceStillRefusesBadBlob: with Verified set (one hash,
// go-containerregistry's), a registry that serves a changed layer still
// fails the seal: what Seal no longer repeats, remote.Image does.
func TestSealVerifiedSourceStillRefusesBadBlob(t *testing.T) {
	reg := testutil.QuietRegistry()
	corrupt := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if corrupt && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			if len(b) > 1000 { // a layer, not the config
				b[len(b)/2] ^= 1
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(b)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	img, err := random.Image(5000, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/a/b:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, bad := range []bool{false, true} {
		corrupt = bad
		ri, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "x.sealed")
		os.Remove(out)
		_, err = SealFile(context.Background(), out, []Source{{Name: "a/b:1", Image: ri, Verified: true}})
		if bad && err == nil {
			t.Fatal("a changed layer from the registry was sealed")
		}
		if !bad && err != nil {
			t.Fatal(err)
		}
		if bad {
			t.Logf("changed layer: %v", err)
		}
	}
}
