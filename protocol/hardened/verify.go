package hardened

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// Verified is a train whose statement and every stop record have been
// checked against the trust store, from the first stop on.
type Verified struct {
	Statement   *Statement
	TrainDigest string // digest of the signed statement payload
	Approval    Approval
	Stops       []StopRecord

	creatorKey  PublicKey
	routeKeys   []PublicKey
	lastPayload string // digest of the last stop payload, or TrainDigest
}

// Complete reports whether every station of the route has signed a stop.
func (v *Verified) Complete() bool { return len(v.Stops) == len(v.Statement.Route) }

// Next returns the id of the station the train is addressed to, or "" when
// the route is complete.
func (v *Verified) Next() string {
	if v.Complete() {
		return ""
	}
	return v.Statement.Route[len(v.Stops)].ID
}

func stationTo(id string) string { return "station:" + id }
func userTo(id string) string    { return "user:" + id }

// ApprovalDigest is the digest approvers sign for a train definition: the
// code tree manifest digest, the exec config and the base image. It is the
// key of TrustStore.TrainApproval.
func ApprovalDigest(manifest string, exec ExecConfig, base string) string {
	b, _ := json.Marshal(struct {
		Protocol string     `json:"protocol"`
		Code     string     `json:"code"`
		Exec     ExecConfig `json:"exec"`
		Base     string     `json:"base"`
	}{Protocol, manifest, exec, base})
	return digestOf(b)
}

// ApprovalDigestFS computes ApprovalDigest for a plaintext code tree, as an
// approver does with the code they reviewed (`trainyard trust approve-train`).
func ApprovalDigestFS(ctx context.Context, code fs.FS, exec ExecConfig, base string) (string, error) {
	m, err := TreeManifest(ctx, code)
	if err != nil {
		return "", err
	}
	return ApprovalDigest(m.Digest(), exec, base), nil
}

// CheckExec compares the exec config found in the image with the signed one.
// The station glue must call it (with Verified.Statement.Exec) before it runs
// the image; a nil and an empty list are equal.
func CheckExec(signed, actual ExecConfig) error {
	eq := func(a, b []string) bool { return len(a) == len(b) && (len(a) == 0 || slices.Equal(a, b)) }
	var diff []string
	if !eq(signed.Entrypoint, actual.Entrypoint) {
		diff = append(diff, fmt.Sprintf("entrypoint %q, signed %q", actual.Entrypoint, signed.Entrypoint))
	}
	if !eq(signed.Cmd, actual.Cmd) {
		diff = append(diff, fmt.Sprintf("cmd %q, signed %q", actual.Cmd, signed.Cmd))
	}
	if !eq(signed.Env, actual.Env) {
		diff = append(diff, fmt.Sprintf("env %q, signed %q", actual.Env, signed.Env))
	}
	if signed.WorkingDir != actual.WorkingDir {
		diff = append(diff, fmt.Sprintf("workdir %q, signed %q", actual.WorkingDir, signed.WorkingDir))
	}
	if signed.User != actual.User {
		diff = append(diff, fmt.Sprintf("user %q, signed %q", actual.User, signed.User))
	}
	if len(diff) > 0 {
		return fmt.Errorf("%w: image config differs from the signed one: %s", ErrTampered, strings.Join(diff, "; "))
	}
	return nil
}

func isHex(s string, n int) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == n && strings.ToLower(s) == s
}

func isDigest(s string) bool { return strings.HasPrefix(s, "sha256:") && isHex(s[7:], 32) }

// checkKeys insists that keys go to exactly the participants in want (by
// "to" name, with the pinned encryption key id), once each.
func checkKeys(what string, keys []WrappedKey, want map[string]string) error {
	if len(keys) != len(want) {
		names := make([]string, 0, len(keys))
		for _, k := range keys {
			names = append(names, k.To)
		}
		return fmt.Errorf("%w: keys for %s go to %q; only %v may read it", ErrRoute, what, names, mapKeys(want))
	}
	got := map[string]bool{}
	for _, k := range keys {
		id, ok := want[k.To]
		if !ok {
			return fmt.Errorf("%w: a key for %s goes to %q, who may not read it", ErrRoute, what, k.To)
		}
		if got[k.To] {
			return fmt.Errorf("%w: two keys for %s go to %q", ErrRoute, what, k.To)
		}
		got[k.To] = true
		if k.KeyID != id {
			return fmt.Errorf("%w: the key for %s to %q is wrapped to key %s, but the trust store has %s", ErrUntrusted, what, k.To, k.KeyID, id)
		}
	}
	return nil
}

func mapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// pinned checks that the key ids the creator wrote down are the trust store's.
func pinned(p Participant, k PublicKey, who string) error {
	if p.SignKey != k.SignKeyID() || p.EncKey != k.EncKeyID() {
		return fmt.Errorf("%w: the train names keys %s/%s for %s, but the trust store has %s/%s",
			ErrUntrusted, p.SignKey, p.EncKey, who, k.SignKeyID(), k.EncKeyID())
	}
	return nil
}

