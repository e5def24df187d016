package train

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ent is a tar entry for test layers: "d" dir, "f" file, "l" symlink.
type ent struct{ name, kind, body string }

func tarOf(t testing.TB, es []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: 0o644}
		switch e.kind {
		case "d":
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case "l":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.body
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func imageOf(t testing.TB, layers ...[]ent) v1.Image {
	t.Helper()
	img := ScratchImage()
	for _, es := range layers {
		data := tarOf(t, es)
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// merged lists what Walk shows under prefix as "name=kind:body".
func merged(t *testing.T, img v1.Image, prefix string) string {
	t.Helper()
	var out []string
	err := Walk(context.Background(), img, func(_, rel string, hdr *tar.Header, r io.Reader) error {
		s := rel + "="
		switch {
		case r != nil:
			b, _ := io.ReadAll(r)
			s += "f:" + string(b)
		case hdr.Typeflag == tar.TypeDir:
			s += "d"
		default:
			s += "l:" + hdr.Linkname
		}
		out = append(out, s)
		return nil
	}, prefix)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestWalkMergesLayers(t *testing.T) {
	base := []ent{{"opt/", "d", ""}, {"opt/r/", "d", ""}, {"opt/r/a", "f", "a0"}, {"opt/r/b", "f", "b0"}, {"opt/r/sub/", "d", ""}, {"opt/r/sub/c", "f", "c0"}, {"opt/rx", "f", "not under prefix"}}
	cases := []struct {
		name  string
		upper []ent
		want  string
	}{
		{"override file", []ent{{"./opt/r/a", "f", "a1"}}, "=d a=f:a1 b=f:b0 sub/=d sub/c=f:c0"},
		{"whiteout file", []ent{{"opt/r/.wh.b", "f", ""}}, "=d a=f:a0 sub/=d sub/c=f:c0"},
		{"whiteout dir", []ent{{"opt/r/.wh.sub", "f", ""}}, "=d a=f:a0 b=f:b0"},
		{"opaque dir", []ent{{"opt/r/", "d", ""}, {"opt/r/.wh..wh..opq", "f", ""}, {"opt/r/n", "f", "new"}}, "=d n=f:new"},
		{"ancestor whiteout", []ent{{"opt/.wh.r", "f", ""}}, ""},
		{"root whiteout of opt", []ent{{".wh.opt", "f", ""}}, ""},
		{"file replaces dir", []ent{{"opt/r/sub", "f", "nowafile"}}, "=d a=f:a0 b=f:b0 sub=f:nowafile"},
		{"ancestor becomes a file", []ent{{"opt", "f", "x"}}, ""},
		{"symlink kept as link", []ent{{"opt/r/a", "l", "/etc/passwd"}}, "=d a=l:/etc/passwd b=f:b0 sub/=d sub/c=f:c0"},
		{"same-layer whiteout hits only lower", []ent{{"opt/r/.wh.a", "f", ""}, {"opt/r/a", "f", "a2"}}, "=d a=f:a2 b=f:b0 sub/=d sub/c=f:c0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := merged(t, imageOf(t, base, c.upper), "opt/r")
			// Directory entries come back without a trailing slash.
			ws := strings.Fields(strings.ReplaceAll(c.want, "sub/=d", "sub=d"))
			sort.Strings(ws)
			want := strings.Join(ws, " ")
			if got != want {
				t.Fatalf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func TestReadFileAndEarlyStop(t *testing.T) {
	img := imageOf(t, []ent{{"opt/train_config.json", "f", "old"}}, []ent{{"opt/train_config.json", "f", "new"}})
	b, err := ReadFile(context.Background(), img, ConfigPath, 10)
	if err != nil || string(b) != "new" {
		t.Fatalf("%q %v", b, err)
	}
	if _, err := ReadFile(context.Background(), img, ConfigPath, 2); err == nil {
		t.Fatal("size limit not enforced")
	}
	if _, err := ReadFile(context.Background(), img, "opt/none", 10); err == nil {
		t.Fatal("missing file found")
	}
}

func TestWalkLessMatchesFilepathWalk(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a/x", "a.txt", "a-b", "b/c/d", "b/c.d", "B", "a/y/z", "ä", "a0"} {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	var want []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		rel, _ := filepath.Rel(dir, p)
		if rel != "." {
			want = append(want, filepath.ToSlash(rel))
		} else {
			want = append(want, "")
		}
		return nil
	})
	sp, _ := NewSpool(t.TempDir())
	defer sp.Close()
	tr, err := TreeFromDir(dir, sp, ResultsDir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range tr.Entries {
		got = append(got, e.Name)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func FuzzWalkLayer(f *testing.F) {
	f.Add(tarOf(f, []ent{{"opt/pht_results/a", "f", "x"}, {"opt/pht_results/.wh..wh..opq", "f", ""}, {"opt/train_config.json", "f", "{}"}}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			return
		}
		img, err := mutate.AppendLayers(ScratchImage(), l)
		if err != nil {
			return
		}
		st, err := ReadState(context.Background(), img, t.TempDir())
		if err != nil {
			return
		}
		defer st.Close()
		for _, tr := range []*Tree{st.Train, st.Results} {
			seen := map[string]bool{}
			for _, e := range tr.Entries {
				if seen[e.Name] || strings.HasPrefix(e.Name, "/") || strings.Contains("/"+e.Name+"/", "/../") {
					t.Fatalf("bad or duplicate entry %q", e.Name)
				}
				seen[e.Name] = true
			}
		}
	})
}

// brokenLayer fails when read: a walk that reaches it did not stop early.
type brokenLayer struct{ v1.Layer }

func (brokenLayer) Uncompressed() (io.ReadCloser, error) { return nil, io.ErrUnexpectedEOF }

func TestReadStateStopsAtTheStateLayer(t *testing.T) {
	base := imageOf(t, []ent{{"bin/sh", "f", "x"}})
	ls, _ := base.Layers()
	broken, err := mutate.Append(ScratchImage(), mutate.Addendum{Layer: brokenLayer{ls[0]}})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := NewStateWriter(t.TempDir(), broken)
	w.File(ConfigPath, 0o644, 2, strings.NewReader("{}"))
	w.File(ResultsDir+"/r", 0o644, 1, strings.NewReader("1"))
	w.Whiteout(UserKeyPath)
	l, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Remove()
	img, err := WithState(broken, l)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(context.Background(), img, t.TempDir())
	if err != nil {
		t.Fatalf("read went below the state layer: %v", err)
	}
	defer st.Close()
	if string(st.Config) != "{}" || len(st.Results.Files()) != 1 {
		t.Fatalf("state %q %d", st.Config, len(st.Results.Files()))
	}
	// Without the state layer the broken layer is read, and the error surfaces.
	if _, err := ReadState(context.Background(), broken, t.TempDir()); err == nil {
		t.Fatal("broken layer not read")
	}
	// ExtractTo writes the tree with names confined to the directory.
	dir := t.TempDir()
	if err := st.Results.ExtractTo(dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "r")); err != nil || string(b) != "1" {
		t.Fatalf("%q %v", b, err)
	}
}
