package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/trainyard/trainyard/registry"
)

// ErrLocation marks an image location that cannot be parsed.
var ErrLocation = errors.New("bad image location")

// Location is a parsed image location (see ParseImageLocation).
type Location struct {
	// Kind is "oci", "archive", "daemon", "scratch" or "registry".
	Kind string
	// Path is the OCI layout directory or the docker archive file; for
	// "daemon" and "registry" it is the reference.
	Path string
	// Tag picks an image of an OCI layout by its
	// org.opencontainers.image.ref.name annotation ("oci:DIR:TAG").
	Tag string
	// Digest picks an image of an OCI layout by manifest digest
	// ("oci:DIR@sha256:...").
	Digest string
	// Ref picks an image of a docker archive by one of its RepoTags
	// ("docker-archive:FILE:REPO:TAG").
	Ref string
}

// tagRE is the OCI distribution spec's tag grammar.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// ParseImageLocation parses the skopeo-style location forms trainyard
// accepts everywhere an image is read or written:
//
//	scratch                       the empty image (read only)
//	oci:DIR                       OCI layout; reads the last image, writes it as the only one
//	oci:DIR:TAG                   the image annotated org.opencontainers.image.ref.name=TAG
//	oci:DIR@sha256:HEX            the image with that manifest digest (read only)
//	docker-archive:FILE           docker save tarball holding one image
//	docker-archive:FILE:REPO:TAG  the image of that tarball with that RepoTag
//	FILE.tar                      same as docker-archive:FILE.tar
//	docker-daemon:REPO:TAG        an image of the local Docker Engine
//	HOST/REPO:TAG, REPO@DIGEST    a registry reference
//
// A ':' may be part of a DIR or FILE name: "oci:a:b" is the directory a:b
// when a:b exists as a directory, else directory a with tag b (when b is a
// valid tag). Likewise "docker-archive:a:b" is the file a:b when it exists,
// else the file before the first ':' whose remainder is a valid reference,
// as skopeo splits it.
func ParseImageLocation(loc string) (Location, error) {
	return parseLocation(loc, func(p string) (bool, bool) {
		st, err := os.Stat(p)
		if err != nil {
			return false, false
		}
		return true, st.IsDir()
	})
}

// parseLocation is ParseImageLocation with the file system lookup passed in
// (exists, isDir), so that the fuzz target exercises it without touching disk.
func parseLocation(loc string, stat func(string) (exists, isDir bool)) (Location, error) {
	switch {
	case loc == Scratch || loc == "":
		return Location{Kind: "scratch"}, nil
	case strings.HasPrefix(loc, OCIPrefix):
		return parseOCI(strings.TrimPrefix(loc, OCIPrefix), stat)
	case strings.HasPrefix(loc, DockerArchivePrefix):
		return parseArchive(strings.TrimPrefix(loc, DockerArchivePrefix), stat)
	case strings.HasPrefix(loc, DaemonPrefix):
		p := strings.TrimPrefix(loc, DaemonPrefix)
		if _, err := name.ParseReference(p); err != nil {
			return Location{}, fmt.Errorf("%w: %s: %w", ErrLocation, loc, err)
		}
		return Location{Kind: "daemon", Path: p}, nil
	case strings.HasSuffix(loc, ".tar"):
		return Location{Kind: "archive", Path: loc}, nil
	}
	if strings.HasPrefix(loc, ".") || strings.HasPrefix(loc, "/") {
		// ggcr would take "./dir" as a registry named "."; a path was meant.
		return Location{}, fmt.Errorf("%w: %q is a path: write oci:%s for an OCI layout or docker-archive:%s for a docker tarball", ErrLocation, loc, loc, loc)
	}
	if _, err := name.ParseReference(loc); err != nil {
		return Location{}, fmt.Errorf("%w: %q is not oci:DIR, docker-archive:FILE, FILE.tar, docker-daemon:REF or a registry reference: %w", ErrLocation, loc, err)
	}
	return Location{Kind: "registry", Path: loc}, nil
}

func parseOCI(s string, stat func(string) (bool, bool)) (Location, error) {
	if s == "" {
		return Location{}, fmt.Errorf("%w: oci: needs a directory", ErrLocation)
	}
	if _, dir := stat(s); dir {
		return Location{Kind: "oci", Path: s}, nil
	}
	if i := strings.LastIndex(s, "@"); i > 0 {
		h, err := v1.NewHash(s[i+1:])
		if err == nil {
			return Location{Kind: "oci", Path: s[:i], Digest: h.String()}, nil
		}
		if alg, _, _ := strings.Cut(s[i+1:], ":"); alg == "sha256" || alg == "sha512" {
			return Location{}, fmt.Errorf("%w: oci:%s: %w", ErrLocation, s, err)
		}
	}
	if i := strings.LastIndex(s, ":"); i > 0 && tagRE.MatchString(s[i+1:]) && !strings.Contains(s[i+1:], "/") {
		return Location{Kind: "oci", Path: s[:i], Tag: s[i+1:]}, nil
	}
	if strings.HasSuffix(s, ":") {
		return Location{}, fmt.Errorf("%w: oci:%s: empty tag", ErrLocation, s)
	}
	return Location{Kind: "oci", Path: s}, nil
}

