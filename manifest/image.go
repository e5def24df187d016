package manifest

import (
	"fmt"
	"net/url"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a Docker schema2 manifest or an OCI manifest (image or artifact).
type Image struct {
	raw  []byte
	kind Kind
	m    ocispec.Manifest
}

// Index is a Docker manifest list or an OCI index.
type Index struct {
	raw  []byte
	kind Kind
	m    ocispec.Index
}

func parseImage(raw []byte, kind Kind) (*Image, error) {
	img := &Image{raw: raw, kind: kind}
	if err := decodeStrict(raw, &img.m, true); err != nil {
		return nil, err
	}
	m := &img.m
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: schemaVersion %d, want 2", ErrInvalid, m.SchemaVersion)
	}
	if err := checkBodyMediaType(kind, m.MediaType); err != nil {
		return nil, err
	}
	if err := validDescriptor(m.Config, "config"); err != nil {
		return nil, err
	}
	if kind == KindDockerV2 {
		if m.Config.MediaType != MediaTypeDockerConfig && m.Config.MediaType != MediaTypeDockerPluginConfig {
			return nil, fmt.Errorf("%w: config mediaType %q in a docker schema2 manifest", ErrMediaType, clip(m.Config.MediaType))
		}
		if m.ArtifactType != "" || m.Subject != nil {
			return nil, fmt.Errorf("%w: artifactType/subject are OCI fields, not docker schema2", ErrInvalid)
		}
	}
	if len(m.Layers) > MaxEntries {
		return nil, fmt.Errorf("%w: %d layers, more than %d", ErrInvalid, len(m.Layers), MaxEntries)
	}
	for i, l := range m.Layers {
		what := fmt.Sprintf("layers[%d]", i)
		if err := validDescriptor(l, what); err != nil {
			return nil, err
		}
		switch {
		case kind == KindDockerV2 && !isDockerLayer(l.MediaType) && !isOCILayer(l.MediaType):
			return nil, fmt.Errorf("%w: %s mediaType %q is not a layer type", ErrMediaType, what, clip(l.MediaType))
		case kind == KindOCIManifest && m.Config.MediaType == MediaTypeOCIConfig && !isOCILayer(l.MediaType) && !isDockerLayer(l.MediaType):
			// Docker layer types are accepted, as containerd does: go-containerregistry's
			// mutate.MediaType produces such images.
			return nil, fmt.Errorf("%w: %s mediaType %q is not a layer type", ErrMediaType, what, clip(l.MediaType))
		}
		if isForeign(l.MediaType) && kind == KindDockerV2 && len(l.URLs) == 0 {
			return nil, fmt.Errorf("%w: %s is a foreign layer without urls", ErrInvalid, what)
		}
	}
	if m.Config.MediaType == MediaTypeOCIEmpty && m.ArtifactType == "" {
		return nil, fmt.Errorf("%w: artifactType is required when config is the empty descriptor", ErrInvalid)
	}
	if m.ArtifactType != "" && !ValidMediaType(m.ArtifactType) {
		return nil, fmt.Errorf("%w: artifactType %q", ErrInvalid, clip(m.ArtifactType))
	}
	if m.Subject != nil {
		if err := validDescriptor(*m.Subject, "subject"); err != nil {
			return nil, err
		}
		if KindOf(m.Subject.MediaType) == KindUnknown {
			return nil, fmt.Errorf("%w: subject mediaType %q is not a manifest type", ErrMediaType, clip(m.Subject.MediaType))
		}
	}
	return img, nil
}

func parseIndex(raw []byte, kind Kind) (*Index, error) {
	idx := &Index{raw: raw, kind: kind}
	if err := decodeStrict(raw, &idx.m, true); err != nil {
		return nil, err
	}
	m := &idx.m
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: schemaVersion %d, want 2", ErrInvalid, m.SchemaVersion)
	}
	if err := checkBodyMediaType(kind, m.MediaType); err != nil {
		return nil, err
	}
	if m.Manifests == nil {
		return nil, fmt.Errorf("%w: manifests is missing", ErrInvalid)
	}
	if len(m.Manifests) > MaxEntries {
		return nil, fmt.Errorf("%w: %d manifests, more than %d", ErrInvalid, len(m.Manifests), MaxEntries)
	}
	for i, c := range m.Manifests {
		what := fmt.Sprintf("manifests[%d]", i)
		if err := validDescriptor(c, what); err != nil {
			return nil, err
		}
		ck := KindOf(c.MediaType)
		if kind == KindDockerList {
			if ck != KindDockerV2 && ck != KindSchema1 {
				return nil, fmt.Errorf("%w: %s mediaType %q in a docker manifest list", ErrMediaType, what, clip(c.MediaType))
			}
			if c.Platform == nil {
				return nil, fmt.Errorf("%w: %s has no platform", ErrInvalid, what)
			}
		} else if ck == KindUnknown || ck == KindSchema1 {
			return nil, fmt.Errorf("%w: %s mediaType %q in an OCI index", ErrMediaType, what, clip(c.MediaType))
		}
		if c.Platform != nil && (c.Platform.Architecture == "" || c.Platform.OS == "") {
			return nil, fmt.Errorf("%w: %s platform needs architecture and os", ErrInvalid, what)
		}
	}
	if kind == KindDockerList && (m.ArtifactType != "" || m.Subject != nil) {
		return nil, fmt.Errorf("%w: artifactType/subject are OCI fields, not docker manifest list", ErrInvalid)
	}
	if m.ArtifactType != "" && !ValidMediaType(m.ArtifactType) {
		return nil, fmt.Errorf("%w: artifactType %q", ErrInvalid, clip(m.ArtifactType))
	}
	if m.Subject != nil {
		if err := validDescriptor(*m.Subject, "subject"); err != nil {
			return nil, err
		}
	}
	return idx, nil
}