// Verify checks a train against the trust store: the creator's signature
// over the statement, the pinned keys of every participant, the approval,
// and every stop record from the first on (signer, train binding, position,
// chain link, input/output continuity, and who the results are wrapped to).
// It reads no blobs; PreRun and OpenResults check those.
func Verify(ctx context.Context, trust TrustStore, env *Envelope) (*Verified, error) {
	if env == nil || env.Protocol != Protocol {
		return nil, fmt.Errorf("%w: not a %s envelope", ErrMalformed, Protocol)
	}
	raw, err := env.Train.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%w: statement payload: %v", ErrMalformed, err)
	}
	claimed, err := ParseStatement(raw)
	if err != nil {
		return nil, err
	}
	if claimed.Creator.ID == "" {
		return nil, fmt.Errorf("%w: statement has no creator", ErrMalformed)
	}
	creatorKey, err := trust.UserKey(ctx, claimed.Creator.ID)
	if err != nil {
		return nil, fmt.Errorf("creator %q: %w", claimed.Creator.ID, err)
	}
	payload, err := openDSSE(env.Train, StatementType, creatorKey, "train statement of creator "+claimed.Creator.ID)
	if err != nil {
		return nil, err
	}
	st, err := ParseStatement(payload) // the verified bytes, parsed again
	if err != nil {
		return nil, err
	}
	if err := pinned(st.Creator, creatorKey, "creator "+st.Creator.ID); err != nil {
		return nil, err
	}
	if st.ID == "" || !isHex(st.Nonce, 32) || !isDigest(st.Code.Manifest) || !isDigest(st.Code.Blob.Digest) || st.Code.Blob.Size < 0 {
		return nil, fmt.Errorf("%w: statement is missing its id, nonce or code digests", ErrMalformed)
	}
	if len(st.Route) == 0 || len(st.Route) > maxRoute {
		return nil, fmt.Errorf("%w: route has %d stations", ErrRoute, len(st.Route))
	}
	v := &Verified{Statement: st, TrainDigest: digestOf(payload), creatorKey: creatorKey}
	codeWant := map[string]string{}
	for i, p := range st.Route {
		if p.ID == "" {
			return nil, fmt.Errorf("%w: route entry %d has no station id", ErrRoute, i)
		}
		if _, dup := codeWant[stationTo(p.ID)]; dup {
			return nil, fmt.Errorf("%w: station %q appears twice on the route", ErrRoute, p.ID)
		}
		k, err := trust.StationKey(ctx, p.ID)
		if err != nil {
			return nil, fmt.Errorf("route station %q: %w", p.ID, err)
		}
		if err := pinned(p, k, "station "+p.ID); err != nil {
			return nil, err
		}
		v.routeKeys = append(v.routeKeys, k)
		codeWant[stationTo(p.ID)] = p.EncKey
	}
	if got := ApprovalDigest(st.Code.Manifest, st.Exec, st.Base); got != st.Code.Approval {
		return nil, fmt.Errorf("%w: approval digest %s does not match the signed code and exec config (%s)", ErrTampered, st.Code.Approval, got)
	}
	if v.Approval, err = trust.TrainApproval(ctx, st.Code.Approval); err != nil {
		return nil, fmt.Errorf("train %s: %w", st.ID, err)
	}
	if err := checkKeys("the code", st.Code.Keys, codeWant); err != nil {
		return nil, err
	}

	if len(env.Stops) > len(st.Route) {
		return nil, fmt.Errorf("%w: %d stop records for a route of %d stations", ErrRoute, len(env.Stops), len(st.Route))
	}
	prev := v.TrainDigest
	sessions := map[string]bool{}
	for i, se := range env.Stops {
		station := st.Route[i].ID
		who := fmt.Sprintf("stop %d (station %s)", i, station)
		payload, err := openDSSE(se, StopType, v.routeKeys[i], who)
		if err != nil {
			return nil, err
		}
		rec, err := ParseStopRecord(payload)
		if err != nil {
			return nil, err
		}
		switch {
		case rec.Train != v.TrainDigest:
			return nil, fmt.Errorf("%w: %s was signed for train %s, not this one (%s)", ErrReplay, who, rec.Train, v.TrainDigest)
		case rec.Index != i:
			return nil, fmt.Errorf("%w: %s claims position %d", ErrReplay, who, rec.Index)
		case rec.Station != station:
			return nil, fmt.Errorf("%w: %s names station %q", ErrRoute, who, rec.Station)
		case rec.Prev != prev:
			return nil, fmt.Errorf("%w: %s does not follow the previous stop (prev %s, want %s)", ErrReplay, who, rec.Prev, prev)
		case !isHex(rec.Session, 32) || sessions[rec.Session]:
			return nil, fmt.Errorf("%w: %s has a missing or reused session id", ErrReplay, who)
		case !isDigest(rec.Output.Manifest) || !isDigest(rec.Output.Blob.Digest) || rec.Output.Blob.Size < 0:
			return nil, fmt.Errorf("%w: %s has no results digest", ErrTampered, who)
		}
		sessions[rec.Session] = true
		if i == 0 && rec.Input != nil {
			return nil, fmt.Errorf("%w: %s claims input results at the first stop", ErrTampered, who)
		}
		if i > 0 && (rec.Input == nil || *rec.Input != v.Stops[i-1].Output.Blob) {
			return nil, fmt.Errorf("%w: %s consumed results other than those stop %d produced", ErrTampered, who, i-1)
		}
		want := map[string]string{userTo(st.Creator.ID): st.Creator.EncKey}
		if i+1 < len(st.Route) {
			want[stationTo(st.Route[i+1].ID)] = st.Route[i+1].EncKey
		}
		if err := checkKeys(fmt.Sprintf("the results of %s", who), rec.Output.Keys, want); err != nil {
			return nil, err
		}
		v.Stops = append(v.Stops, *rec)
		prev = digestOf(payload)
	}
	v.lastPayload = prev
	return v, nil
}
