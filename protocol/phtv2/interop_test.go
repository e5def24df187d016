package phtv2

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/trainyard/trainyard/train"
)

// testdata/python-train was written by testdata/pht_python.py with Python's
// cryptography, computing every value the way pht-train-container-library
// and the central builder do: a train after station s1's post-run.
const pyTrain = "testdata/python-train"

// pythonImage packs pyTrain/opt into an image the way `docker commit` of the
// Python library would leave it: a base layer, then a layer with /opt.
func pythonImage(t *testing.T) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	root := filepath.Join(pyTrain, "opt")
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(pyTrain, p)
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tw.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(train.ScratchImage(), l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPythonTrainInterop(t *testing.T) {
	ctx := context.Background()
	s2, err := LoadPrivateKeyFile(filepath.Join(pyTrain, "keys/s2.pem"), nil) // PKCS#1, like conftest
	if err != nil {
		t.Fatal(err)
	}
	user, err := LoadPrivateKeyFile(filepath.Join(pyTrain, "keys/user.pem"), []byte("secret")) // encrypted PKCS#8
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKeyFile(filepath.Join(pyTrain, "keys/user.pem"), []byte("wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	// Python -> Go: trainyard's pre-run at s2 accepts the Python train.
	pre, err := PreRun(ctx, pythonImage(t), Station{ID: "s2", Key: s2}, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatalf("pre-run of a Python-made train: %v", err)
	}
	defer pre.Close()
	if pre.Config.Creator.ID.String() != "7" {
		t.Fatal("creator id")
	}
	st, err := train.ReadState(ctx, pre.Image, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := st.Results.Lookup("sub/stats.csv")
	rc, _ := st.Results.Open(e)
	b, _ := io.ReadAll(rc)
	rc.Close()
	st.Close()
	if string(b) != "n,mean\n10,3.5\n" {
		t.Fatalf("decrypted result %q", b)
	}
	post, err := PostRun(ctx, simulateRun(t, pre.Image, "s2"), Station{ID: "s2", Key: s2}, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()
	if _, err := DecryptResults(ctx, post.Image, user, t.TempDir()); err != nil {
		t.Fatal(err)
	}

	// Go -> Python: the next stop's checks, done by Python's cryptography.
	py, err := exec.LookPath("python3")
	if err != nil || exec.Command(py, "-c", "import cryptography").Run() != nil {
		t.Skip("python3 with cryptography not available: Go -> Python direction not checked")
	}
	dir := t.TempDir()
	exportState(t, post.Image, dir)
	out, err := exec.Command(py, "testdata/pht_python.py", "verify", dir, filepath.Join(pyTrain, "keys"), "2").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "python verify ok") {
		t.Fatalf("Python rejects trainyard's post-run output: %v\n%s", err, out)
	}
}

// exportState writes the train state of img, as stored, under dir/opt.
func exportState(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	st, err := train.ReadState(context.Background(), img, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	os.MkdirAll(filepath.Join(dir, "opt"), 0o755)
	os.WriteFile(filepath.Join(dir, train.ConfigPath), st.Config, 0o644)
	os.WriteFile(filepath.Join(dir, train.UserKeyPath), st.UserKey, 0o644)
	for _, tr := range []*train.Tree{st.Train, st.Results} {
		for _, e := range tr.Entries {
			p := filepath.Join(dir, tr.Root, e.Name)
			if !e.IsRegular() {
				os.MkdirAll(p, 0o755)
				continue
			}
			os.MkdirAll(filepath.Dir(p), 0o755)
			rc, _ := tr.Open(e)
			b, _ := io.ReadAll(rc)
			rc.Close()
			os.WriteFile(p, b, 0o644)
		}
	}
}
