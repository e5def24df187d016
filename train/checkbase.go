package train

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"reflect"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrNotOnBase is wrapped when a train image is not its master image plus
// train files only.
var ErrNotOnBase = errors.New("train image is not built on the master image")

// CheckBase is the PHT library's validate_master_image done without a
// Docker engine and without its bypasses: img must consist of master's
// layers (same diff ids, same order) followed by layers that touch only the
// train paths, with exact path boundaries (/opt/pht_train and what is under
// it, not /opt/pht_train_x): /opt as a directory, TrainDir, ResultsDir,
// ConfigPath, UserKeyPath, and whiteouts of those. Its config must equal
// master's except for Cmd (the builder sets the train's command). Only tar
// headers are read.
func CheckBase(ctx context.Context, img, master v1.Image) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	mcf, err := master.ConfigFile()
	if err != nil {
		return fmt.Errorf("master image config: %w", err)
	}
	if cf.OS != mcf.OS || cf.Architecture != mcf.Architecture || cf.Variant != mcf.Variant {
		return fmt.Errorf("%w: platform %s/%s%s, master is %s/%s%s", ErrNotOnBase, cf.OS, cf.Architecture, cf.Variant, mcf.OS, mcf.Architecture, mcf.Variant)
	}
	a, b := cf.Config, mcf.Config
	a.Cmd, b.Cmd = nil, nil
	if !reflect.DeepEqual(normalConfig(a), normalConfig(b)) {
		return fmt.Errorf("%w: image config (entrypoint, env, user, workdir, volumes, ports, labels, ...) differs from the master's beyond CMD", ErrNotOnBase)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("list layers: %w", err)
	}
	mlayers, err := master.Layers()
	if err != nil {
		return fmt.Errorf("list master layers: %w", err)
	}
	if len(layers) < len(mlayers) {
		return fmt.Errorf("%w: %d layers, the master has %d", ErrNotOnBase, len(layers), len(mlayers))
	}
	for i, ml := range mlayers {
		d, err := layers[i].DiffID()
		if err != nil {
			return err
		}
		md, err := ml.DiffID()
		if err != nil {
			return err
		}
		if d != md {
			return fmt.Errorf("%w: layer %d is %s, the master's is %s", ErrNotOnBase, i, d, md)
		}
	}
	for i := len(mlayers); i < len(layers); i++ {
		if err := checkTrainLayer(ctx, layers[i]); err != nil {
			return fmt.Errorf("%w: layer %d: %v", ErrNotOnBase, i, err)
		}
	}
	return nil
}

// normalConfig treats empty and nil maps and slices alike.
func normalConfig(c v1.Config) v1.Config {
	if len(c.Env) == 0 {
		c.Env = nil
	}
	if len(c.Entrypoint) == 0 {
		c.Entrypoint = nil
	}
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	if len(c.Volumes) == 0 {
		c.Volumes = nil
	}
	if len(c.ExposedPorts) == 0 {
		c.ExposedPorts = nil
	}
	if len(c.OnBuild) == 0 {
		c.OnBuild = nil
	}
	if len(c.Shell) == 0 {
		c.Shell = nil
	}
	// Docker records these per image; they say nothing about what runs.
	c.Hostname, c.Domainname, c.Image, c.ArgsEscaped = "", "", "", false
	c.AttachStdin, c.AttachStdout, c.AttachStderr, c.Tty, c.OpenStdin, c.StdinOnce = false, false, false, false, false, false
	return c
}

// checkTrainLayer refuses any entry of a train layer outside the train paths.
func checkTrainLayer(ctx context.Context, l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for n := 0; ; n++ {
		if n&0xff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer: %v", err)
		}
		raw := strings.TrimPrefix(hdr.Name, "./")
		name := cleanName(raw)
		if name != strings.TrimSuffix(strings.TrimPrefix(raw, "/"), "/") {
			return fmt.Errorf("unclean path %q", hdr.Name)
		}
		base := path.Base(name)
		if base == whiteoutOpaque {
			if d := parent(name); d != TrainDir && d != ResultsDir && !strings.HasPrefix(d, TrainDir+"/") && !strings.HasPrefix(d, ResultsDir+"/") {
				return fmt.Errorf("/%s hides the master's content of /%s", name, d)
			}
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			target := path.Join(parent(name), strings.TrimPrefix(base, whiteoutPrefix))
			if target == "opt" || !isTrainPath(target) {
				return fmt.Errorf("whiteout removes the master's /%s", target)
			}
			continue
		}
		switch {
		case name == "" || name == "opt" || name == TrainDir || name == ResultsDir:
			if hdr.Typeflag != tar.TypeDir {
				return fmt.Errorf("/%s is not a directory", name)
			}
		case name == ConfigPath || name == UserKeyPath:
			if hdr.Typeflag != tar.TypeReg {
				return fmt.Errorf("/%s is not a regular file", name)
			}
		case strings.HasPrefix(name, TrainDir+"/") || strings.HasPrefix(name, ResultsDir+"/"):
			if hdr.Typeflag == tar.TypeLink && !isTrainPath(cleanName(hdr.Linkname)) {
				return fmt.Errorf("/%s is a hard link to the master's /%s", name, hdr.Linkname)
			}
		default:
			return fmt.Errorf("/%s is outside the train paths", name)
		}
	}
}
