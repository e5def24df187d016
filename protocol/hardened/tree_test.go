package hardened

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

func manifestOf(t *testing.T, m fstest.MapFS) string {
	t.Helper()
	man, err := TreeManifest(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return man.Digest()
}

// The manifest binds names, modes and boundaries: every PHT hash collision
// of research/pht.md §4.2 gives a different digest here.
func TestManifestBindsNamesModesBoundaries(t *testing.T) {
	base := fstest.MapFS{
		"a.py":     {Data: []byte("print(1)\n"), Mode: 0o644},
		"lib/b.py": {Data: []byte("X = 42\n"), Mode: 0o644},
	}
	d0 := manifestOf(t, base)
	variants := map[string]fstest.MapFS{
		"renamed":         {"c.py": base["a.py"], "lib/b.py": base["lib/b.py"]},
		"moved dir":       {"a.py": base["a.py"], "lib2/b.py": base["lib/b.py"]},
		"bytes moved":     {"a.py": {Data: []byte("print(1)\nX"), Mode: 0o644}, "lib/b.py": {Data: []byte(" = 42\n"), Mode: 0o644}},
		"swapped":         {"a.py": base["lib/b.py"], "lib/b.py": base["a.py"]},
		"mode":            {"a.py": {Data: base["a.py"].Data, Mode: 0o755}, "lib/b.py": base["lib/b.py"]},
		"extra file":      {"a.py": base["a.py"], "lib/b.py": base["lib/b.py"], "lib/os.py": {Data: nil}},
		"extra empty dir": {"a.py": base["a.py"], "lib/b.py": base["lib/b.py"], "x": {Mode: os.ModeDir | 0o755}},
	}
	for name, v := range variants {
		if manifestOf(t, v) == d0 {
			t.Errorf("%s: same manifest digest", name)
		}
	}
	if manifestOf(t, base) != d0 {
		t.Error("manifest digest not deterministic")
	}
}

func TestPostRunRefusesSymlinks(t *testing.T) {
	n := newTestNet(t)
	env, code := n.create(t)
	dir := t.TempDir()
	s, err := PreRun(context.Background(), Party{ID: "st-a", Key: n.stations["st-a"], Trust: n.trust}, Train{Envelope: env, Code: bytes.NewReader(code)}, Dirs{Code: filepath.Join(dir, "c"), Results: filepath.Join(dir, "r")})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "r", "leak")); err != nil {
		t.Fatal(err)
	}
	_, err = s.PostRun(context.Background(), filepath.Join(dir, "r"), new(bytes.Buffer))
	wantErr(t, err, ErrUnsupported, "leak")
}

func tarOf(t testing.TB, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestUnpackTreeRefusesHostileArchives(t *testing.T) {
	reg := func(name string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}
	}
	dir := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	cases := map[string][]*tar.Header{
		"dot-dot":       {reg("../evil")},
		"absolute":      {reg("/etc/evil")},
		"inner dot-dot": {dir("a/"), reg("a/../../evil")},
		"no parent":     {reg("a/b")},
		"duplicate":     {reg("a"), reg("a")},
		"symlink":       {{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}},
		"hardlink":      {reg("a"), {Name: "h", Typeflag: tar.TypeLink, Linkname: "a"}},
		"device":        {{Name: "d", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}},
		"setuid":        {{Name: "s", Typeflag: tar.TypeReg, Mode: 0o4755}},
		"backslash":     {reg(`a\b`)},
	}
	for name, hdrs := range cases {
		out := t.TempDir()
		_, err := unpackTree(context.Background(), bytes.NewReader(tarOf(t, hdrs...)), out)
		if !errors.Is(err, ErrTampered) {
			t.Errorf("%s: err = %v, want ErrTampered", name, err)
		}
	}
	// A good one with a read-only directory unpacks and reproduces modes.
	out := t.TempDir()
	m, err := unpackTree(context.Background(), bytes.NewReader(tarOf(t, &tar.Header{Name: "ro/", Typeflag: tar.TypeDir, Mode: 0o555},
		&tar.Header{Name: "ro/f", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3})), out)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(filepath.Join(out, "ro"), 0o755)
	fi, err := os.Stat(filepath.Join(out, "ro", "f"))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 3 {
		t.Fatalf("unpacked file: %v %v", fi, err)
	}
	again, err := TreeManifest(context.Background(), os.DirFS(out))
	if err != nil || again.Digest() != m.Digest() {
		t.Fatalf("manifest of unpacked tree differs: %v", err)
	}
}
