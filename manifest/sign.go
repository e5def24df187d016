package manifest

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// Schema1Builder assembles an unsigned schema1 manifest. Layers are added
// leaf first, the order schema1 stores them in (as Quay's builder does).
type Schema1Builder struct {
	name, tag, arch string
	fsLayers        []schema1FSLayer
	history         []schema1History
}

type schema1FSLayer struct {
	BlobSum digest.Digest `json:"blobSum"`
}

type schema1History struct {
	V1Compatibility string `json:"v1Compatibility"`
}

// NewSchema1Builder starts a manifest for repository name, tag and
// architecture ("amd64" when empty).
func NewSchema1Builder(name, tag, arch string) *Schema1Builder {
	if arch == "" {
		arch = "amd64"
	}
	return &Schema1Builder{name: name, tag: tag, arch: arch}
}

// AddLayer appends a layer below the ones already added (leaf first).
func (b *Schema1Builder) AddLayer(blobSum digest.Digest, v1Compatibility string) *Schema1Builder {
	b.fsLayers = append(b.fsLayers, schema1FSLayer{blobSum})
	b.history = append(b.history, schema1History{v1Compatibility})
	return b
}

// Build renders the unsigned manifest with Docker's 3-space indent and checks
// it with the strict parser, so a builder cannot emit what Parse refuses.
func (b *Schema1Builder) Build() ([]byte, error) {
	doc := struct {
		SchemaVersion int              `json:"schemaVersion"`
		Name          string           `json:"name"`
		Tag           string           `json:"tag"`
		Architecture  string           `json:"architecture"`
		FSLayers      []schema1FSLayer `json:"fsLayers"`
		History       []schema1History `json:"history"`
	}{1, b.name, b.tag, b.arch, b.fsLayers, b.history}
	out, err := json.MarshalIndent(doc, "", "   ")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := ParseSchema1(out); err != nil {
		return nil, fmt.Errorf("build schema1: %w", err)
	}
	return out, nil
}

// SignOption configures SignSchema1.
type SignOption func(*signOptions)

type signOptions struct{ now func() time.Time }

// WithSignTime fixes the protected header's time (tests, reproducible output).
func WithSignTime(t time.Time) SignOption {
	return func(o *signOptions) { o.now = func() time.Time { return t } }
}

// SignSchema1 signs a schema1 manifest with key, libtrust style: the
// signature covers the document up to its closing brace (formatLength), the
// protected header records that cut, and the signatures are spliced in as the
// last key. A signed input is re-signed from its payload (old signatures
// dropped). EC keys sign with the algorithm their curve fixes (P-256: ES256,
// P-384: ES384, P-521: ES512); RSA keys sign RS256. Other implementations
// (libtrust, distribution v2, containers/image) verify the result.
func SignSchema1(manifest []byte, key crypto.Signer, opts ...SignOption) ([]byte, error) {
	o := signOptions{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	s, err := ParseSchema1(manifest)
	if err != nil {
		return nil, err
	}
	if s.payloadErr != nil {
		return nil, s.payloadErr
	}
	payload := s.Payload()
	alg, err := algFor(key.Public())
	if err != nil {
		return nil, err
	}
	jk, err := publicJWK(key.Public())
	if err != nil {
		return nil, err
	}
	closeIdx := lastNonSpace(payload, len(payload))
	if closeIdx < 0 || payload[closeIdx] != '}' {
		return nil, fmt.Errorf("%w: document does not end with }", ErrInvalid)
	}
	lastRune := lastNonSpace(payload, closeIdx)
	if lastRune < 0 || payload[lastRune] == ',' || payload[lastRune] == '{' {
		return nil, fmt.Errorf("%w: cannot splice signatures after %q", ErrInvalid, payload[max(lastRune, 0)])
	}
	formatLength := lastRune + 1
	protected, err := json.Marshal(map[string]any{
		"formatLength": formatLength,
		"formatTail":   b64encode(payload[formatLength:]),
		"time":         o.now().UTC().Format(time.RFC3339),
	})
	if err != nil {
		return nil, err
	}
	protectedB64 := b64encode(protected)
	sig, err := signJWS(key, alg, []byte(protectedB64+"."+b64encode(payload)))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	type header struct {
		JWK jwk    `json:"jwk"`
		Alg string `json:"alg"`
	}
	sigs := []struct {
		Header    header `json:"header"`
		Signature string `json:"signature"`
		Protected string `json:"protected"`
	}{{header{jk, alg}, b64encode(sig), protectedB64}}

	indent := detectIndent(payload)
	var buf bytes.Buffer
	buf.Write(payload[:formatLength])
	if indent != "" {
		m, err := json.MarshalIndent(sigs, indent, indent)
		if err != nil {
			return nil, err
		}
		buf.WriteString(",\n" + indent + `"signatures": `)
		buf.Write(m)
		buf.WriteString("\n}")
	} else {
		m, err := json.Marshal(sigs)
		if err != nil {
			return nil, err
		}
		buf.WriteString(`,"signatures":`)
		buf.Write(m)
		buf.WriteString("}")
	}
	out := buf.Bytes()
	// Re-read what we emit: the payload must round-trip and verify.
	signed, err := ParseSchema1(out)
	if err != nil {
		return nil, fmt.Errorf("signed manifest does not parse: %w", err)
	}
	if !bytes.Equal(signed.Payload(), payload) {
		return nil, fmt.Errorf("%w: signed payload does not round-trip", ErrInvalid)
	}
	if _, err := signed.Verify(); err != nil {
		return nil, fmt.Errorf("fresh signature does not verify: %w", err)
	}
	return out, nil
}

func lastNonSpace(b []byte, before int) int {
	for i := before - 1; i >= 0; i-- {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return i
	}
	return -1
}

// detectIndent returns the whitespace before the first key when the
// document is pretty-printed, as libtrust's detectJSONIndent does.
func detectIndent(b []byte) string {
	i := bytes.IndexByte(b, '{')
	if i < 0 || i+1 >= len(b) || b[i+1] != '\n' {
		return ""
	}
	j := i + 2
	for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
		j++
	}
	return string(b[i+2 : j])
}
