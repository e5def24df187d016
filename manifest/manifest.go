// Package manifest parses, validates, verifies, signs and converts container
// image manifests: Docker schema1 (signed JWS "prettyjws"), Docker schema2,
// Docker manifest lists, OCI manifests (images and artifacts) and OCI indexes.
//
// It is strict where registries such as Quay are lenient: raw bytes are the
// identity (digests are never taken over re-serialized JSON); duplicate and
// case-variant JSON keys are refused; schema1 content is read only from the
// signed payload (CVE-2014-8179); a declared media type must agree with the
// content, and a document that could be read as both manifest and index is
// refused (CVE-2021-41190); configs and children are checked by digest, not
// only by size; sizes are bounded (4 MiB by default).
package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Descriptor and Platform are the OCI types; Docker lists use the same shape.
type (
	Descriptor = ocispec.Descriptor
	Platform   = ocispec.Platform
)

// DefaultMaxSize is the manifest size limit distribution and containers/image
// use (4 MiB); the OCI distribution spec asks registries to accept at least 4 MB.
const DefaultMaxSize = 4 << 20

// MaxEntries bounds layers, children and schema1 history entries: far above
// real images (Docker caps at 127 layers), low enough to bound the work.
const MaxEntries = 10000

// Manifest is what every parsed kind offers.
type Manifest interface {
	// Kind is the manifest family.
	Kind() Kind
	// MediaType is the effective media type (declared, in the body or implied).
	MediaType() string
	// Raw returns the bytes as parsed; they are the identity and are served verbatim.
	Raw() []byte
	// Digest is the sha256 manifest digest: of the raw bytes, or of the signed
	// payload for schema1.
	Digest() digest.Digest
	// DigestAlg is Digest with another algorithm (sha256 or sha512).
	DigestAlg(alg digest.Algorithm) (digest.Digest, error)
	// References lists the blobs and manifests this one points to: config and
	// layers, children, or subject. Schema1 layers have size -1 (unknown).
	References() []Descriptor
}

type options struct {
	maxSize   int64
	mediaType string
}

// Option configures Parse and Read.
type Option func(*options)

// WithMaxSize sets the size limit in bytes (DefaultMaxSize when n <= 0).
func WithMaxSize(n int64) Option { return func(o *options) { o.maxSize = n } }

// WithMediaType declares the media type the manifest arrived with (a
// Content-Type header or the parent descriptor's mediaType). The content must
// agree with it.
func WithMediaType(mt string) Option { return func(o *options) { o.mediaType = mt } }

func buildOptions(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.maxSize <= 0 {
		o.maxSize = DefaultMaxSize
	}
	return o
}

