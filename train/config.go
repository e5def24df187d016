package train

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"

	"github.com/trainyard/trainyard/errdefs"
)

// ErrConfig is wrapped by every error about a malformed train_config.json.
var ErrConfig = errdefs.New("invalid train config", errdefs.ErrMalformed)

// Config is the PHT train_config.json (pydantic v1 TrainConfig of
// pht-train-container-library 2.x). Unknown keys are ignored like pydantic's
// default; output order and null fields follow the Python serializer.
type Config struct {
	Source          *Source      `json:"source"`
	Creator         Creator      `json:"creator"`
	ProposalID      IntOrString  `json:"proposal_id"`
	ID              string       `json:"@id"`
	Context         RawJSON      `json:"@context"`
	SessionID       HexString    `json:"session_id"`
	Route           []RouteEntry `json:"route"`
	FileList        []string     `json:"file_list"`
	Hash            HexString    `json:"hash"`
	Signature       HexString    `json:"signature"`
	Build           Build        `json:"build"`
	ResultHash      *HexString   `json:"result_hash"`
	ResultSignature *HexString   `json:"result_signature"`
}

// Source names the master image or repository the train was built from.
// It is not signed by anything; never trust it.
type Source struct {
	Type    string  `json:"type"`
	Address string  `json:"address"`
	Tag     *string `json:"tag"`
	Branch  *string `json:"branch"`
}

// Creator is the user who created the train.
type Creator struct {
	ID                IntOrString `json:"id"`
	RSAPublicKey      HexString   `json:"rsa_public_key"`
	PaillierPublicKey RawJSON     `json:"paillier_public_key"`
	EncryptedKey      *HexString  `json:"encrypted_key"`
}

// RouteEntry is one stop of the route.
type RouteEntry struct {
	Station      IntOrString       `json:"station"`
	EcoSystem    string            `json:"eco_system"`
	RSAPublicKey HexString         `json:"rsa_public_key"`
	Index        int               `json:"index"`
	Signature    *StationSignature `json:"signature"`
	EncryptedKey *HexString        `json:"encrypted_key"`
}

// StationSignature is a station's link of the digest chain.
type StationSignature struct {
	Signature HexString `json:"signature"`
	Digest    HexString `json:"digest"`
}

// Build holds the builder's signature over hash||signature and its key.
type Build struct {
	Signature    HexString `json:"signature"`
	RSAPublicKey HexString `json:"rsa_public_key"`
}

// Eco systems accepted by the Python library ("aac" is rejected there too).
var ecoSystems = map[string]bool{"tue": true, "padme": true}

