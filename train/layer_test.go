package train

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func stateLayer(t *testing.T, img v1.Image, results map[string]string) *FileLayer {
	t.Helper()
	w, err := NewStateWriter(t.TempDir(), img)
	if err != nil {
		t.Fatal(err)
	}
	for n, c := range results {
		if err := w.File(ResultsDir+"/"+n, 0o644, int64(len(c)), strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
	}
	l, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Remove() })
	return l
}

func TestWithStateReplacesTheStateLayer(t *testing.T) {
	// A Python-built train: base layer, then a layer with the old results,
	// with a Docker schema 2 manifest and a CMD.
	py := imageOf(t,
		[]ent{{"bin/sh", "f", "shell"}},
		[]ent{{"opt/pht_results/old", "f", "stale plaintext"}, {"opt/train_config.json", "f", "{}"}},
	)
	py = mutate.MediaType(py, types.DockerManifestSchema2)
	py = mutate.ConfigMediaType(py, types.DockerConfigJSON)
	py, _ = mutate.Config(py, v1.Config{Cmd: []string{"python", "/opt/pht_train/entrypoint.py"}})

	img := py
	for i, name := range []string{"one", "two", "three"} {
		var err error
		img, err = WithState(img, stateLayer(t, img, map[string]string{name: name}))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkImage(img); err != nil {
			t.Fatalf("step %d: invalid image: %v", i, err)
		}
		layers, _ := img.Layers()
		if len(layers) != 3 {
			t.Fatalf("step %d: %d layers, want base + python layer + one state layer", i, len(layers))
		}
	}
	if mt, _ := img.MediaType(); mt != types.DockerManifestSchema2 {
		t.Fatalf("media type %s", mt)
	}
	cf, _ := img.ConfigFile()
	if strings.Join(cf.Config.Cmd, " ") != "python /opt/pht_train/entrypoint.py" {
		t.Fatalf("CMD lost: %v", cf.Config.Cmd)
	}
	if got := merged(t, img, ResultsDir); got != "=d three=f:three" {
		t.Fatalf("results %q: the old results must be hidden by the opaque state layer", got)
	}
	// Base layers are the very same blobs.
	l0, _ := py.Layers()
	l1, _ := img.Layers()
	for i := 0; i < 2; i++ {
		a, _ := l0[i].Digest()
		b, _ := l1[i].Digest()
		if a != b {
			t.Fatalf("base layer %d changed", i)
		}
	}
}

func TestWithStateWithoutHistoryAppends(t *testing.T) {
	img, err := mutate.AppendLayers(empty.Image, stateLayer(t, empty.Image, nil))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.History = nil
	img, _ = mutate.ConfigFile(img, cf)
	out, err := WithState(img, stateLayer(t, img, map[string]string{"x": "y"}))
	if err != nil {
		t.Fatal(err)
	}
	if ls, _ := out.Layers(); len(ls) != 2 {
		t.Fatalf("%d layers", len(ls))
	}
	if err := checkImage(out); err != nil {
		t.Fatal(err)
	}
}

func TestSaveLoadLocations(t *testing.T) {
	ctx := context.Background()
	img, err := WithState(ScratchImage(), stateLayer(t, ScratchImage(), map[string]string{"r": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	dir := t.TempDir()
	for _, loc := range []string{"oci:" + filepath.Join(dir, "layout"), filepath.Join(dir, "train.tar"), "docker-archive:" + filepath.Join(dir, "other")} {
		if err := Save(ctx, img, loc, nil); err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		// Saving twice replaces, never duplicates.
		if err := Save(ctx, img, loc, nil); err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		back, err := Load(ctx, loc, nil)
		if err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		if got := merged(t, back, ResultsDir); got != "=d r=f:1" {
			t.Fatalf("%s: %q", loc, got)
		}
		if d, _ := back.Digest(); strings.HasPrefix(loc, "oci:") && d != want {
			t.Fatalf("%s: digest %s, want %s", loc, d, want)
		}
	}
	if _, err := Load(ctx, "oci:"+filepath.Join(dir, "nope"), nil); err == nil {
		t.Fatal("loaded a missing layout")
	}
	if err := Save(ctx, img, "scratch", nil); err == nil {
		t.Fatal("saved to scratch")
	}
}

// checkImage verifies that config diff ids, history and layers agree.
func checkImage(img v1.Image) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return fmt.Errorf("%d diff ids for %d layers", len(cf.RootFS.DiffIDs), len(layers))
	}
	nonEmpty := 0
	for _, h := range cf.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if len(cf.History) > 0 && nonEmpty != len(layers) {
		return fmt.Errorf("%d history entries for %d layers", nonEmpty, len(layers))
	}
	for i, l := range layers {
		d, err := l.DiffID()
		if err != nil {
			return err
		}
		if d != cf.RootFS.DiffIDs[i] {
			return fmt.Errorf("layer %d diff id mismatch", i)
		}
	}
	_, err = img.RawManifest()
	return err
}
