package trainrun

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
}

func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func imageOf(t *testing.T, layers ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for _, b := range layers {
		b := b
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// unpackIn unpacks into dir/root and returns the root; dir holds a canary
// that any escape would overwrite.
func unpackIn(t *testing.T, data []byte, opt UnpackOptions) (string, error) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	os.WriteFile(filepath.Join(dir, "canary"), []byte("intact"), 0o644)
	opt.NoChown = opt.NoChown || os.Geteuid() != 0
	err := UnpackTar(context.Background(), bytes.NewReader(data), root, opt)
	if b, _ := os.ReadFile(filepath.Join(dir, "canary")); string(b) != "intact" {
		t.Fatalf("unpack escaped its root: canary = %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("unpack created files beside its root: %v", entries)
	}
	return root, err
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for name, data := range map[string][]byte{
		"dotdot":             tarOf(t, entry{name: "../canary", typ: tar.TypeReg, body: "pwned"}),
		"nested dotdot":      tarOf(t, entry{name: "a/../../canary", typ: tar.TypeReg, body: "pwned"}),
		"absolute dotdot":    tarOf(t, entry{name: "/../canary", typ: tar.TypeReg, body: "pwned"}),
		"symlink then write": tarOf(t, entry{name: "up", link: "..", typ: tar.TypeSymlink}, entry{name: "up/canary", typ: tar.TypeReg, body: "pwned"}),
		"absolute symlink dir": tarOf(t, entry{name: "etc", link: "/", typ: tar.TypeSymlink},
			entry{name: "etc/canary", typ: tar.TypeReg, body: "pwned"}),
		"hardlink outside": tarOf(t, entry{name: "h", link: "../canary", typ: tar.TypeLink}),
		"bad type":         tarOf(t, entry{name: "x", typ: 'Z'}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := unpackIn(t, data, UnpackOptions{})
			if !errors.Is(err, ErrUnsafeImage) {
				t.Fatalf("expected ErrUnsafeImage, got %v", err)
			}
		})
	}
}

func TestUnpackWritesTree(t *testing.T) {
	data := tarOf(t,
		entry{name: "./usr/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "/usr/bin/tool", typ: tar.TypeReg, body: "#!", mode: 0o4755},
		entry{name: "bin", link: "usr/bin", typ: tar.TypeSymlink},
		entry{name: "usr/bin/alias", link: "usr/bin/tool", typ: tar.TypeLink},
		entry{name: "deep/er/file", typ: tar.TypeReg, body: "x"},
		entry{name: "dev/null", typ: tar.TypeChar},
		entry{name: "abs", link: "/etc/passwd", typ: tar.TypeSymlink},
	)
	root, err := unpackIn(t, data, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "bin/tool"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSetuid != 0 || fi.Mode().Perm() != 0o755 {
		t.Fatalf("mode = %v, want 0755 without setuid", fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(root, "usr/bin/alias")); string(b) != "#!" {
		t.Fatalf("hard link content %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(root, "abs")); l != "/etc/passwd" {
		t.Fatalf("absolute symlink kept for the container: %q", l)
	}
	if _, err := os.Lstat(filepath.Join(root, "dev/null")); err == nil {
		t.Fatal("device node created")
	}
}

func TestUnpackImageAppliesWhiteouts(t *testing.T) {
	img := imageOf(t,
		tarOf(t, entry{name: "keep", typ: tar.TypeReg, body: "1"}, entry{name: "gone", typ: tar.TypeReg, body: "secret"},
			entry{name: "d/old", typ: tar.TypeReg, body: "old"}),
		tarOf(t, entry{name: ".wh.gone", typ: tar.TypeReg}, entry{name: "keep", typ: tar.TypeReg, body: "2"},
			entry{name: "d/.wh..wh..opq", typ: tar.TypeReg}, entry{name: "d/new", typ: tar.TypeReg, body: "new"}),
	)
	dir := t.TempDir()
	if err := UnpackImage(context.Background(), img, dir, UnpackOptions{NoChown: os.Geteuid() != 0}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "keep")); string(b) != "2" {
		t.Fatalf("upper layer did not win: %q", b)
	}
	for _, p := range []string{"gone", ".wh.gone", "d/old"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s should have been whited out", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "d/new")); err != nil {
		t.Error(err)
	}
}

func TestUnpackLimits(t *testing.T) {
	data := tarOf(t, entry{name: "a", typ: tar.TypeReg, body: strings.Repeat("x", 100)}, entry{name: "b", typ: tar.TypeReg, body: "y"})
	if _, err := unpackIn(t, data, UnpackOptions{MaxBytes: 50}); !errors.Is(err, ErrUnsafeImage) {
		t.Fatalf("size limit: %v", err)
	}
	if _, err := unpackIn(t, data, UnpackOptions{MaxEntries: 1}); !errors.Is(err, ErrUnsafeImage) {
		t.Fatalf("entry limit: %v", err)
	}
	if _, err := unpackIn(t, data, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := unpackIn(t, data[:550], UnpackOptions{}); err == nil {
		t.Fatal("truncated tar accepted")
	}
}

func TestUnpackStripComponents(t *testing.T) {
	data := tarOf(t, entry{name: "pht_results/", typ: tar.TypeDir}, entry{name: "pht_results/r.csv", typ: tar.TypeReg, body: "1"})
	root, err := unpackIn(t, data, UnpackOptions{StripComponents: 1})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "r.csv")); string(b) != "1" {
		t.Fatalf("got %q", b)
	}
}

func FuzzUnpackTar(f *testing.F) {
	f.Add(tarOf(f, entry{name: "a/b", typ: tar.TypeReg, body: "x"}))
	f.Add(tarOf(f, entry{name: "l", link: "..", typ: tar.TypeSymlink}, entry{name: "l/x", typ: tar.TypeReg, body: "x"}))
	f.Add(tarOf(f, entry{name: "h", link: "a/../../x", typ: tar.TypeLink}))
	f.Fuzz(func(t *testing.T, data []byte) {
		// os.MkdirTemp rather than t.TempDir: the latter makes fuzzing crawl.
		dir, err := os.MkdirTemp("", "trainrun-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		root := filepath.Join(dir, "root")
		os.Mkdir(root, 0o755)
		UnpackTar(context.Background(), bytes.NewReader(data), root, UnpackOptions{MaxBytes: 1 << 20, MaxEntries: 64, NoChown: true})
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("unpack wrote beside its root: %v", entries)
		}
	})
}

func TestResolveUser(t *testing.T) {
	fsys := fstest.MapFS{
		"etc/passwd": {Data: []byte("root:x:0:0:root:/root:/bin/sh\n# comment\nbroken\nanalyst:x:1001:2002::/home:/bin/sh\n")},
		"etc/group":  {Data: []byte("root:x:0:\nstaff:x:50:\n")},
	}
	for in, want := range map[string][2]uint32{
		"": {0, 0}, "0": {0, 0}, "1001": {1001, 2002}, "1234": {1234, 0}, "analyst": {1001, 2002},
		"analyst:staff": {1001, 50}, "analyst:7": {1001, 7}, "5:6": {5, 6},
	} {
		uid, gid, err := resolveUser(fsys, in)
		if err != nil || uid != want[0] || gid != want[1] {
			t.Errorf("%q -> %d:%d %v, want %v", in, uid, gid, err, want)
		}
	}
	for _, bad := range []string{"nobody", "analyst:nogroup", "1:x"} {
		if _, _, err := resolveUser(fsys, bad); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%q: expected ErrInvalidSpec, got %v", bad, err)
		}
	}
}

func FuzzParsePasswd(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/sh\n"))
	f.Add([]byte("a:b:99999999999:1\n::::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _ := parsePasswd(bytes.NewReader(data))
		for _, e := range entries {
			if e.name == "" || strings.Contains(e.name, ":") {
				t.Fatalf("bad entry %+v", e)
			}
		}
	})
}
