package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/registry"
)

// Location kinds accepted by Load and Save.
const (
	// OCIPrefix selects an OCI image layout directory: "oci:DIR".
	OCIPrefix = "oci:"
	// DockerArchivePrefix selects a docker save tarball: "docker-archive:FILE".
	// A location ending in ".tar" is read the same way.
	DockerArchivePrefix = "docker-archive:"
	// Scratch is the empty base image.
	Scratch = "scratch"
	// DaemonPrefix selects an image in the local Docker Engine (DOCKER_HOST,
	// else /var/run/docker.sock): "docker-daemon:REPO:TAG".
	DaemonPrefix = "docker-daemon:"
)

// ociRefAnnotation names the image inside an OCI layout written by Save.
const ociRefAnnotation = "org.opencontainers.image.ref.name"

// DefaultArchiveTag names the image inside a docker tarball written by Save.
const DefaultArchiveTag = "trainyard/train:latest"

// Load opens the image at loc: "oci:DIR", "docker-archive:FILE" or
// "FILE.tar", "scratch", or a registry reference (pulled lazily with c).
func Load(ctx context.Context, loc string, c *registry.Client) (v1.Image, error) {
	switch kind, p := ParseLocation(loc); kind {
	case "scratch":
		return ScratchImage(), nil
	case "oci":
		idx, err := layout.ImageIndexFromPath(p)
		if err != nil {
			return nil, fmt.Errorf("open OCI layout %s: %w", p, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("open OCI layout %s: %w", p, err)
		}
		var pick *v1.Descriptor
		for i := range im.Manifests {
			d := &im.Manifests[i]
			if d.MediaType.IsImage() {
				pick = d // the last image wins: Save appends its image last
			}
		}
		if pick == nil {
			return nil, fmt.Errorf("OCI layout %s holds no image: %w", p, ErrNotFound)
		}
		return idx.Image(pick.Digest)
	case "archive":
		img, err := tarball.ImageFromPath(p, nil)
		if err != nil {
			return nil, fmt.Errorf("open docker archive %s: %w", p, err)
		}
		return img, nil
	case "daemon":
		return loadDaemon(ctx, p)
	default:
		if c == nil {
			c = registry.NewClient()
		}
		return PullBounded(ctx, c, p)
	}
}

// MaxManifestSize bounds a manifest pulled from a registry: 4 MiB, the size
// the OCI distribution spec asks registries to accept. Real manifests are a
// few KiB.
const MaxManifestSize = 4 << 20

// HeadManifest returns the descriptor of ref's manifest from a HEAD request
// (nothing of the manifest is downloaded) and refuses one larger than
// MaxManifestSize with ErrTooLarge.
func HeadManifest(ctx context.Context, c *registry.Client, ref string) (name.Reference, *v1.Descriptor, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return nil, nil, err
	}
	desc, err := remote.Head(r, c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if desc.Size > MaxManifestSize {
		return nil, nil, fmt.Errorf("%w: manifest of %s is %d bytes, at most %d", ErrTooLarge, ref, desc.Size, MaxManifestSize)
	}
	return r, desc, nil
}

// PullBounded pulls ref after HeadManifest has checked its size, by the
// digest HEAD named, so a registry cannot swap in a larger manifest between
// the two requests.
func PullBounded(ctx context.Context, c *registry.Client, ref string) (v1.Image, error) {
	r, desc, err := HeadManifest(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	return c.Pull(ctx, r.Context().Name()+"@"+desc.Digest.String())
}

// Save writes img to loc (see Load). An OCI layout keeps only this image
// (stale blobs are garbage collected); a docker archive is written to a
// temporary file and renamed, so a failed write leaves the old one intact.
func Save(ctx context.Context, img v1.Image, loc string, c *registry.Client) error {
	switch kind, p := ParseLocation(loc); kind {
	case "scratch":
		return errors.New("cannot write to scratch")
	case "oci":
		lp, err := layout.FromPath(p)
		if err != nil {
			if lp, err = layout.Write(p, empty.Index); err != nil {
				return fmt.Errorf("create OCI layout %s: %w", p, err)
			}
		}
		if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{ociRefAnnotation: "latest"})); err != nil {
			return fmt.Errorf("write OCI layout %s: %w", p, err)
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		// Keep only the image just written, then drop blobs nothing references.
		if err := lp.RemoveDescriptors(func(desc v1.Descriptor) bool { return desc.Digest != d }); err != nil {
			return fmt.Errorf("write OCI layout %s: %w", p, err)
		}
		if _, err := lp.GarbageCollect(); err != nil {
			return fmt.Errorf("garbage collect OCI layout %s: %w", p, err)
		}
		return nil
	case "archive":
		ref, err := name.ParseReference(DefaultArchiveTag)
		if err != nil {
			return err
		}
		tmp, err := os.CreateTemp(filepath.Dir(p), ".trainyard-*.tar")
		if err != nil {
			return err
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		if err := tarball.WriteToFile(tmp.Name(), ref, img); err != nil {
			return fmt.Errorf("write docker archive %s: %w", p, err)
		}
		return os.Rename(tmp.Name(), p)
	case "daemon":
		return saveDaemon(ctx, img, p)
	default:
		if c == nil {
			c = registry.NewClient()
		}
		_, err := c.Push(ctx, img, p)
		return err
	}
}

// ParseLocation splits loc into its kind ("oci", "archive", "daemon",
// "scratch", "registry") and path or reference.
func ParseLocation(loc string) (kind, p string) {
	switch {
	case loc == Scratch || loc == "":
		return "scratch", ""
	case strings.HasPrefix(loc, OCIPrefix):
		return "oci", strings.TrimPrefix(loc, OCIPrefix)
	case strings.HasPrefix(loc, DockerArchivePrefix):
		return "archive", strings.TrimPrefix(loc, DockerArchivePrefix)
	case strings.HasPrefix(loc, DaemonPrefix):
		return "daemon", strings.TrimPrefix(loc, DaemonPrefix)
	case strings.HasSuffix(loc, ".tar"):
		return "archive", loc
	}
	return "registry", loc
}

// ScratchImage is an empty linux/amd64 OCI image to build trains on.
func ScratchImage() v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return img
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.RootFS.Type = "layers"
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		return img
	}
	return out
}
