package seal

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"
)

// failingFile returns the archive's bytes up to n, then an I/O error.
type failingFile struct {
	r io.Reader
	n int64
}

func (f *failingFile) Read(b []byte) (int, error) {
	if f.n <= 0 {
		return 0, &os.PathError{Op: "read", Path: "images.sealed", Err: syscall.EIO}
	}
	if int64(len(b)) > f.n {
		b = b[:f.n]
	}
	n, err := f.r.Read(b)
	f.n -= int64(n)
	return n, err
}

// TestArchiveReadErrorIsNotTampering: a disk that fails mid-archive is an
// I/O error (exit 1), not ErrTampered or ErrMalformed (exit 4).
func TestArchiveReadErrorIsNotTampering(t *testing.T) {
	fx := sealFixture(t)
	f, err := os.Open(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, raw, err := ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	dataKey, err := openKeys(h, fx.keys.DeviceKey, fx.keys.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := newChunkReader(&failingFile{r: f, n: 3 * 4096}, dataKey, h.NoncePrefix, headerHash(raw), h.ChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	_, err = scanLayout(context.Background(), cr, h, nil, nil)
	if err == nil || errors.Is(err, ErrTampered) || errors.Is(err, ErrMalformed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("err = %v, want the EIO, not tampered/malformed", err)
	}
	// A genuinely broken tar inside authenticated plaintext stays malformed.
	if err := wrapStreamErr("x", io.ErrUnexpectedEOF); !errors.Is(err, ErrMalformed) {
		t.Fatalf("broken tar: %v", err)
	}
}

// TestHeaderAndLegacyReadErrorsAreNotDamage: a failing read of the header,
// or of an azaion-v1 archive, is the I/O error (errors.Is finds it), not
// ErrMalformed or ErrTampered; a file that ends inside its header is
// malformed, and a broken azaion-v1 tar keeps its cause under ErrMalformed.
func TestHeaderAndLegacyReadErrorsAreNotDamage(t *testing.T) {
	fx := sealFixture(t)
	b, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{0, 5, 20} {
		_, _, err := ReadHeader(&failingFile{r: strings.NewReader(string(b)), n: n})
		if !errors.Is(err, syscall.EIO) || errors.Is(err, ErrMalformed) {
			t.Fatalf("header read failing after %d bytes: %v", n, err)
		}
	}
	if _, _, err := ReadHeader(strings.NewReader(string(b[:20]))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("archive ending inside its header: %v", err)
	}

	fragment := []byte("0123456789abcdef0123456789abcdef-legacy")
	enc, err := os.ReadFile(makeAzaionArchive(t, fx.images[:1], fragment))
	if err != nil {
		t.Fatal(err)
	}
	cr, err := newCBCReader(&failingFile{r: strings.NewReader(string(enc)), n: int64(len(enc) / 2)}, legacyKey(fragment))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = verifyLegacy(context.Background(), func() (io.ReadCloser, error) { return io.NopCloser(cr), nil })
	if !errors.Is(err, syscall.EIO) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrTampered) {
		t.Fatalf("azaion-v1 read failing mid-archive: %v", err)
	}
	if err := legacyErr("reading tar", io.ErrUnexpectedEOF); !errors.Is(err, ErrMalformed) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("broken azaion-v1 tar: %v", err)
	}
}

// TestRegistryOutageAfterLoadIsNotMissingImage: the registry accepts the
// upload, then fails the check; that is a registry error, not
// ErrExpectation ("image missing", exit 3). A real 404 still is. Both
// formats, which share the check.
func TestRegistryOutageAfterLoadIsNotMissingImage(t *testing.T) {
	fx := sealFixture(t)
	fragment := []byte("0123456789abcdef0123456789abcdef-legacy")
	enc := makeAzaionArchive(t, fx.images[:1], fragment)
	inner := testutil.QuietRegistry()
	mode := "ok"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/") {
			switch mode {
			case "outage":
				http.Error(w, "upstream down", http.StatusForbidden)
				return
			case "gone":
				http.Error(w, "", http.StatusNotFound)
				return
			}
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, f := range []struct {
		name   string
		unseal func() error
	}{
		{"v1", func() error {
			_, err := Unseal(context.Background(), fx.path, fx.keys, NewRegistryTarget(host, nil))
			return err
		}},
		{"azaion-v1", func() error {
			_, err := UnsealLegacy(context.Background(), enc, fragment, NewRegistryTarget(host, nil))
			return err
		}},
	} {
		mode = "outage"
		if err := f.unseal(); err == nil || errors.Is(err, ErrExpectation) || errors.Is(err, ErrTampered) {
			t.Fatalf("%s outage: %v, want a plain registry error", f.name, err)
		}
		mode = "gone"
		if err := f.unseal(); !errors.Is(err, ErrExpectation) {
			t.Fatalf("%s 404 after load: %v, want ErrExpectation", f.name, err)
		}
		mode = "ok"
		if err := f.unseal(); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
	}
}

// TestLayoutCleansKilledRunsLeftovers: .tmp- files a killed unseal left in
// blobs/sha256 are removed by the next unseal into the layout, and that
// unseal leaves none of its own.
func TestLayoutCleansKilledRunsLeftovers(t *testing.T) {
	fx := sealFixture(t)
	dir := t.TempDir()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(blobs, ".tmp-0123456789ab-42")
	if err := os.WriteFile(stale, []byte("partial plaintext"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Unseal(context.Background(), fx.path, fx.keys, NewLayoutTarget(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temp file still there: %v", err)
	}
	assertNoTemp(t, dir)
}

// TestLayoutLockedDuringUnseal: a second unseal into a layout another one
// is writing to is refused rather than deleting its files.
func TestLayoutLockedDuringUnseal(t *testing.T) {
	dir := t.TempDir()
	a := NewLayoutTarget(dir)
	if err := a.Prepare(context.Background(), &Inventory{}); err != nil {
		t.Fatal(err)
	}
	b := NewLayoutTarget(dir)
	if err := b.Prepare(context.Background(), &Inventory{}); err == nil || !strings.Contains(err.Error(), "another unseal") {
		t.Fatalf("second writer: %v", err)
	}
	a.Abort(context.Background())
	if err := b.Prepare(context.Background(), &Inventory{}); err != nil {
		t.Fatalf("after release: %v", err)
	}
	b.Abort(context.Background())
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}
