package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/trainyard/trainyard/train"
)

// TestSealLocalForms seals from oci:DIR:TAG, docker-archive:FILE:REF and a
// plain FILE.tar (no registry anywhere), then unseals into an OCI layout
// with each image expected by name and digest.
func TestSealLocalForms(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	imgs := make([]v1.Image, 3)
	for i := range imgs {
		var err error
		if imgs[i], err = random.Image(2000, 2); err != nil {
			t.Fatal(err)
		}
	}
	// skopeo's "oci:annotations:3.1": directory annotations, tag 3.1, and
	// another tag beside it that must not be picked.
	layoutDir := filepath.Join(dir, "annotations")
	other, _ := random.Image(100, 1)
	for loc, img := range map[string]v1.Image{"oci:" + layoutDir + ":3.1": imgs[0], "oci:" + layoutDir + ":old": other} {
		if err := train.Save(ctx, img, loc, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A two-image archive picked by RepoTag, and a one-image FILE.tar.
	two := filepath.Join(dir, "two.tar")
	if err := tarball.MultiRefWriteToFile(two, map[name.Reference]v1.Image{
		sealMust(name.NewTag("azaion/flights:2")): imgs[1], sealMust(name.NewTag("azaion/unused:1")): other}); err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(dir, "maps.tar")
	if err := train.Save(ctx, imgs[2], "docker-archive:"+one+":azaion/maps:7", nil); err != nil {
		t.Fatal(err)
	}

	archive := filepath.Join(dir, "site.sealed")
	keys := filepath.Join(dir, "keys")
	locs := []string{"oci:" + layoutDir + ":3.1", "docker-archive:" + two + ":azaion/flights:2", one}
	out, stderr, code := sealCLI(t, "seal", "--images", strings.Join(locs, ","), "--out", archive, "--keys-dir", keys, "--devices", "site-a")
	if code != 0 {
		t.Fatalf("seal: %d %s", code, stderr)
	}
	names := []string{"annotations:3.1", "azaion/flights:2", "azaion/maps:7"}
	args := []string{"unseal", archive, "--fragment-file", filepath.Join(keys, "site-a.fragment"),
		"--device-key", filepath.Join(keys, "site-a.device-key.json"), "--to", "oci:" + filepath.Join(dir, "site")}
	for i, n := range names {
		want := n + "@" + sealMust(imgs[i].Digest()).String()
		if !strings.Contains(out, want) {
			t.Fatalf("seal output lacks %s:\n%s", want, out)
		}
		args = append(args, "--expect", want)
	}
	if out, stderr, code = sealCLI(t, args...); code != 0 {
		t.Fatalf("unseal: %d %s %s", code, out, stderr)
	}

	// Refusals, each one line and nothing written: a tag the layout lacks, a
	// RepoTag the archive lacks, a layout image with no name to load it under.
	for _, tc := range []struct{ loc, want string }{
		{"oci:" + layoutDir + ":nope", `no image tagged "nope"`},
		{"docker-archive:" + two + ":azaion/none:1", "azaion/none:1"},
		{"oci:" + layoutDir + "@" + sealMust(imgs[0].Digest()).String(), "carries no image name"},
		{"./annotations", "is a path"},
	} {
		bad := filepath.Join(dir, "bad.sealed")
		_, stderr, code := sealCLI(t, "seal", "--images", tc.loc, "--out", bad, "--keys-dir", filepath.Join(dir, "badkeys"))
		if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Fatalf("%s: %d %q", tc.loc, code, stderr)
		}
		if fileExists(bad) {
			t.Fatalf("%s: archive written", tc.loc)
		}
	}
}
