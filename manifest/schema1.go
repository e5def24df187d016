package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Schema1 is a Docker image manifest v2 schema 1, signed ("prettyjws") or not.
//
// Everything it exposes is read from the signed payload (bytes[:formatLength]
// + formatTail), never from the bytes around it (CVE-2014-8179). Parsing also
// refuses documents whose unsigned surroundings disagree with the payload.
// Parsing does not check signatures: call Verify.
type Schema1 struct {
	raw        []byte
	payload    []byte
	sigs       []jwsSignature
	payloadErr error // the signed payload is not a valid manifest: Verify fails
	body       schema1Body
	layers     []Schema1Layer // base to leaf
}

type schema1Body struct {
	SchemaVersion json.RawMessage `json:"schemaVersion"`
	Name          string          `json:"name"`
	Tag           string          `json:"tag"`
	Architecture  string          `json:"architecture"`
	FSLayers      []struct {
		BlobSum string `json:"blobSum"`
	} `json:"fsLayers"`
	History []struct {
		V1Compatibility string `json:"v1Compatibility"`
	} `json:"history"`
}

type jwsSignature struct {
	Header struct {
		Alg   string          `json:"alg"`
		JWK   json.RawMessage `json:"jwk"`
		Chain json.RawMessage `json:"x5c"`
	} `json:"header"`
	Signature string `json:"signature"`
	Protected string `json:"protected"`

	formatLength int
	formatTail   []byte
	time         string
}

// Schema1Layer is one layer with its v1 metadata, taken from the signed payload.
type Schema1Layer struct {
	BlobSum digest.Digest `json:"blobSum"`
	V1      V1Metadata    `json:"v1"`
	// RawV1Compatibility is the history entry's JSON string exactly as signed.
	RawV1Compatibility string `json:"v1Compatibility"`
}

// V1Metadata are the legacy v1 image fields of one layer.
type V1Metadata struct {
	ID        string            `json:"id"`
	Parent    string            `json:"parent,omitempty"`
	Created   string            `json:"created,omitempty"`
	Comment   string            `json:"comment,omitempty"`
	Author    string            `json:"author,omitempty"`
	Command   string            `json:"command,omitempty"` // canonical JSON of container_config.Cmd
	Labels    map[string]string `json:"labels,omitempty"`
	Size      int64             `json:"size,omitempty"`
	Throwaway bool              `json:"throwaway,omitempty"`
}

// SignatureInfo describes one JWS signature block.
type SignatureInfo struct {
	Alg   string `json:"alg"`
	KeyID string `json:"keyID"` // libtrust kid computed from the embedded key
	Time  string `json:"time,omitempty"`
}

var (
	v1IDRE = regexp.MustCompile(`^[a-f0-9]{64}$`)
	tagRE  = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
)

// ParseSchema1 parses a schema1 manifest; other kinds are refused with ErrMediaType.
func ParseSchema1(raw []byte, opts ...Option) (*Schema1, error) {
	m, err := Parse(raw, opts...)
	if err != nil {
		return nil, err
	}
	s, ok := m.(*Schema1)
	if !ok {
		return nil, fmt.Errorf("%w: %s, not schema1", ErrMediaType, m.Kind())
	}
	return s, nil
}

