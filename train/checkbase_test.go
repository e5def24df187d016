package train

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func tarLayer(t testing.TB, hdrs ...*tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func masterImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(ScratchImage(), tarLayer(t, &tar.Header{Name: "usr/bin/python3"}, &tar.Header{Name: "opt/", Typeflag: tar.TypeDir}))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Entrypoint = nil
	cf.Config.Env = []string{"PATH=/usr/bin"}
	cf.Config.Cmd = []string{"python3"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func onMaster(t testing.TB, master v1.Image, hdrs ...*tar.Header) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(master, tarLayer(t, hdrs...))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Cmd = []string{"python3", "/opt/pht_train/entrypoint.py"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestCheckBase(t *testing.T) {
	ctx := context.Background()
	m := masterImage(t)
	good := onMaster(t, m,
		&tar.Header{Name: "opt/", Typeflag: tar.TypeDir},
		&tar.Header{Name: "opt/pht_train/", Typeflag: tar.TypeDir},
		&tar.Header{Name: "opt/pht_train/entrypoint.py"},
		&tar.Header{Name: "opt/pht_train/.wh..wh..opq"},
		&tar.Header{Name: "opt/pht_results/.wh.old"},
		&tar.Header{Name: "opt/train_config.json"},
		&tar.Header{Name: "./opt/user_sym_key.key"})
	if err := CheckBase(ctx, good, m); err != nil {
		t.Fatalf("genuine train refused: %v", err)
	}
	// Each attack is refused with ErrNotOnBase.
	attacks := map[string]v1.Image{
		"prefix bypass /opt/pht_train_evil": onMaster(t, m, &tar.Header{Name: "opt/pht_train_evil/x.py"}),
		"master file replaced":              onMaster(t, m, &tar.Header{Name: "usr/bin/python3"}),
		"sitecustomize":                     onMaster(t, m, &tar.Header{Name: "usr/lib/python3/sitecustomize.py"}),
		"whiteout of a master file":         onMaster(t, m, &tar.Header{Name: "usr/bin/.wh.python3"}),
		"opaque /opt":                       onMaster(t, m, &tar.Header{Name: "opt/.wh..wh..opq"}),
		"whiteout of /opt":                  onMaster(t, m, &tar.Header{Name: ".wh.opt"}),
		"/opt as a symlink":                 onMaster(t, m, &tar.Header{Name: "opt", Typeflag: tar.TypeSymlink, Linkname: "/usr"}),
		"train dir as a symlink":            onMaster(t, m, &tar.Header{Name: "opt/pht_train", Typeflag: tar.TypeSymlink, Linkname: "/usr/lib"}),
		"dot-dot escape":                    onMaster(t, m, &tar.Header{Name: "opt/pht_train/../../etc/passwd"}),
		"hard link to a master file":        onMaster(t, m, &tar.Header{Name: "opt/pht_train/x", Typeflag: tar.TypeLink, Linkname: "usr/bin/python3"}),
		"config as a directory":             onMaster(t, m, &tar.Header{Name: "opt/train_config.json/", Typeflag: tar.TypeDir}),
	}
	other, err := mutate.AppendLayers(ScratchImage(), tarLayer(t, &tar.Header{Name: "usr/bin/python3-evil"}))
	if err != nil {
		t.Fatal(err)
	}
	mcf, _ := m.ConfigFile()
	sameConfig := func(img v1.Image) v1.Image {
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.Config = mcf.Config
		out, err := mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// Same config, other layers: caught by the layer comparison.
	attacks["other base"] = onMaster(t, sameConfig(other), &tar.Header{Name: "opt/pht_train/x"})
	attacks["fewer layers than the master"] = sameConfig(ScratchImage())
	for name, cfgEdit := range map[string]func(*v1.ConfigFile){
		"entrypoint added": func(c *v1.ConfigFile) { c.Config.Entrypoint = []string{"/bin/sh", "-c"} },
		"env changed":      func(c *v1.ConfigFile) { c.Config.Env = append(c.Config.Env, "LD_PRELOAD=/opt/pht_train/x.so") },
		"user changed":     func(c *v1.ConfigFile) { c.Config.User = "0" },
		"platform changed": func(c *v1.ConfigFile) { c.Architecture = "arm64" },
	} {
		cf, _ := good.ConfigFile()
		cf = cf.DeepCopy()
		cfgEdit(cf)
		img, err := mutate.ConfigFile(good, cf)
		if err != nil {
			t.Fatal(err)
		}
		attacks[name] = img
	}
	for name, img := range attacks {
		err := CheckBase(ctx, img, m)
		t.Logf("%s: %v", name, err)
		if !errors.Is(err, ErrNotOnBase) {
			t.Errorf("%s: %v, want ErrNotOnBase", name, err)
		}
	}
}

// FuzzCheckBase feeds arbitrary bytes as the train layer: a clear error or
// acceptance, never a panic.
func FuzzCheckBase(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "opt/pht_train/x", Typeflag: tar.TypeReg, Size: 1})
	tw.Write([]byte("x"))
	tw.WriteHeader(&tar.Header{Name: "etc/x", Typeflag: tar.TypeReg})
	tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{})
	m := ScratchImage()
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			return
		}
		img, err := mutate.AppendLayers(m, l)
		if err != nil {
			return
		}
		_ = CheckBase(context.Background(), img, m)
	})
}
