package manifest

import "github.com/opencontainers/go-digest"

// emptyLayer is the 32-byte gzip of an empty tar that schema1 manifests use
// for layers that change no files (Docker's and Quay's EMPTY_LAYER_BYTES).
var emptyLayer = [...]byte{
	0x1f, 0x8b, 0x08, 0x00, 0x00, 0x09, 0x6e, 0x88, 0x00, 0xff, 0x62, 0x18, 0x05, 0xa3, 0x60, 0x14,
	0x8c, 0x58, 0x00, 0x08, 0x00, 0x00, 0xff, 0xff, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00,
}

// EmptyLayer returns the 32-byte gzip of an empty tar that schema1
// manifests use for layers that change no files (Docker's and Quay's
// EMPTY_LAYER_BYTES). Each call returns a fresh copy: the bytes are not a
// variable an importer could change for every caller.
func EmptyLayer() []byte { b := emptyLayer; return b[:] }

// EmptyLayerDigest is the digest of EmptyLayer.
const EmptyLayerDigest digest.Digest = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
