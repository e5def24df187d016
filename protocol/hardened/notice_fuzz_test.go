package hardened

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

func FuzzParseNotice(f *testing.F) {
	n := newTestNet(f)
	env, err := SignNotice(n.stations["st-a"], testNotice())
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := env.DecodeB64Payload()
	f.Add(raw)
	f.Add([]byte(`{"protocol":"trainyard/v1","train":"t","station":"s","index":-1,"outcome":"x","reason":"","time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"protocol":"trainyard/v1","extra":1}`))
	f.Add([]byte(`null`))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		nt, err := ParseNotice(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parse error not ErrMalformed: %v", err)
			}
		} else {
			b, err := json.Marshal(nt)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseNotice(b); err != nil {
				t.Fatalf("re-parse of marshalled notice: %v", err)
			}
		}
		// Verification of arbitrary payloads under the seed's signature
		// never panics and accepts only the signed bytes.
		e := dsse.Envelope{PayloadType: NoticeType, Payload: base64.StdEncoding.EncodeToString(data), Signatures: env.Signatures}
		if _, err := VerifyNotice(ctx, n.trust, e); err == nil && string(data) != string(raw) {
			t.Fatal("a changed payload verified")
		}
	})
}