func parseSchema1(raw []byte) (*Schema1, error) {
	s := &Schema1{raw: raw, payload: raw}
	var outer struct {
		Signatures json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &outer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if outer.Signatures != nil {
		payload, sigs, err := jwsPayload(raw, outer.Signatures)
		if err != nil {
			return nil, err
		}
		s.payload, s.sigs = payload, sigs
	}
	if err := decodeStrict(raw, &s.body, true); err != nil {
		return nil, err
	}
	if s.Signed() {
		if err := s.checkPayload(); err != nil {
			if !isPayloadSyntax(err) {
				return nil, err
			}
			// A payload cut at the wrong place (a re-indented file) still
			// parses as a document; it just cannot verify, and exposes nothing.
			s.payloadErr = err
		}
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	if s.payloadErr != nil {
		s.layers = nil
	}
	return s, nil
}

type payloadSyntaxError struct{ err error }

func (e *payloadSyntaxError) Error() string {
	return "signed payload is not valid JSON: " + e.err.Error()
}
func (e *payloadSyntaxError) Unwrap() error { return ErrSignature }

func isPayloadSyntax(err error) bool { _, ok := err.(*payloadSyntaxError); return ok }

// checkPayload decodes the body from the signed payload and requires the
// unsigned document to say exactly the same outside "signatures".
func (s *Schema1) checkPayload() error {
	if err := checkJSON(s.payload, true); err != nil {
		return &payloadSyntaxError{err}
	}
	var body schema1Body
	if err := decodeStrict(s.payload, &body, true); err != nil {
		return &payloadSyntaxError{err}
	}
	var outerTop, payTop map[string]json.RawMessage
	if json.Unmarshal(s.raw, &outerTop) != nil || json.Unmarshal(s.payload, &payTop) != nil {
		return &payloadSyntaxError{fmt.Errorf("not an object")}
	}
	if _, ok := payTop["signatures"]; ok {
		return fmt.Errorf("%w: the signed payload itself contains signatures", ErrInvalid)
	}
	delete(outerTop, "signatures")
	if len(outerTop) != len(payTop) {
		return fmt.Errorf("%w: fields outside the signed payload (CVE-2014-8179)", ErrInvalid)
	}
	for k, v := range outerTop {
		pv, ok := payTop[k]
		if !ok || !jsonEqual(v, pv) {
			return fmt.Errorf("%w: field %q differs from the signed payload (CVE-2014-8179)", ErrInvalid, clip(k))
		}
	}
	s.body = body
	return nil
}

func jsonEqual(a, b json.RawMessage) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// jwsPayload parses the signature container and rebuilds the signed payload
// with libtrust's rules, plus the bounds checks libtrust lacks.
func jwsPayload(raw []byte, sigsJSON json.RawMessage) ([]byte, []jwsSignature, error) {
	if len(sigsJSON) == 0 || sigsJSON[0] != '[' {
		return nil, nil, fmt.Errorf("%w: signatures is not an array", ErrInvalid)
	}
	var sigs []jwsSignature
	if err := json.Unmarshal(sigsJSON, &sigs); err != nil {
		return nil, nil, fmt.Errorf("%w: signatures: %w", ErrInvalid, err)
	}
	if len(sigs) == 0 {
		return nil, nil, fmt.Errorf("%w: signatures is empty", ErrInvalid)
	}
	for i := range sigs {
		sg := &sigs[i]
		if sg.Protected == "" || sg.Signature == "" || sg.Header.Alg == "" {
			return nil, nil, fmt.Errorf("%w: signature %d lacks protected, signature or header.alg", ErrInvalid, i)
		}
		if !present(sg.Header.JWK) {
			if present(sg.Header.Chain) {
				return nil, nil, fmt.Errorf("%w: signature %d: x5c certificate chains", ErrUnsupported, i)
			}
			return nil, nil, fmt.Errorf("%w: signature %d has no jwk", ErrInvalid, i)
		}
		ph, err := b64decode(sg.Protected)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: signature %d: protected header is not base64url", ErrInvalid, i)
		}
		if _, err := b64decode(sg.Signature); err != nil {
			return nil, nil, fmt.Errorf("%w: signature %d: signature is not base64url", ErrInvalid, i)
		}
		var hdr struct {
			FormatLength json.RawMessage `json:"formatLength"`
			FormatTail   *string         `json:"formatTail"`
			Time         string          `json:"time"`
			Alg          *string         `json:"alg"`
			Crit         json.RawMessage `json:"crit"`
		}
		if err := decodeStrict(ph, &hdr, false); err != nil {
			return nil, nil, fmt.Errorf("signature %d: protected header: %w", i, err)
		}
		if hdr.Alg != nil && *hdr.Alg != sg.Header.Alg {
			return nil, nil, fmt.Errorf("%w: signature %d: protected alg %q differs from header alg", ErrInvalid, i, clip(*hdr.Alg))
		}
		if present(hdr.Crit) {
			return nil, nil, fmt.Errorf("%w: signature %d: crit header", ErrUnsupported, i)
		}
		if hdr.FormatTail == nil || !present(hdr.FormatLength) {
			return nil, nil, fmt.Errorf("%w: signature %d: protected header lacks formatLength/formatTail", ErrInvalid, i)
		}
		fl, err := sizeValue(json.Number(hdr.FormatLength), "formatLength")
		if err != nil || fl > int64(len(raw)) {
			return nil, nil, fmt.Errorf("%w: signature %d: formatLength %s is out of range 0..%d", ErrInvalid, i, clip(string(hdr.FormatLength)), len(raw))
		}
		tail, err := b64decode(*hdr.FormatTail)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: signature %d: formatTail is not base64url", ErrInvalid, i)
		}
		sg.formatLength, sg.formatTail, sg.time = int(fl), tail, hdr.Time
		if i > 0 && (sg.formatLength != sigs[0].formatLength || !bytes.Equal(tail, sigs[0].formatTail)) {
			return nil, nil, fmt.Errorf("%w: signatures disagree on formatLength/formatTail", ErrInvalid)
		}
	}
	payload := make([]byte, 0, sigs[0].formatLength+len(sigs[0].formatTail))
	payload = append(payload, raw[:sigs[0].formatLength]...)
	payload = append(payload, sigs[0].formatTail...)
	return payload, sigs, nil
}