// ParseConfig parses and validates a train_config.json. It is tolerant where
// pydantic coerces (numeric ids, hex case and whitespace) and strict where
// security depends on it (route indices 0..n-1 and unique, unique stations,
// every required field present, hex fields that the protocol decodes).
func ParseConfig(data []byte) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrConfig, len(data), MaxConfigSize)
	}
	// Required keys are checked on a generic decode first, because Go's
	// decoder silently leaves absent fields at their zero value.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for _, k := range []string{"creator", "proposal_id", "@id", "session_id", "route", "file_list", "hash", "signature", "build"} {
		if v, ok := top[k]; !ok || string(bytes.TrimSpace(v)) == "null" {
			return nil, fmt.Errorf("%w: missing field %q", ErrConfig, k)
		}
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the invariants ParseConfig enforces; call it after editing.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	if c.ID == "" {
		return bad("empty @id")
	}
	if c.Creator.ID.IsZero() {
		return bad("missing creator.id")
	}
	if c.ProposalID.IsZero() {
		return bad("missing proposal_id")
	}
	checks := []struct {
		name string
		h    HexString
	}{
		{"session_id", c.SessionID}, {"hash", c.Hash}, {"signature", c.Signature},
		{"creator.rsa_public_key", c.Creator.RSAPublicKey},
		{"build.signature", c.Build.Signature}, {"build.rsa_public_key", c.Build.RSAPublicKey},
	}
	for _, ch := range checks {
		if b, err := ch.h.Bytes(); err != nil || len(b) == 0 {
			return bad("%s is not a non-empty hex string", ch.name)
		}
	}
	for _, opt := range []struct {
		name string
		h    *HexString
	}{{"result_hash", c.ResultHash}, {"result_signature", c.ResultSignature}, {"creator.encrypted_key", c.Creator.EncryptedKey}} {
		if opt.h != nil {
			if _, err := opt.h.Bytes(); err != nil {
				return bad("%s is not a hex string", opt.name)
			}
		}
	}
	if len(c.Route) == 0 {
		return bad("empty route")
	}
	seenIdx := make(map[int]bool, len(c.Route))
	seenStation := make(map[string]bool, len(c.Route))
	for i, r := range c.Route {
		if r.Station.IsZero() {
			return bad("route[%d]: missing station", i)
		}
		if !ecoSystems[r.EcoSystem] {
			return bad("route[%d]: eco_system %q is not one of tue, padme", i, r.EcoSystem)
		}
		if b, err := r.RSAPublicKey.Bytes(); err != nil || len(b) == 0 {
			return bad("route[%d]: rsa_public_key is not a non-empty hex string", i)
		}
		if r.Index < 0 || r.Index >= len(c.Route) || seenIdx[r.Index] {
			return bad("route[%d]: index %d is not a unique value in 0..%d", i, r.Index, len(c.Route)-1)
		}
		seenIdx[r.Index] = true
		if seenStation[r.Station.String()] {
			return bad("route[%d]: station %s appears twice", i, r.Station)
		}
		seenStation[r.Station.String()] = true
		if r.EncryptedKey != nil {
			if _, err := r.EncryptedKey.Bytes(); err != nil {
				return bad("route[%d]: encrypted_key is not a hex string", i)
			}
		}
		if s := r.Signature; s != nil {
			if _, err := s.Signature.Bytes(); err != nil {
				return bad("route[%d]: signature.signature is not a hex string", i)
			}
			if _, err := s.Digest.Bytes(); err != nil {
				return bad("route[%d]: signature.digest is not a hex string", i)
			}
		}
	}
	if (c.ResultHash == nil) != (c.ResultSignature == nil) {
		return bad("result_hash and result_signature must both be set or both be null")
	}
	return nil
}

// Stop returns the route entry of station id. A station matches on its
// string form and on pydantic's coerced form, so "007" in STATION_ID finds a
// station that the Python side turned into 7 (the Python library itself
// never finds it, which is a bug, not a contract).
func (c *Config) Stop(id string) (*RouteEntry, error) {
	want := coerce(id)
	for i := range c.Route {
		s := c.Route[i].Station
		if s.raw == id || s.String() == want.String() {
			return &c.Route[i], nil
		}
	}
	return nil, fmt.Errorf("%w: station %q is not on the route", ErrConfig, id)
}

// StopAt returns the route entry with the given index.
func (c *Config) StopAt(index int) *RouteEntry {
	for i := range c.Route {
		if c.Route[i].Index == index {
			return &c.Route[i]
		}
	}
	return nil
}

// SortRoute orders the route by index, as the Python post-run writes it.
func (c *Config) SortRoute() {
	r := make([]RouteEntry, len(c.Route))
	for _, e := range c.Route {
		if e.Index >= 0 && e.Index < len(r) {
			r[e.Index] = e
		}
	}
	c.Route = r
}

// Marshal writes the config like pydantic's .json(indent=2, by_alias=True).
func (c *Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// HexString is a hex-encoded byte string as written by Python's .hex().
// Decoding follows bytes.fromhex: case-insensitive, whitespace ignored.
type HexString string

// Hex returns the lowercase hex form of b.
func Hex(b []byte) HexString { return HexString(hex.EncodeToString(b)) }

// HexPtr returns a pointer to Hex(b), for the nullable fields.
func HexPtr(b []byte) *HexString { h := Hex(b); return &h }

// Bytes decodes the string.
func (h HexString) Bytes() ([]byte, error) {
	s := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, string(h))
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("bad hex string: %w", err)
	}
	return b, nil
}

