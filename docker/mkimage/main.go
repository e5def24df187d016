// Command mkimage assembles the trainyard protocol container image without
// a Docker engine, with trainyard's own layer code (train.LayerWriter):
// the static binary, the host's CA bundle, /etc/passwd and /etc/group with
// a non-root user, and /tmp; entrypoint `trainyard protocol`. It writes a
// docker tarball (for `docker load`) or an OCI layout and can push the
// image to a registry. `make image` runs it; docker/protocol.Dockerfile
// builds the same contract for those who have Docker.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/train"
)

// User ids of the non-root account (distroless' "nonroot").
const nonRootUID = 65532

func main() {
	bin := flag.String("bin", "bin/trainyard-static", "static trainyard binary (CGO_ENABLED=0) to put in the image")
	cas := flag.String("ca", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to copy to /etc/ssl/certs/ca-certificates.crt")
	out := flag.String("out", "bin/trainyard-protocol.tar", "docker tarball (FILE.tar) or oci:DIR to write")
	tag := flag.String("tag", "trainyard-protocol:latest", "image name inside the docker tarball")
	push := flag.String("push", "", "also push the image to this registry reference")
	user := flag.String("user", "0", `user the container runs as: "0" (root, reaches a root:docker socket as the PHT container does) or "65532" (non-root: add --group-add <socket gid>)`)
	flag.Parse()
	if err := run(context.Background(), *bin, *cas, *out, *tag, *push, *user); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, cas, out, tag, push, user string) error {
	img, layer, err := build(bin, cas, user)
	if err != nil {
		return err
	}
	defer layer.Remove()
	if strings.HasSuffix(out, ".tar") {
		ref, err := name.NewTag(tag)
		if err != nil {
			return err
		}
		if err := writeTarball(out, ref, img); err != nil {
			return err
		}
	} else if err := train.Save(ctx, img, out, nil); err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s (%s)\n", out, d)
	if push != "" {
		if err := train.Save(ctx, img, push, nil); err != nil {
			return fmt.Errorf("push %s: %w", push, err)
		}
		fmt.Printf("pushed %s@%s\n", push, d)
	}
	return nil
}

// writeTarball writes to a temporary file and renames it, so a failed
// write never leaves a half tarball behind.
func writeTarball(p string, ref name.Tag, img v1.Image) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".mkimage-*.tar")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := tarball.WriteToFile(tmp.Name(), ref, img); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

func build(bin, cas, user string) (v1.Image, *train.FileLayer, error) {
	if user != "0" && user != fmt.Sprint(nonRootUID) {
		return nil, nil, fmt.Errorf("-user %q: want 0 or %d", user, nonRootUID)
	}
	w, err := train.NewLayerWriter("", types.OCILayer)
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			w.Abort()
		}
	}()
	if err := w.FileAt("usr/local/bin/trainyard", 0o755, bin); err != nil {
		return nil, nil, err
	}
	if err := w.FileAt("etc/ssl/certs/ca-certificates.crt", 0o644, cas); err != nil {
		return nil, nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRootUID, nonRootUID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonRootUID)
	for n, c := range map[string]string{"etc/passwd": passwd, "etc/group": group} {
		if err := w.File(n, 0o644, int64(len(c)), strings.NewReader(c)); err != nil {
			return nil, nil, err
		}
	}
	// A sticky, world-writable /tmp for the spooled results, and homes.
	if err := w.Dir("tmp", 0o1777); err != nil {
		return nil, nil, err
	}
	for _, d := range []string{"root", "home/nonroot"} {
		if err := w.Dir(d, 0o755); err != nil {
			return nil, nil, err
		}
	}
	l, err := w.Close()
	if err != nil {
		return nil, nil, err
	}
	ok = true
	base := train.ScratchImage()
	img, err := mutate.Append(base, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "trainyard mkimage", Created: v1.Time{Time: time.Now().UTC()}}})
	if err != nil {
		l.Remove()
		return nil, nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		l.Remove()
		return nil, nil, err
	}
	cf = cf.DeepCopy()
	home := "/root"
	if user != "0" {
		home = "/home/nonroot"
	}
	cf.Config = v1.Config{
		Entrypoint: []string{"/usr/local/bin/trainyard", "protocol"},
		Cmd:        []string{"--help"},
		User:       user,
		WorkingDir: "/",
		Env: []string{
			"PATH=/usr/local/bin:/usr/bin:/bin",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
			"TRAINYARD_TMPDIR=/tmp",
			"HOME=" + home,
			"DOCKER_CONFIG=" + home + "/.docker",
		},
		Labels: map[string]string{"org.opencontainers.image.title": "trainyard protocol (PHT protocol container)"},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		l.Remove()
		return nil, nil, err
	}
	return img, l, nil
}
