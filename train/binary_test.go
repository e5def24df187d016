package train

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
		c.WorkingDir != "/opt/pht_train" || c.User != "1000:1000" || c.Env[len(c.Env)-1] != "MODE=sum" || cfg.OS != "linux" {
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
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		path string
		opts []ImageOption
		want error
	}{
		"missing":       {filepath.Join(dir, "nope"), nil, fs.ErrNotExist},
		"directory":     {dir, nil, ErrBuild},
		"bad name":      {bin, []ImageOption{WithBinaryName("../x")}, ErrBuild},
		"dot name":      {bin, []ImageOption{WithBinaryName("..")}, ErrBuild},
		"relative file": {bin, []ImageOption{WithFile("etc/x", nil, 0o644)}, ErrBuild},
		"unclean file":  {bin, []ImageOption{WithFile("/etc/../x", nil, 0o644)}, ErrBuild},
		"root file":     {bin, []ImageOption{WithFile("/", nil, 0o644)}, ErrBuild},
	} {
		if _, err := ImageFromBinary(tc.path, tc.opts...); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
}

// writeMainPackage writes a dependency-free Go main package (its own module,
// so the build needs no network) that prints msg.
func writeMainPackage(t *testing.T, msg string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hello")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod":  "module example.com/hello\n\ngo 1.21\n",
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(" + strconv.Quote(msg) + ") }\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// BuildStatic's output needs no dynamic loader: a train image has no libc.
func TestBuildStatic(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	pkg := writeMainPackage(t, "hello from a train")
	out := filepath.Join(t.TempDir(), "hello")
	if err := BuildStatic(context.Background(), pkg, out); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		t.Errorf("ELF type %v, want a static executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v segment: not static", p.Type)
		}
	}
	if msg, err := exec.Command(out).Output(); err != nil || string(msg) != "hello from a train\n" {
		t.Errorf("built program printed %q (%v)", msg, err)
	}
}

func TestBuildStaticFails(t *testing.T) {
	dir := t.TempDir()
	if _, err := ImageFromGoPackage(context.Background(), filepath.Join(dir, "nopkg"), dir); err == nil {
		t.Error("building a missing package succeeded")
	}
	broken := writeMainPackage(t, "x")
	if err := os.WriteFile(filepath.Join(broken, "main.go"), []byte("package main\n\nfunc main() { undefined() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := BuildStatic(context.Background(), broken, filepath.Join(dir, "out"))
	if err == nil || !strings.Contains(err.Error(), "undefined") {
		t.Errorf("a package that does not compile: err = %v, want the compiler's message", err)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Errorf("err = %v, want the go command's exit status wrapped", err)
	}
}

// ImageFromGoPackage puts the built program where the entrypoint says.
func TestImageFromGoPackage(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	work := t.TempDir()
	img, err := ImageFromGoPackage(context.Background(), writeMainPackage(t, "hi"), work, WithCmd("-x"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Config.Entrypoint; len(e) != 1 || e[0] != "/opt/pht_train/hello" || len(cfg.Config.Cmd) != 1 {
		t.Fatalf("config = %+v", cfg.Config)
	}
	data, err := ReadFile(context.Background(), img, TrainDir+"/hello", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	built, err := os.ReadFile(filepath.Join(work, "hello"))
	if err != nil || !bytes.Equal(data, built) {
		t.Fatalf("image holds %d bytes, work dir %d (%v)", len(data), len(built), err)
	}
}
