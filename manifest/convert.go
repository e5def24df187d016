package manifest

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ToSchema1 converts a Docker schema2 or OCI image manifest and its config
// into an unsigned schema1 manifest for repository name and tag; sign it
// with SignSchema1. The config is checked against its descriptor by digest
// first. v1 ids follow distribution's registry-side conversion:
// sha256(hex(blobSum) + " " + parent), and for the leaf + " " + config.
// Empty-layer history entries point at EmptyLayerDigest, a blob the target
// registry must hold. Artifacts, foreign layers and zstd layers cannot be
// expressed in schema1 and are refused with ErrUnsupported.
func ToSchema1(img *Image, config []byte, name, tag string) ([]byte, error) {
	if img.IsArtifact() {
		return nil, fmt.Errorf("%w: %s artifacts have no schema1 form", ErrUnsupported, img.ArtifactType())
	}
	if err := img.VerifyConfig(config); err != nil {
		return nil, err
	}
	for i, l := range img.m.Layers {
		switch {
		case len(l.URLs) > 0 || isForeign(l.MediaType):
			return nil, fmt.Errorf("%w: layer %d is foreign/non-distributable", ErrUnsupported, i)
		case l.MediaType == MediaTypeOCILayerZstd:
			return nil, fmt.Errorf("%w: layer %d is zstd-compressed", ErrUnsupported, i)
		case l.Digest.Algorithm() != SHA256:
			return nil, fmt.Errorf("%w: layer %d digest is %s; schema1 clients expect sha256", ErrUnsupported, i, l.Digest.Algorithm())
		}
	}
	var cfg struct {
		Created string       `json:"created"`
		Author  string       `json:"author"`
		History []rawHistory `json:"history"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	history := cfg.History
	if len(history) == 0 { // OCI configs may omit history: one entry per layer
		for range img.m.Layers {
			history = append(history, rawHistory{Created: cfg.Created, Author: cfg.Author})
		}
	}
	var leafCfg map[string]json.RawMessage
	if err := json.Unmarshal(config, &leafCfg); err != nil {
		return nil, fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	delete(leafCfg, "history")
	delete(leafCfg, "rootfs")

	type entry struct {
		blob   digest.Digest
		compat string
	}
	entries := make([]entry, 0, len(history))
	parent, li := "", 0
	for i, h := range history {
		blob := EmptyLayerDigest
		if !h.EmptyLayer {
			if li >= len(img.m.Layers) {
				return nil, fmt.Errorf("%w: config history has more layers than the manifest", ErrInvalid)
			}
			blob = img.m.Layers[li].Digest
			li++
		}
		leaf := i == len(history)-1
		idSrc := blob.Encoded() + " " + parent
		if leaf {
			idSrc += " " + string(config)
		}
		id := digest.FromString(idSrc).Encoded()
		var compat []byte
		var err error
		if leaf {
			m := make(map[string]json.RawMessage, len(leafCfg)+3)
			for k, v := range leafCfg {
				m[k] = v
			}
			m["id"], _ = json.Marshal(id)
			if parent != "" {
				m["parent"], _ = json.Marshal(parent)
			}
			if h.EmptyLayer {
				m["throwaway"] = json.RawMessage("true")
			}
			// As Quay does: the leaf's own history entry wins for the v1 fields.
			for k, v := range map[string]string{"created": h.Created, "author": h.Author, "comment": h.Comment} {
				if v != "" {
					m[k], _ = json.Marshal(v)
				}
			}
			if h.CreatedBy != "" {
				cc := map[string]json.RawMessage{}
				if present(m["container_config"]) {
					if err := json.Unmarshal(m["container_config"], &cc); err != nil {
						return nil, fmt.Errorf("%w: config container_config: %w", ErrInvalid, err)
					}
				}
				cc["Cmd"], _ = json.Marshal([]string{h.CreatedBy})
				m["container_config"], _ = json.Marshal(cc)
			}
			compat, err = json.Marshal(m)
		} else {
			v := v1Compat{ID: id, Parent: parent, Comment: h.Comment, Created: h.Created, Author: h.Author, ThrowAway: h.EmptyLayer}
			v.ContainerConfig.Cmd = []string{h.CreatedBy}
			compat, err = json.Marshal(v)
		}
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{blob, string(compat)})
		parent = id
	}
	if li != len(img.m.Layers) {
		return nil, fmt.Errorf("%w: config history covers %d of %d layers", ErrInvalid, li, len(img.m.Layers))
	}
	var ac struct {
		Architecture string `json:"architecture"`
	}
	_ = json.Unmarshal(config, &ac) // parsed above; absent means amd64
	b := NewSchema1Builder(name, tag, ac.Architecture)
	for i := len(entries) - 1; i >= 0; i-- {
		b.AddLayer(entries[i].blob, entries[i].compat)
	}
	return b.Build()
}

type rawHistory struct {
	Created    string `json:"created,omitempty"`
	CreatedBy  string `json:"created_by,omitempty"`
	Author     string `json:"author,omitempty"`
	Comment    string `json:"comment,omitempty"`
	EmptyLayer bool   `json:"empty_layer,omitempty"`
}

type v1Compat struct {
	ID              string `json:"id"`
	Parent          string `json:"parent,omitempty"`
	Comment         string `json:"comment,omitempty"`
	Created         string `json:"created,omitempty"`
	ContainerConfig struct {
		Cmd []string
	} `json:"container_config"`
	Author    string `json:"author,omitempty"`
	ThrowAway bool   `json:"throwaway,omitempty"`
}

// LayerInfo is what a schema2/OCI descriptor needs about a schema1 layer
// and schema1 does not record: its size and its uncompressed digest.
type LayerInfo struct {
	Digest     digest.Digest `json:"digest"`
	Size       int64         `json:"size"`
	DiffID     digest.Digest `json:"diffID"`
	Compressed bool          `json:"compressed"`
}

// BlobFetcher opens a blob by digest (a registry, a layout, a cache).
type BlobFetcher interface {
	FetchBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
}

// BlobFetcherFunc adapts a function to BlobFetcher.
type BlobFetcherFunc func(ctx context.Context, d digest.Digest) (io.ReadCloser, error)

// FetchBlob implements BlobFetcher.
func (f BlobFetcherFunc) FetchBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	return f(ctx, d)
}

// InspectLayers streams every non-empty layer of s once, verifies it against
// its blobSum and returns size and diff id per layer, base to leaf, as
// FromSchema1 needs them. Nothing is held in memory beyond a read buffer.
func InspectLayers(ctx context.Context, s *Schema1, f BlobFetcher) ([]LayerInfo, error) {
	layers, err := s.Layers()
	if err != nil {
		return nil, err
	}
	cache := map[digest.Digest]LayerInfo{}
	var out []LayerInfo
	for _, l := range layers {
		if l.V1.Throwaway {
			continue
		}
		info, ok := cache[l.BlobSum]
		if !ok {
			info, err = inspectBlob(ctx, l.BlobSum, f)
			if err != nil {
				return nil, err
			}
			cache[l.BlobSum] = info
		}
		out = append(out, info)
	}
	return out, nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func inspectBlob(ctx context.Context, d digest.Digest, f BlobFetcher) (LayerInfo, error) {
	rc, err := f.FetchBlob(ctx, d)
	if err != nil {
		return LayerInfo{}, fmt.Errorf("fetch %s: %w", d, err)
	}
	defer rc.Close()
	verifier := d.Verifier()
	count := &countingWriter{}
	br := bufio.NewReader(io.TeeReader(rc, io.MultiWriter(verifier, count)))
	info := LayerInfo{Digest: d}
	magic, _ := br.Peek(2)
	diff := digest.SHA256.Digester()
	// bad reports a decompression error, unless the blob is not the one
	// asked for at all: then the digest mismatch is the real news.
	bad := func(err error) (LayerInfo, error) {
		if _, rerr := io.Copy(io.Discard, br); rerr == nil && !verifier.Verified() {
			return LayerInfo{}, fmt.Errorf("%w: layer blob does not hash to %s", ErrDigestMismatch, d)
		}
		return LayerInfo{}, fmt.Errorf("%w: layer %s: %w", ErrInvalid, d, err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return bad(err)
		}
		if _, err := io.Copy(diff.Hash(), zr); err != nil {
			return bad(err)
		}
		info.Compressed = true
	}
	var sink io.Writer = diff.Hash()
	if info.Compressed {
		sink = io.Discard // only the digest still needs the rest
	}
	if _, err := io.Copy(sink, br); err != nil {
		return LayerInfo{}, fmt.Errorf("read %s: %w", d, err)
	}
	if !verifier.Verified() {
		return LayerInfo{}, fmt.Errorf("%w: layer blob does not hash to %s", ErrDigestMismatch, d)
	}
	info.Size = count.n
	if info.Compressed {
		info.DiffID = diff.Digest()
	} else {
		info.DiffID = d // an uncompressed layer is its own diff
		if d.Algorithm() != SHA256 {
			return LayerInfo{}, fmt.Errorf("%w: uncompressed layer %s needs a sha256 diff id", ErrUnsupported, d)
		}
	}
	return info, nil
}

// FromSchema1 converts a schema1 manifest to a Docker schema2 (KindDockerV2)
// or OCI (KindOCIManifest) manifest and returns it with its new config, as
// containers/image does: the leaf v1 JSON becomes the config, history comes
// from every layer, throwaway layers are dropped from the layer list. layers
// holds one LayerInfo per non-throwaway layer, base to leaf (InspectLayers).
// Verify the schema1 signatures first if they matter: conversion drops them.
func FromSchema1(s *Schema1, to Kind, layers []LayerInfo) (manifestJSON, configJSON []byte, err error) {
	if to != KindDockerV2 && to != KindOCIManifest {
		return nil, nil, fmt.Errorf("%w: conversion from schema1 to %s", ErrUnsupported, to)
	}
	all, err := s.Layers()
	if err != nil {
		return nil, nil, err
	}
	var history []rawHistory
	var descs []Descriptor
	var diffIDs []digest.Digest
	li := 0
	for _, l := range all {
		var c struct {
			ContainerConfig struct {
				Cmd []string `json:"Cmd"`
			} `json:"container_config"`
		}
		_ = json.Unmarshal([]byte(l.RawV1Compatibility), &c) // validated at parse; Cmd may be null
		history = append(history, rawHistory{Created: l.V1.Created, Author: l.V1.Author, Comment: l.V1.Comment,
			CreatedBy: strings.Join(c.ContainerConfig.Cmd, " "), EmptyLayer: l.V1.Throwaway})
		if l.V1.Throwaway {
			continue
		}
		if li >= len(layers) {
			return nil, nil, fmt.Errorf("%w: %d layer infos for more non-empty layers", ErrInvalid, len(layers))
		}
		info := layers[li]
		li++
		if info.Digest != l.BlobSum {
			return nil, nil, fmt.Errorf("%w: layer info %s does not match blobSum %s", ErrInvalid, info.Digest, l.BlobSum)
		}
		if _, err := ParseDigest(string(info.DiffID)); err != nil {
			return nil, nil, fmt.Errorf("diff id: %w", err)
		}
		mt := map[bool]map[Kind]string{
			true:  {KindDockerV2: MediaTypeDockerLayer, KindOCIManifest: MediaTypeOCILayerGzip},
			false: {KindDockerV2: MediaTypeDockerLayerTar, KindOCIManifest: MediaTypeOCILayer},
		}[info.Compressed][to]
		descs = append(descs, Descriptor{MediaType: mt, Size: info.Size, Digest: info.Digest})
		diffIDs = append(diffIDs, info.DiffID)
	}
	if li != len(layers) {
		return nil, nil, fmt.Errorf("%w: %d layer infos for %d non-empty layers", ErrInvalid, len(layers), li)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal([]byte(all[len(all)-1].RawV1Compatibility), &cfg); err != nil {
		return nil, nil, fmt.Errorf("%w: leaf v1Compatibility: %w", ErrInvalid, err)
	}
	for _, k := range []string{"id", "parent", "parent_id", "layer_id", "throwaway", "Size"} {
		delete(cfg, k)
	}
	if cfg["rootfs"], err = json.Marshal(ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}); err != nil {
		return nil, nil, err
	}
	if cfg["history"], err = json.Marshal(history); err != nil {
		return nil, nil, err
	}
	if configJSON, err = json.Marshal(cfg); err != nil {
		return nil, nil, err
	}
	cfgMT := MediaTypeDockerConfig
	mfMT := MediaTypeDockerV2
	if to == KindOCIManifest {
		cfgMT, mfMT = MediaTypeOCIConfig, MediaTypeOCIManifest
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: mfMT,
		Config:    Descriptor{MediaType: cfgMT, Size: int64(len(configJSON)), Digest: digest.FromBytes(configJSON)},
		Layers:    descs,
	}
	if manifestJSON, err = marshalManifest(m); err != nil {
		return nil, nil, err
	}
	if err := manifestJSONCheck(manifestJSON, to); err != nil {
		return nil, nil, err
	}
	return manifestJSON, configJSON, nil
}

func marshalManifest(m ocispec.Manifest) ([]byte, error) {
	out, err := json.MarshalIndent(m, "", "   ")
	if err != nil {
		return nil, err
	}
	return out, nil
}

// manifestJSONCheck parses what a conversion produced: a converter must never
// emit what the parser refuses.
func manifestJSONCheck(b []byte, kind Kind) error {
	m, err := Parse(b)
	if err != nil {
		return fmt.Errorf("converted manifest does not parse: %w", err)
	}
	if m.Kind() != kind {
		return fmt.Errorf("%w: converted manifest is %s, want %s", ErrInvalid, m.Kind(), kind)
	}
	return nil
}

// ConvertImage converts between Docker schema2 and OCI image manifests. The
// config bytes stay the same (and so does their digest); media types of the
// config and the layers are mapped. Fields the target cannot express
// (annotations, subject, artifactType, zstd in Docker) are refused with
// ErrUnsupported rather than dropped.
func ConvertImage(img *Image, to Kind) ([]byte, error) {
	if img.kind == to {
		return img.Raw(), nil
	}
	if to != KindDockerV2 && to != KindOCIManifest {
		return nil, fmt.Errorf("%w: conversion to %s", ErrUnsupported, to)
	}
	if img.IsArtifact() {
		return nil, fmt.Errorf("%w: artifacts have no %s form", ErrUnsupported, to)
	}
	m := img.m
	m.Layers = append([]Descriptor(nil), img.m.Layers...)
	toDocker := map[string]string{
		MediaTypeOCILayerGzip: MediaTypeDockerLayer, MediaTypeOCILayer: MediaTypeDockerLayerTar,
		MediaTypeOCINondistributableGzip: MediaTypeDockerForeignLayer, MediaTypeOCINondistributable: MediaTypeDockerForeignLayerTar,
	}
	toOCI := map[string]string{}
	for k, v := range toDocker {
		toOCI[v] = k
	}
	if to == KindDockerV2 {
		if len(m.Annotations) > 0 || m.Subject != nil || m.ArtifactType != "" {
			return nil, fmt.Errorf("%w: annotations/subject/artifactType have no docker schema2 form", ErrUnsupported)
		}
		m.MediaType, m.Config.MediaType = MediaTypeDockerV2, MediaTypeDockerConfig
	} else {
		m.MediaType, m.Config.MediaType = MediaTypeOCIManifest, MediaTypeOCIConfig
	}
	for i, l := range m.Layers {
		table := toOCI
		if to == KindDockerV2 {
			table = toDocker
		}
		nt, ok := table[l.MediaType]
		if !ok && to == KindOCIManifest && (isOCILayer(l.MediaType) || isDockerLayer(l.MediaType)) {
			nt, ok = l.MediaType, true // already valid in an OCI manifest (zstd, or a foreign tar without a twin)
		}
		if !ok && to == KindDockerV2 && isDockerLayer(l.MediaType) {
			nt, ok = l.MediaType, true
		}
		if !ok {
			return nil, fmt.Errorf("%w: layer %d media type %s has no %s form", ErrUnsupported, i, l.MediaType, to)
		}
		m.Layers[i].MediaType = nt
	}
	out, err := marshalManifest(m)
	if err != nil {
		return nil, err
	}
	if err := manifestJSONCheck(out, to); err != nil {
		return nil, err
	}
	return out, nil
}
