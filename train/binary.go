package train

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ErrBuild reports input ImageFromBinary cannot build an image from (a bad
// binary name or extra-file path, a binary that is not a regular file).
var ErrBuild = errors.New("invalid train image build input")

// codeDir is TrainDir as an absolute path, the form an image config uses.
const codeDir = "/" + TrainDir

// imagePath is the PATH of a built image: Docker's default, which is also
// what the runtime gives a train whose image sets none.
const imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ImageOption adjusts an image built by ImageFromBinary.
type ImageOption func(*imageOpts)

type imageOpts struct {
	name  string
	cmd   []string
	env   []string
	user  string
	files []extraFile
}

type extraFile struct {
	path string
	data []byte
	mode int64
}

// WithBinaryName names the program inside /opt/pht_train (default: the
// file name of the binary).
func WithBinaryName(name string) ImageOption { return func(o *imageOpts) { o.name = name } }

// WithCmd sets the image's cmd (the entrypoint's default arguments).
func WithCmd(args ...string) ImageOption { return func(o *imageOpts) { o.cmd = args } }

// WithImageEnv adds "K=V" entries to the image's environment.
func WithImageEnv(env ...string) ImageOption {
	return func(o *imageOpts) { o.env = append(o.env, env...) }
}

// WithImageUser sets the image's user ("uid[:gid]").
func WithImageUser(user string) ImageOption { return func(o *imageOpts) { o.user = user } }

// WithFile adds a small file (for example /opt/train_config.json) to the
// image's single layer. p is an absolute path inside the image.
func WithFile(p string, data []byte, mode int64) ImageOption {
	return func(o *imageOpts) { o.files = append(o.files, extraFile{path: p, data: data, mode: mode}) }
}

// ImageFromBinary returns a one-layer image (on ScratchImage) that holds the
// static executable binPath at /opt/pht_train/NAME, empty /opt/pht_results
// and /tmp directories, and an entrypoint that runs the program with
// /opt/pht_train as working directory. The layer is read from binPath
// whenever it is needed (streaming), so binPath must stay in place while the
// image is used. The binary must not need a dynamic loader or libc: build Go
// programs with CGO_ENABLED=0 (see BuildStatic).
func ImageFromBinary(binPath string, opts ...ImageOption) (v1.Image, error) {
	o := imageOpts{name: filepath.Base(binPath)}
	for _, f := range opts {
		f(&o)
	}
	if o.name == "" || strings.ContainsAny(o.name, "/\x00") || o.name == "." || o.name == ".." {
		return nil, fmt.Errorf("%w: bad binary name %q", ErrBuild, o.name)
	}
	for _, f := range o.files {
		if !path.IsAbs(f.path) || path.Clean(f.path) != f.path || f.path == "/" {
			return nil, fmt.Errorf("%w: extra file path %q must be absolute and clean", ErrBuild, f.path)
		}
	}
	fi, err := os.Stat(binPath)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrBuild, binPath)
	}
	size := fi.Size()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTrainLayer(pw, binPath, size, o)) }()
		return pr, nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(ScratchImage(), layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cfg.Config.Entrypoint = []string{path.Join(codeDir, o.name)}
	cfg.Config.Cmd = o.cmd
	cfg.Config.WorkingDir = codeDir
	cfg.Config.Env = append([]string{imagePath}, o.env...)
	cfg.Config.User = o.user
	return mutate.ConfigFile(img, cfg)
}

// writeTrainLayer writes the layer's tar: directories, extra files, binary.
func writeTrainLayer(w io.Writer, binPath string, size int64, o imageOpts) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	addDir := func(d string, mode int64) error {
		for _, p := range parents(d) {
			if dirs[p] {
				continue
			}
			dirs[p] = true
			m := int64(0o755)
			if p == d {
				m = mode
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: m, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range []struct {
		p string
		m int64
	}{{TrainDir, 0o755}, {"tmp", 0o1777}} {
		if err := addDir(d.p, d.m); err != nil {
			return err
		}
	}
	// The results directory belongs to the image's user, so that a runtime
	// that copies it into a volume (Docker) leaves it writable for the train.
	uid, gid := numericUser(o.user)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: ResultsDir + "/", Mode: 0o755, Uid: uid, Gid: gid, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	for _, f := range o.files {
		rel := strings.TrimPrefix(f.path, "/")
		if err := addDir(path.Dir(rel), 0o755); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	bin, err := os.Open(binPath)
	if err != nil {
		return err
	}
	defer bin.Close()
	name := strings.TrimPrefix(path.Join(codeDir, o.name), "/")
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: size, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, bin, size); err != nil {
		return fmt.Errorf("%s changed while building the image: %w", binPath, err)
	}
	return tw.Close()
}

// numericUser parses "uid[:gid]"; names and bad input give 0:0.
func numericUser(u string) (int, int) {
	us, gs, hasGid := strings.Cut(u, ":")
	uid, err := strconv.ParseUint(us, 10, 31)
	if err != nil {
		return 0, 0
	}
	gid := uint64(0)
	if hasGid {
		if gid, err = strconv.ParseUint(gs, 10, 31); err != nil {
			return 0, 0
		}
	}
	return int(uid), int(gid)
}

// parents returns "a", "a/b", "a/b/c" for "a/b/c".
func parents(p string) []string {
	if p == "." || p == "" {
		return nil
	}
	parts := strings.Split(p, "/")
	out := make([]string, len(parts))
	for i := range parts {
		out[i] = strings.Join(parts[:i+1], "/")
	}
	return out
}

// BuildStatic compiles the Go main package in pkgDir into a static Linux
// executable at out (CGO_ENABLED=0, -trimpath) with the go command on PATH.
func BuildStatic(ctx context.Context, pkgDir, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		// sudo and systemd drop PATH entries: try the usual install places.
		for _, p := range []string{"/usr/local/go/bin/go", "/usr/lib/go/bin/go"} {
			if _, serr := os.Stat(p); serr == nil {
				goBin, err = p, nil
				break
			}
		}
		if err != nil {
			return fmt.Errorf("building %s needs the go command: %w", pkgDir, err)
		}
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", absOut, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if outb, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkgDir, err, strings.TrimSpace(string(outb)))
	}
	return nil
}

// ImageFromGoPackage builds the Go main package in pkgDir statically into
// workDir (which must outlive the image) and wraps it with ImageFromBinary.
// The demo uses it for its CSV-aggregating train.
func ImageFromGoPackage(ctx context.Context, pkgDir, workDir string, opts ...ImageOption) (v1.Image, error) {
	abs, err := filepath.Abs(pkgDir)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(workDir, filepath.Base(abs))
	if err := BuildStatic(ctx, pkgDir, bin); err != nil {
		return nil, err
	}
	return ImageFromBinary(bin, opts...)
}
