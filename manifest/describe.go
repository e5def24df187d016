package manifest

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Summary is a JSON-friendly view of a manifest for people and scripts.
type Summary struct {
	Kind      string        `json:"kind"`
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int           `json:"size"`

	// Schema1: read from the signed payload; signatures are listed unverified.
	Name         string          `json:"name,omitempty"`
	Tag          string          `json:"tag,omitempty"`
	Architecture string          `json:"architecture,omitempty"`
	Signatures   []SignatureInfo `json:"signatures,omitempty"`
	V1Layers     []Schema1Layer  `json:"v1Layers,omitempty"`
	PayloadError string          `json:"payloadError,omitempty"`

	// Schema2 / OCI manifest.
	Config       *Descriptor  `json:"config,omitempty"`
	Layers       []Descriptor `json:"layers,omitempty"`
	ArtifactType string       `json:"artifactType,omitempty"`
	Subject      *Descriptor  `json:"subject,omitempty"`

	// List / index.
	Manifests []Descriptor `json:"manifests,omitempty"`

	Annotations map[string]string `json:"annotations,omitempty"`
}

// Describe summarizes m.
func Describe(m Manifest) Summary {
	s := Summary{Kind: m.Kind().String(), MediaType: m.MediaType(), Digest: m.Digest(), Size: len(m.Raw())}
	switch x := m.(type) {
	case *Schema1:
		s.Name, s.Tag, s.Architecture = x.Name(), x.Tag(), x.Architecture()
		s.Signatures = x.Signatures()
		layers, err := x.Layers()
		if err != nil {
			s.PayloadError = err.Error()
		}
		s.V1Layers = layers
	case *Image:
		c := x.Config()
		s.Config, s.Layers, s.ArtifactType, s.Subject, s.Annotations = &c, x.Layers(), x.ArtifactType(), x.Subject(), x.Annotations()
	case *Index:
		s.Manifests, s.Annotations = x.Manifests(), x.Annotations()
		if x.m.Subject != nil {
			s.Subject = x.m.Subject
		}
		s.ArtifactType = x.m.ArtifactType
	}
	return s
}

// Result says what VerifyManifest checked.
type Result struct {
	Kind       Kind
	Digest     digest.Digest
	Signatures []SignatureInfo
	Config     *Descriptor // set when the config was checked
}

func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "verified %s %s", r.Kind, r.Digest)
	for _, s := range r.Signatures {
		fmt.Fprintf(&b, "; signature %s key %s", s.Alg, s.KeyID)
	}
	if r.Config != nil {
		fmt.Fprintf(&b, "; config %s (%d bytes) matches", r.Config.Digest, r.Config.Size)
	}
	return b.String()
}

// VerifyManifest is the whole check behind "trainyard manifest verify": m is
// already well formed (Parse); schema1 must carry signatures that all verify;
// when config is non-nil, m must be an image manifest whose config
// descriptor matches it by size and digest.
func VerifyManifest(m Manifest, config []byte) (*Result, error) {
	r := &Result{Kind: m.Kind(), Digest: m.Digest()}
	switch x := m.(type) {
	case *Schema1:
		if config != nil {
			return nil, fmt.Errorf("%w: schema1 manifests have no config blob", ErrInvalid)
		}
		infos, err := x.Verify()
		if err != nil {
			return nil, err
		}
		r.Signatures = infos
	case *Image:
		if config != nil {
			if err := x.VerifyConfig(config); err != nil {
				return nil, err
			}
			c := x.Config()
			r.Config = &c
		}
	case *Index:
		if config != nil {
			return nil, fmt.Errorf("%w: an index has no config blob; verify its children", ErrInvalid)
		}
	}
	return r, nil
}