func parseArchive(s string, stat func(string) (bool, bool)) (Location, error) {
	if s == "" {
		return Location{}, fmt.Errorf("%w: docker-archive: needs a file", ErrLocation)
	}
	if ok, _ := stat(s); ok {
		return Location{Kind: "archive", Path: s}, nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' || i == 0 {
			continue
		}
		ref := s[i+1:]
		if ref == "" {
			return Location{}, fmt.Errorf("%w: docker-archive:%s: empty reference", ErrLocation, s)
		}
		// The reference must carry its tag: "FILE:NAME" alone is more
		// likely a file name with a ':' than a request for NAME:latest.
		explicit := strings.LastIndex(ref, ":") > strings.LastIndex(ref, "/")
		if _, err := name.NewTag(ref); err == nil && explicit {
			return Location{Kind: "archive", Path: s[:i], Ref: ref}, nil
		}
	}
	return Location{Kind: "archive", Path: s}, nil
}

// String is the location in the syntax ParseImageLocation reads.
func (l Location) String() string {
	switch l.Kind {
	case "scratch":
		return Scratch
	case "oci":
		s := OCIPrefix + l.Path
		if l.Tag != "" {
			s += ":" + l.Tag
		}
		if l.Digest != "" {
			s += "@" + l.Digest
		}
		return s
	case "archive":
		s := DockerArchivePrefix + l.Path
		if l.Ref != "" {
			s += ":" + l.Ref
		}
		return s
	case "daemon":
		return DaemonPrefix + l.Path
	}
	return l.Path
}

// containerdNameAnnotation is where containerd and buildkit put an image's
// full name in an OCI layout (the ref.name annotation then holds only the tag).
const containerdNameAnnotation = "io.containerd.image.name"

// pickOCI returns the descriptor of l's image in an OCI layout index: by
// digest, by ref.name tag, or (bare oci:DIR) the last image, which is what
// Save writes.
func pickOCI(l Location, im *v1.IndexManifest) (*v1.Descriptor, error) {
	var pick *v1.Descriptor
	for i := range im.Manifests {
		d := &im.Manifests[i]
		switch {
		case l.Digest != "":
			if d.Digest.String() == l.Digest {
				pick = d
			}
		case l.Tag != "":
			if refNameTag(d.Annotations[ociRefAnnotation]) == l.Tag {
				pick = d
			}
		case d.MediaType.IsImage():
			pick = d
		}
	}
	switch {
	case pick == nil && l.Digest != "":
		return nil, fmt.Errorf("OCI layout %s has no manifest %s: %w", l.Path, l.Digest, ErrNotFound)
	case pick == nil && l.Tag != "":
		return nil, fmt.Errorf("OCI layout %s has no image tagged %q (%s annotation): %w", l.Path, l.Tag, ociRefAnnotation, ErrNotFound)
	case pick == nil:
		return nil, fmt.Errorf("OCI layout %s holds no image: %w", l.Path, ErrNotFound)
	case pick.MediaType.IsIndex():
		return nil, fmt.Errorf("%s is an image index: pick one platform's manifest with oci:%s@DIGEST: %w", l, l.Path, ErrNotFound)
	case !pick.MediaType.IsImage():
		return nil, fmt.Errorf("%s is a %s, not an image: %w", l, pick.MediaType, ErrNotFound)
	}
	return pick, nil
}

// refNameTag is the tag of a ref.name annotation: skopeo and Save write the
// bare tag, some tools a full reference.
func refNameTag(v string) string {
	if r, err := name.NewTag(v); err == nil && strings.Contains(v, ":") {
		return r.TagStr()
	}
	return v
}

func loadOCI(l Location) (v1.Image, v1.Descriptor, error) {
	idx, err := layout.ImageIndexFromPath(l.Path)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("open OCI layout %s: %w", l.Path, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("open OCI layout %s: %w", l.Path, err)
	}
	d, err := pickOCI(l, im)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("open %s: %w", l, err)
	}
	return img, *d, nil
}