// Read reads a whole manifest from r, refusing more than the size limit
// without reading past it.
func Read(r io.Reader, opts ...Option) ([]byte, error) {
	o := buildOptions(opts)
	b, err := io.ReadAll(io.LimitReader(r, o.maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if int64(len(b)) > o.maxSize {
		return nil, tooLarge(o.maxSize)
	}
	return b, nil
}

func tooLarge(limit int64) error {
	return fmt.Errorf("%w: larger than the %d-byte limit (raise it with the max-size option)", ErrTooLarge, limit)
}

// probe holds the top-level fields that decide a document's kind.
type probe struct {
	SchemaVersion json.RawMessage `json:"schemaVersion"`
	MediaType     *string         `json:"mediaType"`
	Config        json.RawMessage `json:"config"`
	Layers        json.RawMessage `json:"layers"`
	Manifests     json.RawMessage `json:"manifests"`
	FSLayers      json.RawMessage `json:"fsLayers"`
}

// Parse validates raw and returns the manifest. The kind comes from the
// declared media type (WithMediaType) when given, else from the content; a
// mediaType field in the body must match either way.
func Parse(raw []byte, opts ...Option) (Manifest, error) {
	o := buildOptions(opts)
	if int64(len(raw)) > o.maxSize {
		return nil, tooLarge(o.maxSize)
	}
	if err := checkJSON(raw, true); err != nil {
		return nil, err
	}
	kind, err := detect(raw, o.mediaType)
	if err != nil {
		return nil, err
	}
	declared := normalizeMediaType(o.mediaType)
	switch kind {
	case KindSchema1:
		s, err := parseSchema1(raw)
		if err != nil {
			return nil, err
		}
		if declared == MediaTypeSchema1Signed && !s.Signed() {
			return nil, fmt.Errorf("%w: declared %s but the manifest has no signatures", ErrMediaType, declared)
		}
		return s, nil
	case KindDockerV2, KindOCIManifest:
		return parseImage(raw, kind)
	case KindDockerList, KindOCIIndex:
		return parseIndex(raw, kind)
	}
	return nil, fmt.Errorf("%w: unknown manifest kind", ErrInvalid)
}

// detect decides the kind. Declared type, body mediaType and body shape must
// all agree.
func detect(raw []byte, declaredMT string) (Kind, error) {
	var p probe
	if err := json.Unmarshal(raw, &p); err != nil {
		return KindUnknown, fmt.Errorf("%w: not a JSON object: %w", ErrInvalid, err)
	}
	declared := normalizeMediaType(declaredMT)
	declaredKind := KindUnknown
	if declared != "" && declared != "application/json" {
		declaredKind = KindOf(declared)
		if declaredKind == KindUnknown {
			return KindUnknown, fmt.Errorf("%w: %q is not a manifest media type", ErrMediaType, clip(declaredMT))
		}
	}
	bodyKind := KindUnknown
	if p.MediaType != nil {
		bodyKind = KindOf(*p.MediaType)
		if bodyKind == KindUnknown || *p.MediaType != normalizeMediaType(*p.MediaType) {
			return KindUnknown, fmt.Errorf("%w: body mediaType %q is not a manifest media type", ErrMediaType, clip(*p.MediaType))
		}
		if bodyKind == KindSchema1 {
			// schema1 has no mediaType field; one claiming schema1 is not schema1.
			return KindUnknown, fmt.Errorf("%w: schema1 manifests carry no mediaType field", ErrMediaType)
		}
	}
	if declaredKind != KindUnknown && bodyKind != KindUnknown && normalizeMediaType(*p.MediaType) != declared {
		return KindUnknown, fmt.Errorf("%w: declared %s, body says %s", ErrMediaType, declared, clip(*p.MediaType))
	}
	hasManifests := present(p.Manifests)
	hasImage := present(p.Config) || present(p.Layers)
	if hasManifests && hasImage {
		return KindUnknown, fmt.Errorf("%w: has both manifests and config/layers", ErrAmbiguous)
	}
	shapeKind := KindUnknown
	switch {
	case string(p.SchemaVersion) == "1" || (present(p.FSLayers) && !hasManifests && !hasImage):
		// fsLayers with another schemaVersion is a broken schema1: let the
		// schema1 parser name the problem.
		shapeKind = KindSchema1
	case hasManifests:
		shapeKind = KindOCIIndex // or docker list; refined below
	case hasImage:
		shapeKind = KindOCIManifest
	}
	want := declaredKind
	if want == KindUnknown {
		want = bodyKind
	}
	if want == KindUnknown {
		if shapeKind == KindUnknown {
			return KindUnknown, fmt.Errorf("%w: neither a manifest nor an index (schemaVersion %q)", ErrInvalid, clip(string(p.SchemaVersion)))
		}
		return shapeKind, nil
	}
	if shapeKind != KindUnknown && family(shapeKind) != family(want) {
		return KindUnknown, fmt.Errorf("%w: declared %s but the content is shaped like a %s", ErrMediaType, want, shapeKind)
	}
	if want == KindSchema1 && present(p.Manifests) {
		return KindUnknown, fmt.Errorf("%w: schema1 with manifests", ErrAmbiguous)
	}
	return want, nil
}

// family groups kinds by shape: schema1, single manifest, index.
func family(k Kind) int {
	switch k {
	case KindSchema1:
		return 1
	case KindDockerV2, KindOCIManifest:
		return 2
	case KindDockerList, KindOCIIndex:
		return 3
	}
	return 0
}

func present(m json.RawMessage) bool { return len(m) > 0 && !bytes.Equal(m, []byte("null")) }

// Digest parses raw and returns its manifest digest.
func Digest(raw []byte, opts ...Option) (digest.Digest, error) {
	m, err := Parse(raw, opts...)
	if err != nil {
		return "", err
	}
	return m.Digest(), nil
}

// VerifyDigest checks that m's manifest digest, with want's algorithm, is want.
// This is the check behind a pull by digest.
func VerifyDigest(m Manifest, want digest.Digest) error {
	if _, err := ParseDigest(string(want)); err != nil {
		return err
	}
	got, err := m.DigestAlg(want.Algorithm())
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: manifest digest is %s, want %s", ErrDigestMismatch, got, want)
	}
	return nil
}
