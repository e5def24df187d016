package phtv2

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/train"
)

// Markers that appear only in plaintext: the train code and the results.
const (
	codeMarker   = "PLAINTEXT-CODE-7f3a"
	resultMarker = "PLAINTEXT-RESULT-91c2"
)

// layerOf is an uncompressed-tar layer holding files (dirs end in "/").
func layerOf(t testing.TB, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasSuffix(n, "/") {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: 0o755})
			continue
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(files[n]))})
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// baseImage is a master image with one layer outside the train paths.
func baseImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := mutate.Append(train.ScratchImage(), mutate.Addendum{
		Layer:   layerOf(t, map[string]string{"usr/bin/python3": "\x7fELF python", "opt/": ""}),
		History: v1.History{CreatedBy: "master image"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// markedTrain builds a two-stop train on base whose code holds codeMarker.
func markedTrain(t testing.TB, base v1.Image) v1.Image {
	t.Helper()
	k := testKeys(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"entrypoint.py": "print('" + codeMarker + "')\n"})
	out, err := Build(context.Background(), base, BuildSpec{
		Dir: dir,
		Route: []RouteStop{
			{Station: "s1", PublicKey: &k["s1"].PublicKey},
			{Station: "s2", PublicKey: &k["s2"].PublicKey},
		},
		CreatorID: "u", CreatorKey: k["user"], TrainID: "t-plain",
	}, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return out.Image
}

// requireSealed walks every layer of img and fails on any file under
// /opt/pht_train or /opt/pht_results that is plaintext: one that holds a
// marker, one outside the top layer, or one that does not decrypt with the
// key the creator unwraps from the config. It also fails on a marker
// anywhere else in any layer.
func requireSealed(t *testing.T, img v1.Image) {
	t.Helper()
	ctx := context.Background()
	raw, err := train.ReadFile(ctx, img, train.ConfigPath, train.MaxConfigSize)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := train.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, _ := cfg.Creator.EncryptedKey.Bytes()
	key, err := UnwrapKey(testKeys(t)["user"], wrapped)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
			if bytes.Contains(b, []byte(codeMarker)) || bytes.Contains(b, []byte(resultMarker)) {
				t.Errorf("layer %d: /%s holds plaintext", i, name)
			}
			under := strings.HasPrefix(name, train.TrainDir+"/") || strings.HasPrefix(name, train.ResultsDir+"/")
			if !under || hdr.Typeflag == tar.TypeDir || strings.HasPrefix(path.Base(name), ".wh.") {
				continue
			}
			files++
			if i != len(layers)-1 {
				t.Errorf("layer %d of %d: /%s below the state layer", i, len(layers), name)
			}
			if err := rawCBCDecrypt(io.Discard, bytes.NewReader(b), key); err != nil {
				t.Errorf("layer %d: /%s is not ciphertext under the train key: %v", i, name, err)
			}
		}
		rc.Close()
	}
	if files == 0 {
		t.Fatal("no train files found at all")
	}
}

// requireResult checks that the creator sees result name holding want.
func requireResult(t *testing.T, img v1.Image, name, want string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := DecryptResults(context.Background(), img, testKeys(t)["user"], dir); err != nil {
		t.Fatal(err)
	}
	b, err := readFileIn(dir, name)
	if err != nil || string(b) != want {
		t.Fatalf("result %s = %q, %v; want %q", name, b, err, want)
	}
}

// requireBase checks the output kept exactly base's layers below the state.
func requireBase(t *testing.T, img, base v1.Image) {
	t.Helper()
	got, _ := img.Layers()
	want, _ := base.Layers()
	if len(got) != len(want)+1 {
		t.Fatalf("%d layers, want base's %d + 1 state layer", len(got), len(want))
	}
	for i := range want {
		a, _ := got[i].Digest()
		b, _ := want[i].Digest()
		if a != b {
			t.Fatalf("layer %d is %s, base has %s", i, a, b)
		}
	}
	cf, _ := img.ConfigFile()
	if !train.IsStateLayer(cf.History[len(cf.History)-1]) {
		t.Fatal("top layer is not marked as the state layer")
	}
}

func preRun(t *testing.T, img v1.Image, id string) v1.Image {
	t.Helper()
	pre, err := PreRun(context.Background(), img, station(t, id), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatalf("pre-run at %s: %v", id, err)
	}
	t.Cleanup(func() { pre.Close() })
	return pre.Image
}

func postRun(t *testing.T, img v1.Image, id string, opts ...Option) (v1.Image, error) {
	t.Helper()
	post, err := PostRun(context.Background(), img, station(t, id), append(opts, WithTempDir(t.TempDir()))...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { post.Close() })
	return post.Image, nil
}

// stripState removes the state-layer markers from img's history: the image
// then looks like one the Python library made with docker commit.
func stripState(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	for i := range cf.History {
		cf.History[i].Comment = ""
		cf.History[i].CreatedBy = "/bin/sh -c #(nop) docker commit"
	}
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPostRunNoPlaintextTrainyardRun(t *testing.T) {
	base := baseImage(t)
	pre := preRun(t, markedTrain(t, base), "s1")
	ran, layer, err := train.ReplaceResults(context.Background(), pre, resultsDir(t, map[string]string{"r.txt": resultMarker}), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Remove()
	out, err := postRun(t, ran, "s1")
	if err != nil {
		t.Fatal(err)
	}
	requireSealed(t, out)
	requireBase(t, out, base)
	requireResult(t, out, "r.txt", resultMarker)
}

func TestPostRunNoPlaintextExternalRun(t *testing.T) {
	base := baseImage(t)
	pre := preRun(t, markedTrain(t, base), "s1")
	// docker commit of the run: results and scratch files above the state.
	ran, err := mutate.Append(pre, mutate.Addendum{
		Layer: layerOf(t, map[string]string{
			"opt/pht_results/out/r.txt": resultMarker,
			"tmp/scratch.csv":           resultMarker,
		}),
		History: v1.History{CreatedBy: "docker commit"},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := postRun(t, ran, "s1")
	if err != nil {
		t.Fatal(err)
	}
	requireSealed(t, out)
	requireBase(t, out, base)
	requireResult(t, out, "out/r.txt", resultMarker)

	// The next station gets the results, and its stop is sealed as well.
	next := preRun(t, out, "s2")
	ran2, err := mutate.Append(next, mutate.Addendum{Layer: layerOf(t, map[string]string{"opt/pht_results/s2.txt": resultMarker})})
	if err != nil {
		t.Fatal(err)
	}
	out2, err := postRun(t, ran2, "s2")
	if err != nil {
		t.Fatal(err)
	}
	requireSealed(t, out2)
	requireBase(t, out2, base)
	requireResult(t, out2, "s2.txt", resultMarker)
}

// pythonStyle stacks what a non-rebased Python station leaves: the build
// layers, a pre-run commit with decrypted train files and a run commit
// with plaintext results, none marked as a state layer.
func pythonStyle(t *testing.T, base v1.Image) v1.Image {
	t.Helper()
	built := markedTrain(t, base)
	pre := preRun(t, built, "s1")
	layers, _ := pre.Layers()
	img, err := mutate.Append(built, mutate.Addendum{Layer: layers[len(layers)-1]})
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layerOf(t, map[string]string{
		"opt/pht_results/r.txt": resultMarker, "root/.cache/x": "cache",
	})})
	if err != nil {
		t.Fatal(err)
	}
	return stripState(t, img)
}

func TestPostRunNoPlaintextPythonNonRebased(t *testing.T) {
	base := baseImage(t)
	in := pythonStyle(t, base)
	if n, _ := in.Layers(); len(n) != 4 {
		t.Fatalf("python-style input has %d layers, want 4", len(n))
	}
	out, err := postRun(t, in, "s1")
	if err != nil {
		t.Fatal(err)
	}
	requireSealed(t, out)
	requireBase(t, out, base)
	requireResult(t, out, "r.txt", resultMarker)
	cf, _ := out.ConfigFile()
	if len(cf.Config.Cmd) == 0 || !strings.Contains(strings.Join(cf.Config.Cmd, " "), "entrypoint.py") {
		t.Fatalf("train CMD lost: %v", cf.Config.Cmd)
	}
}

// A squashed image (base and plaintext train in one layer) cannot be
// separated: refused without a base, rebased onto the base when given one.
func TestPostRunSquashedNeedsBase(t *testing.T) {
	base := baseImage(t)
	pre := preRun(t, markedTrain(t, base), "s1")
	// Squash base and the decrypted state into one layer.
	rc := mutate.Extract(pre)
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	cfgFile, _ := pre.ConfigFile()
	sq, err := mutate.AppendLayers(train.ScratchImage(), l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := sq.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config = cfgFile.Config
	if sq, err = mutate.ConfigFile(sq, cf); err != nil {
		t.Fatal(err)
	}
	if _, err := postRun(t, sq, "s1"); !errors.Is(err, train.ErrPlaintext) {
		t.Fatalf("squashed image without a base: %v, want ErrPlaintext", err)
	}
	out, err := postRun(t, sq, "s1", WithBase(base))
	if err != nil {
		t.Fatal(err)
	}
	requireSealed(t, out)
	requireBase(t, out, base)

	// A "base" that itself carries train files is no base.
	if _, err := postRun(t, sq, "s1", WithBase(sq)); !errors.Is(err, train.ErrPlaintext) {
		t.Fatalf("base with train files: %v, want ErrPlaintext", err)
	}
}

func resultsDir(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return dir
}

func readFileIn(dir, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
}

// Run never pushes pre-run's decrypted output to a registry, not even when
// the caller names the registry as the destination; post-run output may go.
func TestRunRefusesDecryptedPush(t *testing.T) {
	ctx := context.Background()
	host := newRegistry(t)
	c := registry.NewClient(registry.WithInsecure(true))
	ref := host + "/s1/t:latest"
	if err := train.Save(ctx, markedTrain(t, baseImage(t)), ref, c); err != nil {
		t.Fatal(err)
	}
	before, err := c.Head(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{"", ref, host + "/elsewhere/t:latest"} {
		if _, _, err := Run(ctx, PreRun, ref, out, station(t, "s1"), c, WithTempDir(t.TempDir())); !errors.Is(err, ErrDecryptedPush) {
			t.Fatalf("pre-run to %q: %v, want ErrDecryptedPush", out, err)
		}
	}
	if after, _ := c.Head(ctx, ref); after != before {
		t.Fatalf("refused pre-run changed the registry image: %s -> %s", before, after)
	}
	if _, err := c.Head(ctx, host+"/elsewhere/t:latest"); err == nil {
		t.Fatal("refused pre-run pushed to another repository")
	}
	local := "oci:" + t.TempDir()
	if _, _, err := Run(ctx, PreRun, ref, local, station(t, "s1"), c, WithTempDir(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Run(ctx, PostRun, local, ref, station(t, "s1"), c, WithTempDir(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	img, err := train.Load(ctx, ref, c)
	if err != nil {
		t.Fatal(err)
	}
	requireSealed(t, img)
}