// UnmarshalJSON accepts only JSON strings (pydantic rejects other types).
func (h *HexString) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("hex field must be a string, got %s", abbreviate(b))
	}
	*h = HexString(s)
	return nil
}

// IntOrString is pydantic's Union[int, str]: a string that Python's int()
// accepts ("007", " 1_000 ") becomes an integer and is written back as a
// JSON number; anything else stays a string.
type IntOrString struct {
	raw   string   // as written in the JSON (string content or number text)
	n     *big.Int // set when the value coerces to an integer
	isSet bool
}

// NewIntOrString coerces s the way pydantic does.
func NewIntOrString(s string) IntOrString { return coerce(s) }

func coerce(s string) IntOrString {
	v := IntOrString{raw: s, isSet: true}
	if n, ok := pyInt(s); ok {
		v.n = n
	}
	return v
}

// pyInt parses like Python's int(str): surrounding whitespace, an optional
// sign, decimal digits with single underscores between them.
func pyInt(s string) (*big.Int, bool) {
	s = strings.TrimSpace(s)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return nil, false
	}
	digits := strings.ReplaceAll(s, "_", "")
	for _, r := range digits {
		if r < '0' || r > '9' {
			return nil, false
		}
	}
	n, ok := new(big.Int).SetString(digits, 10)
	if !ok || len(digits) > 4300 {
		return nil, false
	}
	if neg {
		n.Neg(n)
	}
	return n, true
}

// IsZero reports whether the value is absent.
func (v IntOrString) IsZero() bool { return !v.isSet }

// IsInt reports whether the value coerced to an integer.
func (v IntOrString) IsInt() bool { return v.n != nil }

// String is Python's str() of the coerced value: what the hashes use.
func (v IntOrString) String() string {
	if v.n != nil {
		return v.n.String()
	}
	return v.raw
}

// UnmarshalJSON accepts a string, an integer, a float (truncated like
// pydantic v1's int()) or a boolean (1/0).
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = coerce(s)
	case string(b) == "true" || string(b) == "false":
		n := big.NewInt(0)
		if string(b) == "true" {
			n.SetInt64(1)
		}
		*v = IntOrString{raw: string(b), n: n, isSet: true}
	case string(b) == "null":
		*v = IntOrString{}
	case bytes.ContainsAny(b, ".eE"):
		// Python's json reads this as a float64; int() truncates it.
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("expected an integer or a string, got %s", abbreviate(b))
		}
		n, _ := big.NewFloat(math.Trunc(f)).Int(nil)
		*v = IntOrString{raw: string(b), n: n, isSet: true}
	default:
		// Python's int() refuses more than 4300 digits by default.
		n, ok := new(big.Int).SetString(string(b), 10)
		if !ok || len(b) > 4300 {
			return fmt.Errorf("expected an integer or a string, got %s", abbreviate(b))
		}
		*v = IntOrString{raw: string(b), n: n, isSet: true}
	}
	return nil
}

// MarshalJSON writes integers as numbers, like pydantic after coercion.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if !v.isSet {
		return []byte("null"), nil
	}
	if v.n != nil {
		return []byte(v.n.String()), nil
	}
	return json.Marshal(v.raw)
}

// RawJSON keeps an opaque JSON value (or null) as it was.
type RawJSON json.RawMessage

// MarshalJSON writes null for an empty value.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON keeps a copy of the raw value.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*r = nil
		return nil
	}
	*r = append((*r)[:0], b...)
	return nil
}

func abbreviate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// UnmarshalJSON coerces index like pydantic's int ("1" and 1.0 become 1)
// and insists that it is present.
func (r *RouteEntry) UnmarshalJSON(b []byte) error {
	type plain RouteEntry
	var aux struct {
		plain
		Index IntOrString `json:"index"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*r = RouteEntry(aux.plain)
	if !aux.Index.IsInt() || !aux.Index.n.IsInt64() || aux.Index.n.Int64() < 0 || aux.Index.n.Int64() > MaxEntries {
		return fmt.Errorf("route index %q is not a small non-negative integer", aux.Index.raw)
	}
	r.Index = int(aux.Index.n.Int64())
	return nil
}