// checkBodyMediaType: Docker requires mediaType in the body; OCI makes it
// optional, but when present it must name this kind.
func checkBodyMediaType(kind Kind, mt string) error {
	want := map[Kind]string{KindDockerV2: MediaTypeDockerV2, KindDockerList: MediaTypeDockerList,
		KindOCIManifest: MediaTypeOCIManifest, KindOCIIndex: MediaTypeOCIIndex}[kind]
	if mt == "" && (kind == KindDockerV2 || kind == KindDockerList) {
		return fmt.Errorf("%w: %s requires mediaType %s in the body", ErrMediaType, kind, want)
	}
	if mt != "" && mt != want {
		return fmt.Errorf("%w: body mediaType %q, want %s", ErrMediaType, clip(mt), want)
	}
	return nil
}

// validDescriptor checks the fields every descriptor must get right.
func validDescriptor(d Descriptor, what string) error {
	if !ValidMediaType(d.MediaType) {
		return fmt.Errorf("%w: %s mediaType %q", ErrInvalid, what, clip(d.MediaType))
	}
	if _, err := ParseDigest(string(d.Digest)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: %s size %d is negative", ErrInvalid, what, d.Size)
	}
	for _, u := range d.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fmt.Errorf("%w: %s url %q", ErrInvalid, what, clip(u))
		}
	}
	if d.Data != nil {
		if int64(len(d.Data)) != d.Size {
			return fmt.Errorf("%w: %s embedded data has %d bytes, size says %d", ErrSizeMismatch, what, len(d.Data), d.Size)
		}
		if err := VerifyBytes(d.Digest, d.Data); err != nil {
			return fmt.Errorf("%s embedded data: %w", what, err)
		}
	}
	return nil
}

// Kind implements Manifest.
func (i *Image) Kind() Kind { return i.kind }

// MediaType is the kind's media type (the OCI one also when the body omits it).
func (i *Image) MediaType() string {
	if i.kind == KindDockerV2 {
		return MediaTypeDockerV2
	}
	return MediaTypeOCIManifest
}

// Raw returns the bytes as parsed.
func (i *Image) Raw() []byte { return i.raw }

// Digest is sha256 of the raw bytes.
func (i *Image) Digest() digest.Digest { return digest.SHA256.FromBytes(i.raw) }

// DigestAlg is Digest with another algorithm.
func (i *Image) DigestAlg(alg digest.Algorithm) (digest.Digest, error) { return Compute(alg, i.raw) }

// Config is the config descriptor.
func (i *Image) Config() Descriptor { return i.m.Config }

// Layers are the layer descriptors, base first.
func (i *Image) Layers() []Descriptor { return append([]Descriptor(nil), i.m.Layers...) }

// Subject is the manifest this one refers to (OCI 1.1 referrers), or nil.
func (i *Image) Subject() *Descriptor { return i.m.Subject }

// Annotations returns the manifest annotations.
func (i *Image) Annotations() map[string]string { return i.m.Annotations }

// IsArtifact reports whether the config is not an image config: Helm charts,
// signatures, SBOMs and other OCI artifacts.
func (i *Image) IsArtifact() bool {
	mt := i.m.Config.MediaType
	return mt != MediaTypeOCIConfig && mt != MediaTypeDockerConfig
}

// ArtifactType is artifactType, or the config media type for artifacts that
// predate the field (as the OCI spec says), or "" for images.
func (i *Image) ArtifactType() string {
	if i.m.ArtifactType != "" {
		return i.m.ArtifactType
	}
	if i.IsArtifact() {
		return i.m.Config.MediaType
	}
	return ""
}

// References lists config, layers and subject.
func (i *Image) References() []Descriptor {
	out := append([]Descriptor{i.m.Config}, i.m.Layers...)
	if i.m.Subject != nil {
		out = append(out, *i.m.Subject)
	}
	return out
}

// VerifyConfig checks config bytes against the config descriptor by size and
// digest, and for image configs that rootfs lists one diff id per layer.
func (i *Image) VerifyConfig(config []byte) error {
	if err := VerifyContent(i.m.Config, config); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if i.IsArtifact() {
		return nil
	}
	_, err := ParseImageConfig(config, len(i.m.Layers))
	return err
}

