package hardened

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// NoticeType is the DSSE payload type of a stop notice.
const NoticeType = "application/vnd.trainyard.stop-notice.v1+json"

// Bounds of a stop notice. A reason longer than MaxNoticeReason is cut when
// signing (a run error can be long); MaxNoticeSize bounds the payload read
// before anything is verified, with room for JSON escapes of the reason.
const (
	MaxNoticeReason = 4096
	MaxNoticeSize   = 64 << 10
	maxNoticeID     = 256
	maxOutcome      = 32
)

// Notice is what a station signs when a stop ends without a stop record
// (refused, rejected, withheld, failed): the creator learns the outcome and
// the reason. It carries no results.
type Notice struct {
	Protocol    string    `json:"protocol"`     // Protocol constant
	Train       string    `json:"train"`        // the statement's train id
	TrainDigest string    `json:"train_digest"` // digest of the signed statement payload ("" if the train could not be parsed that far)
	Station     string    `json:"station"`
	Index       int       `json:"index"`   // stop index on the route, -1 when unknown
	Outcome     string    `json:"outcome"` // "refused", "rejected", "withheld", "failed" (others allowed: just strings)
	Reason      string    `json:"reason"`
	ExitCode    int       `json:"exit_code,omitempty"`
	Time        time.Time `json:"time"`
}

// check validates a notice's fields; every violation is ErrMalformed.
func (n *Notice) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: stop notice: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	switch {
	case n.Protocol != Protocol:
		return bad("protocol %q, want %q", n.Protocol, Protocol)
	case n.Train == "" || len(n.Train) > maxNoticeID:
		return bad("train id is empty or longer than %d bytes", maxNoticeID)
	case n.TrainDigest != "" && !isDigest(n.TrainDigest):
		return bad("train digest %q is not a sha256 digest", n.TrainDigest)
	case n.Station == "" || len(n.Station) > maxNoticeID:
		return bad("station id is empty or longer than %d bytes", maxNoticeID)
	case n.Index < -1 || n.Index >= maxRoute:
		return bad("stop index %d out of range", n.Index)
	case !plainWord(n.Outcome, maxOutcome):
		return bad("outcome %q: want 1..%d letters, digits, '-' or '_'", n.Outcome, maxOutcome)
	case len(n.Reason) > MaxNoticeReason || !utf8.ValidString(n.Reason):
		return bad("reason is longer than %d bytes or not UTF-8", MaxNoticeReason)
	case n.Time.IsZero():
		return bad("no time")
	}
	return nil
}

// plainWord: an outcome is printed as is, so it may not carry anything a
// terminal would interpret.
func plainWord(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ParseNotice decodes a notice payload strictly (unknown fields, trailing
// data, oversized input and out-of-range fields are ErrMalformed). It checks
// shape only; VerifyNotice checks the signature.
func ParseNotice(payload []byte) (*Notice, error) {
	if len(payload) > MaxNoticeSize {
		return nil, fmt.Errorf("%w: stop notice larger than %d bytes", ErrMalformed, MaxNoticeSize)
	}
	var n Notice
	if err := strictJSON(payload, &n); err != nil {
		return nil, fmt.Errorf("%w: stop notice: %v", ErrMalformed, err)
	}
	if err := n.check(); err != nil {
		return nil, err
	}
	return &n, nil
}

// cutReason shortens s to at most max bytes on a rune boundary, marking the cut.
func cutReason(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	const mark = " [cut]"
	s = s[:max-len(mark)]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + mark
}

// SignNotice signs n with the station's key as a DSSE envelope (like stop
// records). An empty Protocol is set, a zero Time is now, and a reason over
// MaxNoticeReason is cut, so a long run error still makes a valid notice.
func SignNotice(k *PrivateKey, n Notice) (dsse.Envelope, error) {
	if k == nil {
		return dsse.Envelope{}, fmt.Errorf("hardened: SignNotice needs the station's private key")
	}
	if n.Protocol == "" {
		n.Protocol = Protocol
	}
	if n.Time.IsZero() {
		n.Time = time.Now()
	}
	n.Time = n.Time.UTC()
	n.Reason = cutReason(n.Reason, MaxNoticeReason)
	if err := n.check(); err != nil {
		return dsse.Envelope{}, err
	}
	payload, err := json.Marshal(n)
	if err != nil {
		return dsse.Envelope{}, err
	}
	if len(payload) > MaxNoticeSize {
		return dsse.Envelope{}, fmt.Errorf("%w: stop notice is %d bytes, at most %d", ErrMalformed, len(payload), MaxNoticeSize)
	}
	return signDSSE(NoticeType, payload, k), nil
}

// VerifyNotice checks a signed notice against the trust store's key of the
// station it names and returns it. The payload is bounded before it is
// decoded. Errors wrap ErrMalformed (shape), ErrUntrusted (unknown station,
// or signed with another key id) or ErrSignature (a signature that does not
// verify).
func VerifyNotice(ctx context.Context, trust TrustStore, env dsse.Envelope) (*Notice, error) {
	if env.PayloadType != NoticeType {
		return nil, fmt.Errorf("%w: payload type %q, want %q", ErrMalformed, env.PayloadType, NoticeType)
	}
	if len(env.Payload) > base64.StdEncoding.EncodedLen(MaxNoticeSize) {
		return nil, fmt.Errorf("%w: stop notice larger than %d bytes", ErrMalformed, MaxNoticeSize)
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: stop notice payload: %v", ErrMalformed, err)
	}
	claimed, err := ParseNotice(raw)
	if err != nil {
		return nil, err
	}
	key, err := trust.StationKey(ctx, claimed.Station)
	if err != nil {
		return nil, fmt.Errorf("stop notice of station %q: %w", claimed.Station, err)
	}
	payload, err := openDSSE(env, NoticeType, key, "stop notice of station "+claimed.Station)
	if err != nil {
		return nil, err
	}
	return ParseNotice(payload) // the verified bytes, parsed again
}
