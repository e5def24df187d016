package manifest

import (
	"mime"
	"regexp"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the manifest kinds and their blobs.
const (
	MediaTypeSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	MediaTypeDockerV2      = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList    = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIManifest   = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex      = ocispec.MediaTypeImageIndex

	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerPluginConfig = "application/vnd.docker.plugin.v1+json"
	MediaTypeOCIConfig          = ocispec.MediaTypeImageConfig
	MediaTypeOCIEmpty           = ocispec.MediaTypeEmptyJSON

	MediaTypeDockerLayer             = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerTar          = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerForeignLayer      = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeDockerForeignLayerTar   = "application/vnd.docker.image.rootfs.foreign.diff.tar"
	MediaTypeOCILayer                = ocispec.MediaTypeImageLayer
	MediaTypeOCILayerGzip            = ocispec.MediaTypeImageLayerGzip
	MediaTypeOCILayerZstd            = ocispec.MediaTypeImageLayerZstd
	MediaTypeOCINondistributable     = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	MediaTypeOCINondistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	MediaTypeOCINondistributableZstd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

// Kind is the family a manifest belongs to.
type Kind int

// Manifest kinds.
const (
	KindUnknown Kind = iota
	KindSchema1
	KindDockerV2
	KindDockerList
	KindOCIManifest
	KindOCIIndex
)

func (k Kind) String() string {
	switch k {
	case KindSchema1:
		return "docker schema1"
	case KindDockerV2:
		return "docker schema2"
	case KindDockerList:
		return "docker manifest list"
	case KindOCIManifest:
		return "OCI manifest"
	case KindOCIIndex:
		return "OCI index"
	}
	return "unknown"
}

// KindOf maps a media type (parameters allowed) to its manifest kind.
func KindOf(mediaType string) Kind {
	switch normalizeMediaType(mediaType) {
	case MediaTypeSchema1, MediaTypeSchema1Signed:
		return KindSchema1
	case MediaTypeDockerV2:
		return KindDockerV2
	case MediaTypeDockerList:
		return KindDockerList
	case MediaTypeOCIManifest:
		return KindOCIManifest
	case MediaTypeOCIIndex:
		return KindOCIIndex
	}
	return KindUnknown
}

// normalizeMediaType drops parameters (";charset=utf-8") and lowercases, as
// distribution does with mime.ParseMediaType; Quay's exact compare rejects them.
func normalizeMediaType(mt string) string {
	if mt == "" {
		return ""
	}
	t, _, err := mime.ParseMediaType(mt)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(mt))
	}
	return t
}

// mediaTypeRE is the RFC 6838 type/subtype grammar the OCI descriptor requires.
var mediaTypeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`)

// ValidMediaType reports whether mt is a syntactically valid media type
// without parameters.
func ValidMediaType(mt string) bool { return mediaTypeRE.MatchString(mt) }

func isDockerLayer(mt string) bool {
	switch mt {
	case MediaTypeDockerLayer, MediaTypeDockerLayerTar, MediaTypeDockerForeignLayer, MediaTypeDockerForeignLayerTar:
		return true
	}
	return false
}

func isOCILayer(mt string) bool {
	switch mt {
	case MediaTypeOCILayer, MediaTypeOCILayerGzip, MediaTypeOCILayerZstd,
		MediaTypeOCINondistributable, MediaTypeOCINondistributableGzip, MediaTypeOCINondistributableZstd:
		return true
	}
	return false
}

// isForeign reports layer types whose blobs live outside the registry (urls).
func isForeign(mt string) bool {
	switch mt {
	case MediaTypeDockerForeignLayer, MediaTypeDockerForeignLayerTar,
		MediaTypeOCINondistributable, MediaTypeOCINondistributableGzip, MediaTypeOCINondistributableZstd:
		return true
	}
	return false
}
