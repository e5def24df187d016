package train

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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

// Load opens the image at loc, in any form ParseImageLocation reads:
// "oci:DIR[:TAG|@DIGEST]", "docker-archive:FILE[:REF]" or "FILE.tar",
// "docker-daemon:REF", "scratch", or a registry reference (pulled lazily
// with c).
func Load(ctx context.Context, loc string, c *registry.Client) (v1.Image, error) {
	l, err := ParseImageLocation(loc)
	if err != nil {
		return nil, err
	}
	switch l.Kind {
	case "scratch":
		return ScratchImage(), nil
	case "oci":
		img, _, err := loadOCI(l)
		return img, err
	case "archive":
		img, _, err := loadArchive(l)
		return img, err
	case "daemon":
		return loadDaemon(ctx, l.Path)
	default:
		if c == nil {
			c = registry.NewClient()
		}
		return PullBounded(ctx, c, l.Path)
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

// Save writes img to loc (see Load). A bare OCI layout keeps only this
// image, oci:DIR:TAG replaces that tag's image (stale blobs are garbage
// collected either way); a docker archive is written to a temporary file
// and renamed, so a failed write leaves the old one intact.
func Save(ctx context.Context, img v1.Image, loc string, c *registry.Client) error {
	l, err := ParseImageLocation(loc)
	if err != nil {
		return err
	}
	switch l.Kind {
	case "scratch":
		return errors.New("cannot write to scratch")
	case "oci":
		return saveOCI(img, l)
	case "archive":
		return saveArchive(img, l)
	case "daemon":
		return saveDaemon(ctx, img, l.Path)
	default:
		if c == nil {
			c = registry.NewClient()
		}
		_, err := c.Push(ctx, img, l.Path)
		return err
	}
}

// ParseLocation splits loc into its kind ("oci", "archive", "daemon",
// "scratch", "registry") and path or reference (see ParseImageLocation; an
// OCI tag or archive reference is not part of the path). A location that
// does not parse is reported as "registry", which Load then refuses.
func ParseLocation(loc string) (kind, p string) {
	l, err := ParseImageLocation(loc)
	if err != nil {
		return "registry", loc
	}
	return l.Kind, l.Path
}

// ScratchImage is an empty OCI image to build trains on, for linux on the
// builder's architecture (as docker build picks the platform by default).
func ScratchImage() v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return img
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.RootFS.Type = "layers"
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		return img
	}
	return out
}
