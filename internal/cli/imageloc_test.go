package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/train"
)

// TestSealLocalForms seals from oci:DIR:TAG, docker-archive:FILE:REF,
// docker-archive:FILE and a plain FILE.tar (no registry anywhere), then
// unseals into an OCI layout with each image expected by name and digest.
func TestSealLocalForms(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	imgs := make([]v1.Image, 4)
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
	maps := filepath.Join(dir, "maps.img")
	if err := train.Save(ctx, imgs[2], "docker-archive:"+maps+":azaion/maps:7", nil); err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(dir, "tools.tar")
	if err := train.Save(ctx, imgs[3], "docker-archive:"+one+":azaion/tools:1", nil); err != nil {
		t.Fatal(err)
	}

	archive := filepath.Join(dir, "site.sealed")
	keys := filepath.Join(dir, "keys")
	locs := []string{"oci:" + layoutDir + ":3.1", "docker-archive:" + two + ":azaion/flights:2", "docker-archive:" + maps, one}
	out, stderr, code := sealCLI(t, "seal", "--images", strings.Join(locs, ","), "--out", archive, "--keys-dir", keys, "--devices", "site-a")
	if code != 0 {
		t.Fatalf("seal: %d %s", code, stderr)
	}
	names := []string{"annotations:3.1", "azaion/flights:2", "azaion/maps:7", "azaion/tools:1"}
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

// TestTrainDigestBaseForms: every location form names the same base image
// for train digest (so the approval digest agrees), and another tag of the
// same layout is another base.
func TestTrainDigestBaseForms(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	code := filepath.Join(dir, "code")
	os.MkdirAll(code, 0o755)
	os.WriteFile(filepath.Join(code, "main.sh"), []byte("echo hi\n"), 0o755)
	base, _ := random.Image(500, 1)
	other, _ := random.Image(500, 1)
	layoutDir := filepath.Join(dir, "base")
	for loc, img := range map[string]v1.Image{"oci:" + layoutDir + ":3.19": base, "oci:" + layoutDir + ":edge": other,
		"docker-archive:" + filepath.Join(dir, "base.img") + ":library/base:3.19": base} {
		if err := train.Save(ctx, img, loc, nil); err != nil {
			t.Fatal(err)
		}
	}
	tarFile := filepath.Join(dir, "base.tar")
	if err := train.Save(ctx, base, tarFile, nil); err != nil {
		t.Fatal(err)
	}
	digest := func(b string) string {
		t.Helper()
		c, out, stderr := execRoot(t, "", "train", "digest", "--code", code, "--entrypoint", "/opt/pht_train/main.sh", "--base", b)
		if c != 0 {
			t.Fatalf("--base %s: %d %s", b, c, stderr)
		}
		return strings.TrimSpace(out)
	}
	want := digest("oci:" + layoutDir + ":3.19")
	for _, b := range []string{"oci:" + layoutDir + "@" + sealMust(base.Digest()).String(), "docker-archive:" + filepath.Join(dir, "base.img"),
		"docker-archive:" + filepath.Join(dir, "base.img") + ":library/base:3.19", tarFile, "docker-archive:" + tarFile} {
		if got := digest(b); got != want {
			t.Errorf("--base %s: %s, want %s", b, got, want)
		}
	}
	for _, b := range []string{"oci:" + layoutDir + ":edge", "scratch"} {
		if digest(b) == want {
			t.Errorf("--base %s gives the same digest as another image", b)
		}
	}
}

// TestSealDockerDaemon seals an image of a real Docker Engine (the test's
// own dockerd under a temp dir) named docker-daemon:REPO:TAG and unseals it
// into an OCI layout, expected by name and the digest seal recorded.
func TestSealDockerDaemon(t *testing.T) {
	host := testutil.Dockerd(t)
	t.Setenv("DOCKER_HOST", host)
	ctx := context.Background()
	img, err := random.Image(3000, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := train.Save(ctx, img, "docker-daemon:azaion/engine:5", nil); err != nil {
		t.Fatal(err)
	}
	fromEngine, err := train.Load(ctx, "docker-daemon:azaion/engine:5", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "azaion/engine:5@" + sealMust(fromEngine.Digest()).String()
	dir := t.TempDir()
	archive, keys := filepath.Join(dir, "e.sealed"), filepath.Join(dir, "keys")
	out, stderr, code := sealCLI(t, "seal", "--images", "docker-daemon:azaion/engine:5", "--out", archive, "--keys-dir", keys, "--devices", "d")
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("seal: %d %s %s", code, out, stderr)
	}
	if out, stderr, code = sealCLI(t, "unseal", archive, "--fragment-file", filepath.Join(keys, "d.fragment"),
		"--device-key", filepath.Join(keys, "d.device-key.json"), "--to", "oci:"+filepath.Join(dir, "site"), "--expect", want); code != 0 {
		t.Fatalf("unseal: %d %s %s", code, out, stderr)
	}
	// An image the engine does not hold: one line, no archive.
	bad := filepath.Join(dir, "bad.sealed")
	if _, stderr, code = sealCLI(t, "seal", "--images", "docker-daemon:azaion/none:1", "--out", bad, "--keys-dir", filepath.Join(dir, "k2")); code == 0 || strings.Count(stderr, "\n") != 1 || fileExists(bad) {
		t.Fatalf("missing engine image: %d %q", code, stderr)
	}
}