// Schema1Payload returns the payload a schema1 manifest's digest is taken
// over (the raw bytes when unsigned), without validating the manifest itself.
// Like containers/image's Digest it does not verify signatures.
func Schema1Payload(raw []byte) ([]byte, error) {
	if err := checkJSON(raw, false); err != nil {
		return nil, err
	}
	var outer struct {
		Signatures json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &outer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if outer.Signatures == nil {
		return raw, nil
	}
	p, _, err := jwsPayload(raw, outer.Signatures)
	return p, err
}

func (s *Schema1) validate() error {
	b := &s.body
	if string(b.SchemaVersion) != "1" {
		return fmt.Errorf("%w: schemaVersion %s, want 1", ErrInvalid, clip(string(b.SchemaVersion)))
	}
	if len(b.Name) > 255 {
		return fmt.Errorf("%w: name is longer than 255 characters", ErrInvalid)
	}
	named, err := reference.ParseNormalizedNamed(b.Name)
	if err != nil || !reference.IsNameOnly(named) {
		return fmt.Errorf("%w: name %q is not a repository name", ErrInvalid, clip(b.Name))
	}
	if b.Tag != "" && !tagRE.MatchString(b.Tag) {
		return fmt.Errorf("%w: tag %q", ErrInvalid, clip(b.Tag))
	}
	if len(b.FSLayers) != len(b.History) {
		return fmt.Errorf("%w: %d fsLayers but %d history entries", ErrInvalid, len(b.FSLayers), len(b.History))
	}
	if len(b.FSLayers) == 0 {
		return fmt.Errorf("%w: no layers", ErrInvalid)
	}
	if len(b.FSLayers) > MaxEntries {
		return fmt.Errorf("%w: %d layers, more than %d", ErrInvalid, len(b.FSLayers), MaxEntries)
	}
	n := len(b.FSLayers)
	layers := make([]Schema1Layer, n)
	seen := map[string]int{}
	for i := 0; i < n; i++ { // schema1 order: leaf first; layers[] is base first
		d, err := ParseDigest(b.FSLayers[i].BlobSum)
		if err != nil {
			return fmt.Errorf("fsLayers[%d]: %w", i, err)
		}
		v1, err := parseV1Compatibility(b.History[i].V1Compatibility)
		if err != nil {
			return fmt.Errorf("history[%d]: %w", i, err)
		}
		layers[n-1-i] = Schema1Layer{BlobSum: d, V1: v1, RawV1Compatibility: b.History[i].V1Compatibility}
	}
	// c/image's rules: 64-hex ids, each parent the layer below, and the same
	// id only on consecutive entries (Docker wrote such duplicates).
	for i, l := range layers {
		if j, ok := seen[l.V1.ID]; ok && j != i-1 {
			return fmt.Errorf("%w: v1 id %s appears twice non-consecutively", ErrInvalid, l.V1.ID)
		}
		seen[l.V1.ID] = i
		var want string
		if i > 0 {
			want = layers[i-1].V1.ID
			if want == l.V1.ID { // consecutive duplicate: same parent as its twin
				want = layers[i-1].V1.Parent
			}
		}
		if l.V1.Parent != want {
			return fmt.Errorf("%w: layer %s has parent %q, want %q", ErrInvalid, l.V1.ID, clip(l.V1.Parent), want)
		}
	}
	s.layers = layers
	return nil
}

func parseV1Compatibility(s string) (V1Metadata, error) {
	var v struct {
		ID              string          `json:"id"`
		Parent          string          `json:"parent"`
		Created         string          `json:"created"`
		Comment         string          `json:"comment"`
		Author          string          `json:"author"`
		Size            json.Number     `json:"Size"`
		Throwaway       bool            `json:"throwaway"`
		ContainerConfig json.RawMessage `json:"container_config"`
		Config          json.RawMessage `json:"config"`
	}
	if err := decodeStrict([]byte(s), &v, false); err != nil {
		return V1Metadata{}, fmt.Errorf("v1Compatibility: %w", err)
	}
	if !v1IDRE.MatchString(v.ID) {
		return V1Metadata{}, fmt.Errorf("%w: v1 id %q is not 64 lowercase hex", ErrInvalid, clip(v.ID))
	}
	if v.Parent != "" && !v1IDRE.MatchString(v.Parent) {
		return V1Metadata{}, fmt.Errorf("%w: v1 parent %q is not 64 lowercase hex", ErrInvalid, clip(v.Parent))
	}
	m := V1Metadata{ID: v.ID, Parent: v.Parent, Created: v.Created, Comment: v.Comment, Author: v.Author, Throwaway: v.Throwaway}
	if v.Size != "" {
		n, err := sizeValue(v.Size, "v1 Size")
		if err != nil {
			return V1Metadata{}, err
		}
		m.Size = n
	}
	var cc struct {
		Cmd json.RawMessage `json:"Cmd"`
	}
	if present(v.ContainerConfig) {
		if err := json.Unmarshal(v.ContainerConfig, &cc); err != nil {
			return V1Metadata{}, fmt.Errorf("%w: container_config: %w", ErrInvalid, err)
		}
		if present(cc.Cmd) {
			c, err := canonicalJSON(cc.Cmd)
			if err != nil {
				return V1Metadata{}, err
			}
			m.Command = string(c)
		}
	}
	var cfg struct {
		Labels map[string]string `json:"Labels"`
	}
	if present(v.Config) {
		if err := json.Unmarshal(v.Config, &cfg); err != nil {
			return V1Metadata{}, fmt.Errorf("%w: config: %w", ErrInvalid, err)
		}
		m.Labels = cfg.Labels
	}
	return m, nil
}

// canonicalJSON re-encodes JSON with sorted keys and no whitespace, the
// docker/distribution canonical form used for v1 metadata.
func canonicalJSON(b []byte) ([]byte, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return json.Marshal(v)
}

// Kind implements Manifest.
func (s *Schema1) Kind() Kind { return KindSchema1 }

// MediaType is prettyjws when signed, v1+json otherwise (as Quay reports it).
func (s *Schema1) MediaType() string {
	if s.Signed() {
		return MediaTypeSchema1Signed
	}
	return MediaTypeSchema1
}

// Raw returns the bytes as parsed.
func (s *Schema1) Raw() []byte { return s.raw }

// Payload returns the signed payload (the raw bytes when unsigned).
func (s *Schema1) Payload() []byte { return s.payload }

// Digest is sha256 of the payload: signatures never change the digest.
func (s *Schema1) Digest() digest.Digest { return digest.SHA256.FromBytes(s.payload) }

// DigestAlg is Digest with another algorithm.
func (s *Schema1) DigestAlg(alg digest.Algorithm) (digest.Digest, error) {
	return Compute(alg, s.payload)
}

// Signed reports whether the manifest carries JWS signatures.
func (s *Schema1) Signed() bool { return len(s.sigs) > 0 }

// Name, Tag and Architecture are the signed payload's fields ("" when the
// payload is unusable: nothing unsigned is exposed).
func (s *Schema1) Name() string         { return s.field(s.body.Name) }
func (s *Schema1) Tag() string          { return s.field(s.body.Tag) }
func (s *Schema1) Architecture() string { return s.field(s.body.Architecture) }

func (s *Schema1) field(v string) string {
	if s.payloadErr != nil {
		return ""
	}
	return v
}

// Layers returns the layers base to leaf with their v1 metadata, generated
// only from the signed payload. It fails when the payload is not a manifest.
func (s *Schema1) Layers() ([]Schema1Layer, error) {
	if s.payloadErr != nil {
		return nil, s.payloadErr
	}
	return append([]Schema1Layer(nil), s.layers...), nil
}

// References lists the layer blobs base to leaf (duplicates kept, size unknown).
func (s *Schema1) References() []Descriptor {
	if s.payloadErr != nil {
		return nil
	}
	out := make([]Descriptor, 0, len(s.layers))
	for _, l := range s.layers {
		out = append(out, Descriptor{MediaType: MediaTypeDockerLayer, Digest: l.BlobSum, Size: -1})
	}
	return out
}

// Signatures describes the signature blocks without verifying them.
func (s *Schema1) Signatures() []SignatureInfo {
	out := make([]SignatureInfo, 0, len(s.sigs))
	for _, sg := range s.sigs {
		info := SignatureInfo{Alg: sg.Header.Alg, Time: sg.time}
		if pub, err := parseJWK(sg.Header.JWK); err == nil {
			info.KeyID, _ = KeyID(pub)
		}
		out = append(out, info)
	}
	return out
}

// Verify checks every signature over the payload with its embedded key.
// The keys are self-asserted: this proves integrity, not who signed; compare
// the returned key ids with the ones you trust.
func (s *Schema1) Verify() ([]SignatureInfo, error) {
	if !s.Signed() {
		return nil, ErrUnsigned
	}
	if s.payloadErr != nil {
		// %v on purpose: the cause is itself a kind (ErrInvalid), and a
		// failed Verify is ErrSignature only, as documented.
		return nil, fmt.Errorf("%w: %v", ErrSignature, s.payloadErr)
	}
	encPayload := b64encode(s.payload)
	infos := make([]SignatureInfo, 0, len(s.sigs))
	for i, sg := range s.sigs {
		pub, err := parseJWK(sg.Header.JWK)
		if err != nil {
			return nil, fmt.Errorf("signature %d: %w", i, err)
		}
		sig, err := b64decode(sg.Signature)
		if err != nil {
			return nil, fmt.Errorf("%w: signature %d is not base64url", ErrSignature, i)
		}
		input := []byte(sg.Protected + "." + encPayload)
		if err := verifyJWS(sg.Header.Alg, pub, input, sig); err != nil {
			return nil, fmt.Errorf("signature %d: %w", i, err)
		}
		kid, _ := KeyID(pub)
		infos = append(infos, SignatureInfo{Alg: sg.Header.Alg, KeyID: kid, Time: sg.time})
	}
	return infos, nil
}

// Labels returns the leaf layer's config labels.
func (s *Schema1) Labels() map[string]string {
	if len(s.layers) == 0 || s.payloadErr != nil {
		return nil
	}
	return s.layers[len(s.layers)-1].V1.Labels
}
