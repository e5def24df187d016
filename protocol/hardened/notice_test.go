package hardened

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

func testNotice() Notice {
	return Notice{Train: "t1", TrainDigest: digestOf([]byte("statement")), Station: "st-a", Index: 0,
		Outcome: "failed", Reason: "train exited with status 3", ExitCode: 3,
		Time: time.Date(2026, 12, 1, 10, 0, 0, 0, time.FixedZone("x", 3600))}
}

// TestNoticeRoundTrip: a signed notice verifies against the station's key
// in the trust store and comes back field for field (time in UTC).
func TestNoticeRoundTrip(t *testing.T) {
	n := newTestNet(t)
	in := testNotice()
	env, err := SignNotice(n.stations["st-a"], in)
	if err != nil {
		t.Fatal(err)
	}
	if env.PayloadType != NoticeType || len(env.Signatures) != 1 || env.Signatures[0].KeyID != n.stations["st-a"].Public().SignKeyID() {
		t.Fatalf("envelope %+v", env)
	}
	got, err := VerifyNotice(context.Background(), n.trust, env)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Protocol, want.Time = Protocol, in.Time.UTC()
	if *got != want || got.Time.Location() != time.UTC {
		t.Fatalf("verified %+v, want %+v", *got, want)
	}
	// Defaults: protocol and time are filled in, index -1 is allowed.
	env, err = SignNotice(n.stations["st-b"], Notice{Train: "t2", Station: "st-b", Index: -1, Outcome: "refused", Reason: "bad signature"})
	if err != nil {
		t.Fatal(err)
	}
	got, err = VerifyNotice(context.Background(), n.trust, env)
	if err != nil || got.Protocol != Protocol || time.Since(got.Time) > time.Minute || got.TrainDigest != "" {
		t.Fatalf("defaults: %+v, %v", got, err)
	}
}

// reencode returns env with its payload replaced by p, signatures kept.
func reencode(env dsse.Envelope, p string) dsse.Envelope {
	env.Payload = base64.StdEncoding.EncodeToString([]byte(p))
	return env
}

// TestNoticeRefused: tampering, the wrong key, an unknown station and
// malformed notices are each refused with the sentinel callers branch on.
func TestNoticeRefused(t *testing.T) {
	n := newTestNet(t)
	ctx := context.Background()
	good, err := SignNotice(n.stations["st-a"], testNotice())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := good.DecodeB64Payload()
	nobody := mustKey(t)
	signed := func(k *PrivateKey, mod func(*Notice)) dsse.Envelope {
		nt := testNotice()
		mod(&nt)
		env, err := SignNotice(k, nt)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	cases := []struct {
		name string
		env  dsse.Envelope
		want error
		msg  string
	}{
		{"tampered reason", reencode(good, strings.Replace(string(raw), "status 3", "status 0", 1)), ErrSignature, "does not verify"},
		{"tampered outcome", reencode(good, strings.Replace(string(raw), `"failed"`, `"refused"`, 1)), ErrSignature, "does not verify"},
		{"station name changed", reencode(good, strings.Replace(string(raw), `"st-a"`, `"st-b"`, 1)), ErrUntrusted, "trust store has"},
		{"signed by another station", signed(n.stations["st-b"], func(*Notice) {}), ErrUntrusted, "st-a"},
		{"unknown station", signed(nobody, func(x *Notice) { x.Station = "mallory" }), ErrUntrusted, `"mallory"`},
		{"wrong payload type", func() dsse.Envelope { e := good; e.PayloadType = StopType; return e }(), ErrMalformed, "payload type"},
		{"two signatures", func() dsse.Envelope {
			e := good
			e.Signatures = append([]dsse.Signature{}, good.Signatures[0], good.Signatures[0])
			return e
		}(), ErrSignature, "exactly 1"},
		{"no signature", func() dsse.Envelope { e := good; e.Signatures = nil; return e }(), ErrSignature, ""},
		{"unknown field", reencode(good, strings.Replace(string(raw), `{`, `{"results":"x",`, 1)), ErrMalformed, "unknown field"},
		{"trailing data", reencode(good, string(raw)+"{}"), ErrMalformed, "trailing"},
		{"bad base64", func() dsse.Envelope { e := good; e.Payload = "!!"; return e }(), ErrMalformed, "payload"},
		{"oversized", reencode(good, string(raw)+strings.Repeat(" ", MaxNoticeSize)), ErrMalformed, "larger than"},
		{"escape in outcome", reencode(good, strings.Replace(string(raw), `"failed"`, `"fail\u001b[2J"`, 1)), ErrMalformed, "outcome"},
		{"bad digest", reencode(good, strings.Replace(string(raw), `"sha256:`, `"md5:`, 1)), ErrMalformed, "digest"},
		{"other protocol", reencode(good, strings.Replace(string(raw), Protocol, "pht-v2", 1)), ErrMalformed, "protocol"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := VerifyNotice(ctx, n.trust, c.env)
			wantErr(t, err, c.want, c.msg)
		})
	}
}

// TestSignNotice: a long reason is cut on a rune boundary so the notice
// still verifies; a notice without station, train or outcome is not signed.
func TestSignNotice(t *testing.T) {
	n := newTestNet(t)
	nt := testNotice()
	nt.Reason = strings.Repeat("é", MaxNoticeReason) + "\xff"
	env, err := SignNotice(n.stations["st-a"], nt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyNotice(context.Background(), n.trust, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Reason) > MaxNoticeReason || !utf8.ValidString(got.Reason) || !strings.HasSuffix(got.Reason, "[cut]") {
		t.Fatalf("reason of %d bytes, valid %v: ...%q", len(got.Reason), utf8.ValidString(got.Reason), got.Reason[len(got.Reason)-10:])
	}
	for name, mod := range map[string]func(*Notice){
		"no station": func(x *Notice) { x.Station = "" },
		"no train":   func(x *Notice) { x.Train = "" },
		"no outcome": func(x *Notice) { x.Outcome = "" },
		"index -2":   func(x *Notice) { x.Index = -2 },
		"protocol":   func(x *Notice) { x.Protocol = "other" },
	} {
		nt := testNotice()
		mod(&nt)
		if _, err := SignNotice(n.stations["st-a"], nt); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	if _, err := SignNotice(nil, testNotice()); err == nil {
		t.Error("signed without a key")
	}
}