// saveOCI writes img into an OCI layout. oci:DIR keeps only this image;
// oci:DIR:TAG replaces the image of that tag and keeps the others, as
// skopeo does. Unreferenced blobs are collected either way.
func saveOCI(img v1.Image, l Location) error {
	if l.Digest != "" {
		return fmt.Errorf("%w: cannot write to %s: a digest names an existing image", ErrLocation, l)
	}
	lp, err := layout.FromPath(l.Path)
	if err != nil {
		if lp, err = layout.Write(l.Path, empty.Index); err != nil {
			return fmt.Errorf("create OCI layout %s: %w", l.Path, err)
		}
	}
	tag := l.Tag
	if tag == "" {
		tag = "latest"
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	// The image is appended first and the old entries removed after, so a
	// failure in between leaves the previous image readable.
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{ociRefAnnotation: tag})); err != nil {
		return fmt.Errorf("write OCI layout %s: %w", l.Path, err)
	}
	appended := false
	drop := func(desc v1.Descriptor) bool {
		if l.Tag == "" {
			return desc.Digest != d
		}
		if desc.Digest == d && desc.Annotations[ociRefAnnotation] == tag && !appended {
			appended = true // keep exactly one entry for this tag
			return false
		}
		return refNameTag(desc.Annotations[ociRefAnnotation]) == tag
	}
	if err := lp.RemoveDescriptors(drop); err != nil {
		return fmt.Errorf("write OCI layout %s: %w", l.Path, err)
	}
	// GarbageCollect only lists what nothing references; removing is ours.
	stale, err := lp.GarbageCollect()
	if err != nil {
		return fmt.Errorf("garbage collect OCI layout %s: %w", l.Path, err)
	}
	for _, h := range stale {
		if err := lp.RemoveBlob(h); err != nil {
			return fmt.Errorf("garbage collect OCI layout %s: %w", l.Path, err)
		}
	}
	return nil
}

func loadArchive(l Location) (v1.Image, string, error) {
	var tag *name.Tag
	if l.Ref != "" {
		t, err := name.NewTag(l.Ref)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %s: %w", ErrLocation, l, err)
		}
		tag = &t
	}
	img, err := tarball.ImageFromPath(l.Path, tag)
	if err != nil {
		if l.Ref == "" {
			// Name the choices: ggcr only says "must contain only a single image".
			m, merr := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(l.Path) })
			if merr == nil && len(m) > 1 {
				var tags []string
				for _, d := range m {
					tags = append(tags, d.RepoTags...)
				}
				return nil, "", fmt.Errorf("docker archive %s holds %d images: pick one with docker-archive:%s:REPO:TAG (tags: %s)", l.Path, len(m), l.Path, strings.Join(tags, ", "))
			}
		}
		return nil, "", fmt.Errorf("open docker archive %s: %w", l, err)
	}
	if l.Ref != "" {
		return img, l.Ref, nil
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(l.Path) })
	if err != nil || len(m) != 1 || len(m[0].RepoTags) == 0 {
		return img, "", nil //nolint:nilerr // the name is optional; the image opened
	}
	return img, m[0].RepoTags[0], nil
}

func saveArchive(img v1.Image, l Location) error {
	ref := l.Ref
	if ref == "" {
		ref = DefaultArchiveTag
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrLocation, l, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(l.Path), ".trainyard-*.tar")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := tarball.WriteToFile(tmp.Name(), tag, img); err != nil {
		return fmt.Errorf("write docker archive %s: %w", l.Path, err)
	}
	return os.Rename(tmp.Name(), l.Path)
}

// LoadNamed is Load that also returns the image's name where the location
// knows one: the reference of a registry or engine image, an archive's
// RepoTag, or for an OCI layout the io.containerd.image.name annotation,
// else a full reference in the ref.name annotation. It is "" otherwise
// (e.g. a layout tagged only "latest").
func LoadNamed(ctx context.Context, loc string, c *registry.Client) (v1.Image, string, error) {
	l, err := ParseImageLocation(loc)
	if err != nil {
		return nil, "", err
	}
	switch l.Kind {
	case "oci":
		img, d, err := loadOCI(l)
		if err != nil {
			return nil, "", err
		}
		n := d.Annotations[containerdNameAnnotation]
		if n == "" {
			if v := d.Annotations[ociRefAnnotation]; strings.ContainsAny(v, "/:") {
				n = v
			}
		}
		return img, n, nil
	case "archive":
		return loadArchive(l)
	case "scratch":
		return ScratchImage(), "", nil
	}
	img, err := Load(ctx, loc, c)
	if err != nil {
		return nil, "", err
	}
	return img, l.Path, nil
}
