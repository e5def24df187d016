package hardened

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// Protocol is the protocol identifier carried by every v1 document.
const Protocol = "trainyard/v1"

// DSSE payload types of the two signed documents.
const (
	StatementType = "application/vnd.trainyard.train.v1+json"
	StopType      = "application/vnd.trainyard.stop.v1+json"
)

// maxEnvelopeSize bounds what ParseEnvelope reads (the envelope lives in the
// image as /opt/train_config.json and is small: about 2 KiB per stop).
const maxEnvelopeSize = 4 << 20

// maxRoute bounds the number of stations on a route.
const maxRoute = 64

// Envelope is the train's config document (/opt/train_config.json): the
// creator-signed statement and one station-signed record per finished stop.
// Nothing in it is trusted before Verify; it carries no keys, only key ids
// that must match the trust store.
type Envelope struct {
	Protocol string          `json:"protocol"`
	Train    dsse.Envelope   `json:"train"`
	Stops    []dsse.Envelope `json:"stops"`
}

// Statement is what the creator signs once, at creation.
type Statement struct {
	Protocol string        `json:"protocol"`
	ID       string        `json:"id"`
	Nonce    string        `json:"nonce"` // 32 random bytes, hex
	Created  time.Time     `json:"created"`
	Creator  Participant   `json:"creator"`
	Route    []Participant `json:"route"`
	// Base names the base image the code layer sits on (e.g. a digest
	// reference); opaque here, signed, and checked by the station glue.
	Base string     `json:"base,omitempty"`
	Exec ExecConfig `json:"exec"`
	Code CodeRef    `json:"code"`
}

// Participant names a user or station with the key ids the creator pinned.
type Participant struct {
	ID      string `json:"id"`
	SignKey string `json:"sign_key"`
	EncKey  string `json:"enc_key"`
}

// ExecConfig is the part of the image config that decides what runs. It is
// signed by the creator and covered by the approval.
type ExecConfig struct {
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"working_dir"`
	User       string   `json:"user"`
}

// CodeRef describes the sealed code blob.
type CodeRef struct {
	Manifest string       `json:"manifest"` // digest of the plaintext code tree manifest
	Approval string       `json:"approval"` // ApprovalDigest(Manifest, Exec, Base)
	Blob     BlobRef      `json:"blob"`
	Keys     []WrappedKey `json:"keys"` // content key, one per route station
}

// BlobRef pins a sealed blob by digest and size.
type BlobRef struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// StopRecord is what a station signs after running the train.
type StopRecord struct {
	Protocol string     `json:"protocol"`
	Train    string     `json:"train"` // digest of the statement payload
	Index    int        `json:"index"`
	Station  string     `json:"station"`
	Session  string     `json:"session"` // fresh 32 random bytes per hop, hex
	Prev     string     `json:"prev"`    // digest of the previous stop payload, or Train for stop 0
	Input    *BlobRef   `json:"input,omitempty"`
	Output   ResultsRef `json:"output"`
	Time     time.Time  `json:"time"`
}

// ResultsRef describes a sealed results blob.
type ResultsRef struct {
	Manifest string       `json:"manifest"` // digest of the plaintext results tree manifest
	Blob     BlobRef      `json:"blob"`
	Keys     []WrappedKey `json:"keys"` // to the next station (if any) and the creator
}

// ParseEnvelope decodes an envelope strictly (unknown fields and trailing
// data are refused). It checks shape only; Verify checks trust.
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > maxEnvelopeSize {
		return nil, fmt.Errorf("%w: envelope larger than %d bytes", ErrMalformed, maxEnvelopeSize)
	}
	var e Envelope
	if err := strictJSON(data, &e); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	if e.Protocol != Protocol {
		return nil, fmt.Errorf("%w: protocol %q, want %q", ErrMalformed, e.Protocol, Protocol)
	}
	if len(e.Stops) > maxRoute {
		return nil, fmt.Errorf("%w: %d stops", ErrMalformed, len(e.Stops))
	}
	return &e, nil
}

// ReadEnvelope reads and parses an envelope from r.
func ReadEnvelope(r io.Reader) (*Envelope, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxEnvelopeSize+1))
	if err != nil {
		return nil, err
	}
	return ParseEnvelope(b)
}

// Marshal encodes the envelope as indented JSON.
func (e *Envelope) Marshal() ([]byte, error) { return json.MarshalIndent(e, "", "  ") }

func (e *Envelope) clone() *Envelope {
	c := *e
	c.Stops = append([]dsse.Envelope(nil), e.Stops...)
	return &c
}

func strictJSON(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data")
	}
	var extra json.RawMessage
	if err := d.Decode(&extra); err != io.EOF {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// ParseStatement decodes a statement payload strictly.
func ParseStatement(payload []byte) (*Statement, error) {
	var s Statement
	if err := strictJSON(payload, &s); err != nil {
		return nil, fmt.Errorf("%w: statement: %v", ErrMalformed, err)
	}
	if s.Protocol != Protocol {
		return nil, fmt.Errorf("%w: statement protocol %q", ErrMalformed, s.Protocol)
	}
	return &s, nil
}

// ParseStopRecord decodes a stop record payload strictly.
func ParseStopRecord(payload []byte) (*StopRecord, error) {
	var s StopRecord
	if err := strictJSON(payload, &s); err != nil {
		return nil, fmt.Errorf("%w: stop record: %v", ErrMalformed, err)
	}
	if s.Protocol != Protocol {
		return nil, fmt.Errorf("%w: stop protocol %q", ErrMalformed, s.Protocol)
	}
	return &s, nil
}

// signDSSE signs payload with the ed25519 key over DSSE's PAE encoding.
func signDSSE(payloadType string, payload []byte, k *PrivateKey) dsse.Envelope {
	sig := ed25519.Sign(k.Sign, dsse.PAE(payloadType, payload))
	return dsse.Envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []dsse.Signature{{KeyID: k.Public().SignKeyID(), Sig: base64.StdEncoding.EncodeToString(sig)}},
	}
}

// openDSSE checks a single-signature DSSE envelope against the trusted key
// and returns its payload. who names the signer in errors.
func openDSSE(env dsse.Envelope, payloadType string, pub PublicKey, who string) ([]byte, error) {
	if env.PayloadType != payloadType {
		return nil, fmt.Errorf("%w: %s: payload type %q, want %q", ErrMalformed, who, env.PayloadType, payloadType)
	}
	if len(env.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %s: %d signatures, want exactly 1", ErrSignature, who, len(env.Signatures))
	}
	s := env.Signatures[0]
	if want := pub.SignKeyID(); s.KeyID != want {
		return nil, fmt.Errorf("%w: %s: signed with key %s but the trust store has %s", ErrUntrusted, who, s.KeyID, want)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: payload: %v", ErrMalformed, who, err)
	}
	sig, err := base64.StdEncoding.DecodeString(s.Sig)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: signature encoding: %v", ErrSignature, who, err)
	}
	if !ed25519.Verify(pub.Sign, dsse.PAE(payloadType, payload), sig) {
		return nil, fmt.Errorf("%w: %s: signature does not verify with the trusted key", ErrSignature, who)
	}
	return payload, nil
}
