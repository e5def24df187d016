package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseImageLocation(t *testing.T) {
	// Paths that exist in this fake file system: a directory and a file
	// whose names contain ':'.
	stat := func(p string) (bool, bool) {
		switch p {
		case "dir:v1":
			return true, true
		case "save:2024.tar":
			return true, false
		}
		return false, false
	}
	for _, tc := range []struct {
		in   string
		want Location
		err  bool
	}{
		{in: "scratch", want: Location{Kind: "scratch"}},
		{in: "", want: Location{Kind: "scratch"}},
		{in: "oci:/var/t1", want: Location{Kind: "oci", Path: "/var/t1"}},
		{in: "oci:/var/t1:v2", want: Location{Kind: "oci", Path: "/var/t1", Tag: "v2"}},
		{in: "oci:./a:b:latest", want: Location{Kind: "oci", Path: "./a:b", Tag: "latest"}},
		{in: "oci:dir:v1", want: Location{Kind: "oci", Path: "dir:v1"}}, // the directory exists
		{in: "oci:t1@" + testDigest, want: Location{Kind: "oci", Path: "t1", Digest: testDigest}},
		{in: "oci:t1@sha256:short", err: true},
		{in: "oci:t1@v2:x", want: Location{Kind: "oci", Path: "t1@v2", Tag: "x"}},
		{in: "oci:t1:no/slash", want: Location{Kind: "oci", Path: "t1:no/slash"}},
		{in: "oci:t1:", err: true},
		{in: "oci:", err: true},
		{in: "docker-archive:img.tar", want: Location{Kind: "archive", Path: "img.tar"}},
		{in: "docker-archive:img.tar:alpine:3.19", want: Location{Kind: "archive", Path: "img.tar", Ref: "alpine:3.19"}},
		{in: "docker-archive:img.tar:localhost:5000/a/b:1", want: Location{Kind: "archive", Path: "img.tar", Ref: "localhost:5000/a/b:1"}},
		{in: "docker-archive:save:2024.tar", want: Location{Kind: "archive", Path: "save:2024.tar"}},
		{in: "docker-archive:new:2024.tar:x:1", want: Location{Kind: "archive", Path: "new:2024.tar", Ref: "x:1"}},
		{in: "docker-archive:img.tar:alpine", want: Location{Kind: "archive", Path: "img.tar:alpine"}}, // no tag: a file name
		{in: "docker-archive:img.tar:", err: true},
		{in: "docker-archive:", err: true},
		{in: "train.tar", want: Location{Kind: "archive", Path: "train.tar"}},
		{in: "docker-daemon:train:latest", want: Location{Kind: "daemon", Path: "train:latest"}},
		{in: "docker-daemon:Not A Ref", err: true},
		{in: "localhost:5000/t/a:1", want: Location{Kind: "registry", Path: "localhost:5000/t/a:1"}},
		{in: "ghcr.io/a/b@" + testDigest, want: Location{Kind: "registry", Path: "ghcr.io/a/b@" + testDigest}},
		{in: "./code", err: true},
		{in: "/abs/x.tar.gz", err: true},
		{in: "UPPER/case:1", err: true},
	} {
		got, err := parseLocation(tc.in, stat)
		if tc.err {
			if err == nil || !errors.Is(err, ErrLocation) {
				t.Errorf("%q: want ErrLocation, got %+v, %v", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseImageLocation: no input panics, and what parses prints back to
// a location that parses to the same thing.
func FuzzParseImageLocation(f *testing.F) {
	for _, s := range []string{"scratch", "oci:/a", "oci:a:b", "oci:a@" + testDigest, "docker-archive:f.tar:x:1",
		"f.tar", "docker-daemon:x:1", "localhost:5000/a:1", "oci:", "docker-archive::", "oci:a:b@c:d"} {
		f.Add(s)
	}
	none := func(string) (bool, bool) { return false, false }
	f.Fuzz(func(t *testing.T, s string) {
		l, err := parseLocation(s, none)
		if err != nil {
			if !errors.Is(err, ErrLocation) {
				t.Fatalf("%q: error without ErrLocation: %v", s, err)
			}
			return
		}
		again, err := parseLocation(l.String(), none)
		if err != nil || again != l {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, l, l.String(), again, err)
		}
	})
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestOCITags: oci:DIR:TAG writes beside other tags and reads back by tag
// and by digest; a bare oci:DIR still reads the last image and writes the
// only one.
func TestOCITags(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "layout")
	a, _ := random.Image(100, 1)
	b, _ := random.Image(100, 1)
	c, _ := random.Image(100, 1)
	for loc, img := range map[string]v1.Image{"oci:" + dir + ":a": a, "oci:" + dir + ":b": b} {
		if err := Save(ctx, img, loc, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Replacing tag a keeps b and drops a's old image and blobs.
	if err := Save(ctx, c, "oci:"+dir+":a", nil); err != nil {
		t.Fatal(err)
	}
	for loc, want := range map[string]v1.Image{"oci:" + dir + ":a": c, "oci:" + dir + ":b": b, "oci:" + dir + "@" + digestOf(t, b).String(): b} {
		got, err := Load(ctx, loc, nil)
		if err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		if digestOf(t, got) != digestOf(t, want) {
			t.Fatalf("%s: wrong image", loc)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", digestOf(t, a).Hex)); !os.IsNotExist(err) {
		t.Fatalf("replaced image's manifest kept: %v", err)
	}
	for _, loc := range []string{"oci:" + dir + ":nope", "oci:" + dir + "@" + digestOf(t, a).String()} {
		if _, err := Load(ctx, loc, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: want ErrNotFound, got %v", loc, err)
		}
	}
	if err := Save(ctx, a, "oci:"+dir+"@"+digestOf(t, a).String(), nil); !errors.Is(err, ErrLocation) {
		t.Fatalf("save to a digest: %v", err)
	}
	// A bare oci:DIR write leaves only that image.
	if err := Save(ctx, a, "oci:"+dir, nil); err != nil {
		t.Fatal(err)
	}
	lp, _ := layout.FromPath(dir)
	idx, _ := lp.ImageIndex()
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != digestOf(t, a) {
		t.Fatalf("bare write kept %d entries", len(im.Manifests))
	}
	// A directory whose name has a ':' is still a directory when it exists.
	colon := filepath.Join(t.TempDir(), "x:1")
	if err := Save(ctx, b, "oci:"+colon+":t", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(ctx, "oci:"+colon, nil); err != nil || digestOf(t, got) != digestOf(t, b) {
		t.Fatalf("dir with colon: %v", err)
	}
}

// TestArchiveRefs: docker-archive:FILE:REF picks the image by RepoTag from
// a two-image tarball; LoadNamed reports a single image's RepoTag.
func TestArchiveRefs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, _ := random.Image(100, 1)
	b, _ := random.Image(100, 1)
	ta, _ := name.NewTag("example.org/a:1")
	tb, _ := name.NewTag("b:2")
	two := filepath.Join(dir, "two.tar")
	if err := tarball.MultiRefWriteToFile(two, map[name.Reference]v1.Image{ta: a, tb: b}); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]v1.Image{"example.org/a:1": a, "b:2": b} {
		got, n, err := LoadNamed(ctx, "docker-archive:"+two+":"+ref, nil)
		if err != nil || digestOf(t, got) != digestOf(t, want) || n != ref {
			t.Fatalf("%s: %v %q", ref, err, n)
		}
	}
	if _, err := Load(ctx, "docker-archive:"+two+":c:3", nil); err == nil || !strings.Contains(err.Error(), "c:3") {
		t.Fatalf("missing ref: %v", err)
	}
	if _, err := Load(ctx, two, nil); err == nil || !strings.Contains(err.Error(), "holds 2 images") || !strings.Contains(err.Error(), "b:2") {
		t.Fatalf("two images, no ref: %v", err)
	}
	one := filepath.Join(dir, "one.tar")
	if err := Save(ctx, a, "docker-archive:"+one+":site/annotations:3.1", nil); err != nil {
		t.Fatal(err)
	}
	for _, loc := range []string{one, "docker-archive:" + one} {
		got, n, err := LoadNamed(ctx, loc, nil)
		if err != nil || digestOf(t, got) != digestOf(t, a) || n != "site/annotations:3.1" {
			t.Fatalf("%s: %v %q", loc, err, n)
		}
	}
}
