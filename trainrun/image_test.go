package trainrun

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

func TestImageFromBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "agg")
	if err := os.WriteFile(bin, []byte("\x7fELF fake"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := ImageFromBinary(bin, WithCmd("--verbose"), WithImageEnv("MODE=sum"), WithImageUser("1000:1000"),
		WithFile("/opt/train_config.json", []byte(`{"a":1}`), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/opt/pht_train/agg" || len(c.Cmd) != 1 || c.Cmd[0] != "--verbose" ||
		c.WorkingDir != TrainCodeDir || c.User != "1000:1000" || c.Env[len(c.Env)-1] != "MODE=sum" || cfg.OS != "linux" {
		t.Fatalf("config = %+v", c)
	}
	files := map[string]*tar.Header{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
	}
	for _, want := range []string{"opt/pht_train/agg", "opt/pht_results", "tmp", "opt/train_config.json"} {
		if files[want] == nil {
			t.Errorf("missing %s in %v", want, files)
		}
	}
	if h := files["opt/pht_results"]; h != nil && (h.Uid != 1000 || h.Gid != 1000) {
		t.Errorf("results dir owned by %d:%d, want the image user 1000:1000", h.Uid, h.Gid)
	}
	if h := files["opt/pht_train/agg"]; h != nil && (h.Mode != 0o755 || h.Size != 9) {
		t.Errorf("binary entry %+v", h)
	}
	// The digest is stable: the layer is rebuilt from the file each time.
	d1, _ := img.Digest()
	img2, _ := ImageFromBinary(bin, WithCmd("--verbose"), WithImageEnv("MODE=sum"), WithImageUser("1000:1000"),
		WithFile("/opt/train_config.json", []byte(`{"a":1}`), 0o644))
	if d2, _ := img2.Digest(); d1 != d2 {
		t.Fatalf("digest not reproducible: %s vs %s", d1, d2)
	}
}

func TestImageFromBinaryRejects(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "x")
	os.WriteFile(bin, []byte("x"), 0o755)
	for name, tc := range map[string]struct {
		path string
		opts []ImageOption
	}{
		"missing":       {filepath.Join(dir, "nope"), nil},
		"directory":     {dir, nil},
		"bad name":      {bin, []ImageOption{WithBinaryName("../x")}},
		"relative file": {bin, []ImageOption{WithFile("etc/x", nil, 0o644)}},
	} {
		if _, err := ImageFromBinary(tc.path, tc.opts...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ImageFromGoPackage(context.Background(), filepath.Join(dir, "nopkg"), dir); err == nil {
		t.Error("building a missing package succeeded")
	}
}

func TestNewBackend(t *testing.T) {
	if r, err := New(""); err != nil || r.(*Runc) == nil {
		t.Fatalf("default backend: %v", err)
	}
	if r, err := New("docker"); err != nil {
		t.Fatal(err)
	} else {
		r.(io.Closer).Close()
	}
	if _, err := New("podman"); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("unknown backend: %v", err)
	}
}

func ExampleImageFromGoPackage() {
	ctx := context.Background()
	work, _ := os.MkdirTemp("", "train-build-")
	defer os.RemoveAll(work) // only once the image is no longer used
	img, err := ImageFromGoPackage(ctx, "demo/aggregate", work,
		WithFile("/opt/train_config.json", []byte(`{}`), 0o644))
	if err != nil {
		return
	}
	_, _ = NewRunc().Run(ctx, img, RunSpec{ResultsDir: "/srv/results", DataDir: "/srv/data"})
}