// ImageConfig is the subset of an image config the package reads.
type ImageConfig struct {
	Architecture string            `json:"architecture"`
	OS           string            `json:"os"`
	Created      string            `json:"created,omitempty"`
	Author       string            `json:"author,omitempty"`
	RootFS       ocispec.RootFS    `json:"rootfs"`
	History      []ocispec.History `json:"history,omitempty"`
	Config       struct {
		Cmd    []string          `json:"Cmd,omitempty"`
		Labels map[string]string `json:"Labels,omitempty"`
	} `json:"config"`
}

// ParseImageConfig parses an image config strictly. With layers >= 0 it
// also requires that many diff ids, and history entries that account for
// exactly that many non-empty layers when history is present.
func ParseImageConfig(b []byte, layers int) (*ImageConfig, error) {
	var c ImageConfig
	if err := decodeStrict(b, &c, false); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if c.RootFS.Type != "layers" {
		return nil, fmt.Errorf("%w: config rootfs.type %q, want layers", ErrInvalid, clip(c.RootFS.Type))
	}
	for _, d := range c.RootFS.DiffIDs {
		if _, err := ParseDigest(string(d)); err != nil {
			return nil, fmt.Errorf("config diff_ids: %w", err)
		}
	}
	if layers >= 0 {
		if len(c.RootFS.DiffIDs) != layers {
			return nil, fmt.Errorf("%w: config has %d diff ids for %d layers", ErrInvalid, len(c.RootFS.DiffIDs), layers)
		}
		if len(c.History) > 0 {
			n := 0
			for _, h := range c.History {
				if !h.EmptyLayer {
					n++
				}
			}
			if n != layers {
				return nil, fmt.Errorf("%w: config history has %d non-empty entries for %d layers", ErrInvalid, n, layers)
			}
		}
	}
	return &c, nil
}

// Kind implements Manifest.
func (x *Index) Kind() Kind { return x.kind }

// MediaType is the kind's media type.
func (x *Index) MediaType() string {
	if x.kind == KindDockerList {
		return MediaTypeDockerList
	}
	return MediaTypeOCIIndex
}

// Raw returns the bytes as parsed.
func (x *Index) Raw() []byte { return x.raw }

// Digest is sha256 of the raw bytes.
func (x *Index) Digest() digest.Digest { return digest.SHA256.FromBytes(x.raw) }

// DigestAlg is Digest with another algorithm.
func (x *Index) DigestAlg(alg digest.Algorithm) (digest.Digest, error) { return Compute(alg, x.raw) }

// Manifests are the child descriptors.
func (x *Index) Manifests() []Descriptor { return append([]Descriptor(nil), x.m.Manifests...) }

// Annotations returns the index annotations.
func (x *Index) Annotations() map[string]string { return x.m.Annotations }

// References lists the children and the subject.
func (x *Index) References() []Descriptor {
	out := x.Manifests()
	if x.m.Subject != nil {
		out = append(out, *x.m.Subject)
	}
	return out
}

// Select returns the first child for the platform's os and architecture
// (and variant when given), as Quay's amd64/linux pick does.
func (x *Index) Select(p Platform) (Descriptor, error) {
	for _, c := range x.m.Manifests {
		if c.Platform == nil || c.Platform.OS != p.OS || c.Platform.Architecture != p.Architecture {
			continue
		}
		if p.Variant != "" && c.Platform.Variant != p.Variant {
			continue
		}
		return c, nil
	}
	return Descriptor{}, fmt.Errorf("%w: no manifest for %s/%s", ErrUnsupported, p.OS, p.Architecture)
}

// Child verifies a child manifest's bytes against its descriptor (size and
// digest) and parses it with the descriptor's media type, so a body that
// disagrees with its descriptor is refused.
func (x *Index) Child(desc Descriptor, raw []byte, opts ...Option) (Manifest, error) {
	found := false
	for _, c := range x.m.Manifests {
		if c.Digest == desc.Digest && c.Size == desc.Size && c.MediaType == desc.MediaType {
			found = true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: %s is not a child of this index", ErrInvalid, desc.Digest)
	}
	return ParseDescribed(desc, raw, opts...)
}

// ParseDescribed checks raw against desc by size and digest, then parses it
// with desc's media type as the declared type.
func ParseDescribed(desc Descriptor, raw []byte, opts ...Option) (Manifest, error) {
	if KindOf(desc.MediaType) == KindSchema1 {
		// A schema1 manifest is named by the digest of its signed payload,
		// not of its bytes: check the length here and the digest after parsing.
		if int64(len(raw)) != desc.Size {
			return nil, fmt.Errorf("%w: %s has %d bytes, descriptor says %d", ErrSizeMismatch, desc.Digest, len(raw), desc.Size)
		}
	} else if err := VerifyContent(desc, raw); err != nil {
		return nil, err
	}
	m, err := Parse(raw, append(opts, WithMediaType(desc.MediaType))...)
	if err != nil {
		return nil, err
	}
	if err := VerifyDigest(m, desc.Digest); err != nil {
		return nil, err
	}
	return m, nil
}
