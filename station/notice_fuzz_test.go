package station

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/trainyard/trainyard/protocol/hardened"
)

// FuzzDecodeNoticeEnvelope: the outbox artifact's JSON decodes strictly or
// fails with ErrMalformed, and what decodes round-trips.
func FuzzDecodeNoticeEnvelope(f *testing.F) {
	f.Add([]byte(`{"payloadType":"application/vnd.trainyard.stop-notice.v1+json","payload":"e30=","signatures":[{"keyid":"k","sig":"c2ln"}]}`))
	f.Add([]byte(`{"payloadType":"x","payload":"","signatures":[]} {}`))
	f.Add([]byte(`{"extra":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := decodeNoticeEnvelope(b)
		if err != nil {
			if !errors.Is(err, hardened.ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		out, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeNoticeEnvelope(out); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
