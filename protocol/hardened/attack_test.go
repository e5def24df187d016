package hardened

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The attacks of research/pht.md §5, each refused by v1 with a typed error.

// preRun runs only the pre-run step at station with a fresh pair of dirs.
func (n *testNet) preRun(t *testing.T, trust TrustStore, station string, key *PrivateKey, env *Envelope, code, results []byte, opts ...Option) (*Session, error) {
	t.Helper()
	dir := t.TempDir()
	tr := Train{Envelope: env, Code: bytes.NewReader(code)}
	if results != nil {
		tr.Results = bytes.NewReader(results)
	}
	s, err := PreRun(context.Background(), Party{ID: station, Key: key, Trust: trust}, tr, Dirs{Code: filepath.Join(dir, "code"), Results: filepath.Join(dir, "res")}, opts...)
	if err != nil {
		// A refused train leaves no plaintext behind.
		for _, d := range []string{"code", "res"} {
			if ents, _ := os.ReadDir(filepath.Join(dir, d)); len(ents) > 0 {
				t.Fatalf("refused train left %d entries in %s", len(ents), d)
			}
		}
	}
	return s, err
}

// resignStatement lets a test act as someone holding key: it changes the
// statement and signs it again.
func resignStatement(t *testing.T, env *Envelope, key *PrivateKey, mutate func(*Statement)) *Envelope {
	t.Helper()
	st := mustStatement(t, env)
	mutate(st)
	payload, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	e := env.clone()
	e.Train = signDSSE(StatementType, payload, key)
	return e
}

// editStatement changes the statement without re-signing (a plain tamper).
func editStatement(t *testing.T, env *Envelope, mutate func(*Statement)) *Envelope {
	t.Helper()
	e := resignStatement(t, env, mustKey(t), mutate)
	e.Train.Signatures = env.Train.Signatures
	return e
}

func stopRecord(t *testing.T, env *Envelope, i int) *StopRecord {
	t.Helper()
	raw, err := env.Stops[i].DecodeB64Payload()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseStopRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func resignStop(t *testing.T, env *Envelope, i int, key *PrivateKey, mutate func(*StopRecord)) *Envelope {
	t.Helper()
	r := stopRecord(t, env, i)
	mutate(r)
	payload, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	e := env.clone()
	e.Stops[i] = signDSSE(StopType, payload, key)
	return e
}

// §5.1: a train rebuilt by someone who can push but holds no trusted key.
func TestAttackForgedRebuild(t *testing.T) {
	n := newTestNet(t)
	ctx := context.Background()
	mallory := mustKey(t)
	writeFile(t, filepath.Join(n.code, "run.sh"), "#!/bin/sh\ncat /data/* > /opt/pht_results/leak\n", 0o755)

	// The attacker builds with his own key under the creator's name; his
	// view of the network has his key for "alice" (in PHT: the config's key).
	fake := NewMemoryTrust()
	fake.AddUser("alice", mallory.Public())
	for id, k := range n.stations {
		fake.AddStation(id, k.Public())
	}
	var blob bytes.Buffer
	env, err := Create(ctx, Party{ID: "alice", Key: mallory, Trust: fake}, Spec{Route: n.route, Exec: n.exec, Code: os.DirFS(n.code)}, &blob)
	if err != nil {
		t.Fatal(err)
	}
	fakeApproval := mustStatement(t, env).Code.Approval
	n.trust.Approve(Approval{Digest: fakeApproval}) // even if it were approved
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], env, blob.Bytes(), nil)
	wantErr(t, err, ErrUntrusted, "trust store")

	// Same, but claiming the real creator's key id in the signature.
	env.Train.Signatures[0].KeyID = n.creator.Public().SignKeyID()
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], env, blob.Bytes(), nil)
	wantErr(t, err, ErrSignature, "does not verify")

	// An unknown user as creator.
	fake.AddUser("mallory", mallory.Public())
	env, err = Create(ctx, Party{ID: "mallory", Key: mallory, Trust: fake}, Spec{Route: n.route, Exec: n.exec, Code: os.DirFS(n.code)}, &blob)
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], env, blob.Bytes(), nil)
	wantErr(t, err, ErrUntrusted, `"mallory" is not in the trust store`)

	// Creating under a trusted name with a key that is not that user's.
	_, err = Create(ctx, Party{ID: "alice", Key: mallory, Trust: n.trust}, Spec{Route: n.route, Code: os.DirFS(n.code)}, &blob)
	wantErr(t, err, ErrUntrusted, "does not match")
}

// A key pinned in the train that disagrees with the trust store is an error,
// even when the creator signed it (for example after a key rotation).
func TestAttackPinnedKeyDisagrees(t *testing.T) {
	n := newTestNet(t)
	env, code := n.create(t)
	evil := mustKey(t)
	e := resignStatement(t, env, n.creator, func(s *Statement) { s.Route[1].EncKey = evil.Public().EncKeyID() })
	_, err := n.preRun(t, n.trust, "st-a", n.stations["st-a"], e, code, nil)
	wantErr(t, err, ErrUntrusted, "station st-b")
	// The station's own key must be the trust store's.
	_, err = n.preRun(t, n.trust, "st-a", evil, env, code, nil)
	wantErr(t, err, ErrUntrusted, "private key does not match")
}

// §5.2: adding a route entry (or a stop) to receive the results.
func TestAttackExtraRouteEntry(t *testing.T) {
	n := newTestNet(t)
	env, code := n.create(t)
	evil := mustKey(t)
	n.trust.AddStation("st-evil", evil.Public()) // even a trusted station
	e := editStatement(t, env, func(s *Statement) {
		s.Route = append(s.Route, Participant{ID: "st-evil", SignKey: evil.Public().SignKeyID(), EncKey: evil.Public().EncKeyID()})
	})
	_, err := n.preRun(t, n.trust, "st-a", n.stations["st-a"], e, code, nil)
	wantErr(t, err, ErrSignature, "train statement")

	// A stop appended past the end of the route.
	full, _, _ := n.roundTrip(t, 3)
	full = full.clone()
	full.Stops = append(full.Stops, full.Stops[2])
	_, err = Verify(context.Background(), n.trust, full)
	wantErr(t, err, ErrRoute, "4 stop records for a route of 3")

	// A stop inserted by a station that is not the one due.
	after, code2, _ := n.roundTrip(t, 1)
	forged := resignStop(t, after, 0, evil, func(r *StopRecord) { r.Station = "st-evil" })
	_, err = n.preRun(t, n.trust, "st-b", n.stations["st-b"], forged, code2, nil)
	wantErr(t, err, ErrUntrusted, "stop 0 (station st-a)")
}

// §5.2: results wrapped to an outsider by a malicious station, or a key
// swapped under a participant's name.
func TestAttackResultsWrappedToOutsider(t *testing.T) {
	n := newTestNet(t)
	env, code, res := n.roundTrip(t, 1)
	outsider := mustKey(t)
	n.trust.AddUser("mallory", outsider.Public())
	extra, err := wrapKey(userTo("mallory"), outsider.Public(), []byte("x"), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	// st-a itself (a valid signer) adds mallory as a recipient.
	e := resignStop(t, env, 0, n.stations["st-a"], func(r *StopRecord) { r.Output.Keys = append(r.Output.Keys, extra) })
	_, err = n.preRun(t, n.trust, "st-b", n.stations["st-b"], e, code, res)
	wantErr(t, err, ErrRoute, "user:mallory")

	// Wrapped under the creator's name but to mallory's key.
	e = resignStop(t, env, 0, n.stations["st-a"], func(r *StopRecord) {
		for i := range r.Output.Keys {
			if r.Output.Keys[i].To == userTo("alice") {
				extra.To = userTo("alice")
				r.Output.Keys[i] = extra
			}
		}
	})
	_, err = n.preRun(t, n.trust, "st-b", n.stations["st-b"], e, code, res)
	wantErr(t, err, ErrUntrusted, `to "user:alice" is wrapped to key`)

	// Code wrapped to an outsider at creation (creator-signed): refused too.
	c, code0 := n.create(t)
	c = resignStatement(t, c, n.creator, func(s *Statement) {
		w := extra
		w.To = userTo("mallory")
		s.Code.Keys = append(s.Code.Keys, w)
	})
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], c, code0, nil)
	wantErr(t, err, ErrRoute, "keys for the code go to")

	// And PostRun wraps to exactly the next station and the creator.
	rec := stopRecord(t, env, 0)
	if len(rec.Output.Keys) != 2 || rec.Output.Keys[0].To != "station:st-b" || rec.Output.Keys[1].To != "user:alice" {
		t.Fatalf("stop 0 results wrapped to %+v", rec.Output.Keys)
	}
}

// §5.3: removing the result hash / the previous stop to skip the checks.
func TestAttackDeletedResultHash(t *testing.T) {
	n := newTestNet(t)
	env, code, res := n.roundTrip(t, 1)

	// Drop the stop record: the train looks fresh, but st-b is not stop 0.
	e := env.clone()
	e.Stops = nil
	_, err := n.preRun(t, n.trust, "st-b", n.stations["st-b"], e, code, res)
	wantErr(t, err, ErrRoute, "due at stop 0")

	// Blank the results digest inside the record (without the signer's key).
	raw, _ := env.Stops[0].DecodeB64Payload()
	var m map[string]any
	json.Unmarshal(raw, &m)
	delete(m["output"].(map[string]any), "manifest")
	raw, _ = json.Marshal(m)
	e = env.clone()
	e.Stops[0].Payload = base64.StdEncoding.EncodeToString(raw)
	_, err = n.preRun(t, n.trust, "st-b", n.stations["st-b"], e, code, res)
	wantErr(t, err, ErrSignature, "stop 0")

	// Drop the results blob, or replace it with poisoned content.
	_, err = n.preRun(t, n.trust, "st-b", n.stations["st-b"], env, code, nil)
	wantErr(t, err, ErrTampered, "results of stop 0 are missing")
	_, _, other := n.roundTrip(t, 1)
	_, err = n.preRun(t, n.trust, "st-b", n.stations["st-b"], env, code, other)
	wantErr(t, err, ErrTampered, "")

	// Results smuggled in at the first stop.
	fresh, code0 := n.create(t)
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], fresh, code0, res)
	wantErr(t, err, ErrTampered, "first stop")
}

// §5.4: stop signatures transplanted from another train, stops reordered,
// and the same train run twice at one station.
func TestAttackReplayedSignature(t *testing.T) {
	n := newTestNet(t)
	env1, _, res1 := n.roundTrip(t, 1)
	env2, code2 := n.create(t)

	// st-a's genuine stop of train 1 pasted into train 2.
	e := env2.clone()
	e.Stops = append(e.Stops, env1.Stops[0])
	_, err := n.preRun(t, n.trust, "st-b", n.stations["st-b"], e, code2, res1)
	wantErr(t, err, ErrReplay, "signed for train")

	// A record re-signed by st-a at another position or with a broken link.
	e = resignStop(t, env1, 0, n.stations["st-a"], func(r *StopRecord) { r.Index = 1 })
	_, err = Verify(context.Background(), n.trust, e)
	wantErr(t, err, ErrReplay, "claims position 1")
	e = resignStop(t, env1, 0, n.stations["st-a"], func(r *StopRecord) { r.Prev = digestOf([]byte("x")) })
	_, err = Verify(context.Background(), n.trust, e)
	wantErr(t, err, ErrReplay, "does not follow")

	// The same train brought back to a station that already signed it.
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], env1, nil, nil)
	wantErr(t, err, ErrReplay, "already signed stop 0")

	// An old image re-pushed before the station signed: the replay guard.
	g := &MemoryReplayGuard{}
	env3, code3 := n.create(t)
	bad := bytes.Clone(code3)
	bad[len(bad)-1] ^= 1
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], env3, bad, nil, WithReplayGuard(g))
	wantErr(t, err, ErrTampered, "") // and it must not burn the stop:
	if _, err := n.preRun(t, n.trust, "st-a", n.stations["st-a"], env3, code3, nil, WithReplayGuard(g)); err != nil {
		t.Fatal(err)
	}
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], env3, code3, nil, WithReplayGuard(g))
	wantErr(t, err, ErrReplay, "already started stop 0")

	// Reused session id across hops.
	full, _, _ := n.roundTrip(t, 2)
	s0 := stopRecord(t, full, 0).Session
	e = resignStop(t, full, 1, n.stations["st-b"], func(r *StopRecord) { r.Session = s0 })
	_, err = Verify(context.Background(), n.trust, e)
	wantErr(t, err, ErrReplay, "session id")
}

// §5.5: renamed, moved or extra files in the code.
func TestAttackRenamedFiles(t *testing.T) {
	n := newTestNet(t)
	env, code := n.create(t)
	st := mustStatement(t, env)

	// An insider re-seals a renamed tree and even gets the creator to
	// re-sign the blob digest, keeping the approved manifest: the station
	// recomputes the manifest from what it unpacked.
	os.Rename(filepath.Join(n.code, "lib", "util.py"), filepath.Join(n.code, "lib", "utils.py"))
	key := bytes.Repeat([]byte{7}, 32)
	var blob bytes.Buffer
	m, ref, err := sealTreeWithKey(t, key, n.code, &blob)
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest() == st.Code.Manifest {
		t.Fatal("renaming a file did not change the manifest digest")
	}
	e := resignStatement(t, env, n.creator, func(s *Statement) {
		s.Code.Blob = ref
		s.Code.Keys = nil
		for _, id := range n.route {
			w, _ := wrapKey(stationTo(id), n.stations[id].Public(), wrapInfo("code", s.ID, s.Nonce, -1, stationTo(id)), key)
			s.Code.Keys = append(s.Code.Keys, w)
		}
	})
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], e, blob.Bytes(), nil)
	wantErr(t, err, ErrTampered, "does not match the signed manifest "+st.Code.Manifest)

	// Without re-signing, the blob digest already differs.
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], env, blob.Bytes(), nil)
	wantErr(t, err, ErrTampered, "code")
	// The genuine blob still runs.
	if _, err := n.preRun(t, n.trust, "st-a", n.stations["st-a"], env, code, nil); err != nil {
		t.Fatal(err)
	}
}

// sealTreeWithKey seals dir under a chosen key (what an insider holding the
// code key can do).
func sealTreeWithKey(t *testing.T, key []byte, dir string, w *bytes.Buffer) (*Manifest, BlobRef, error) {
	t.Helper()
	ch := &countingHash{w: w, h: newSHA256()}
	sw, err := NewSealWriter(ch, key, 0)
	if err != nil {
		return nil, BlobRef{}, err
	}
	m, err := packTree(context.Background(), os.DirFS(dir), sw, -1)
	if err != nil {
		return nil, BlobRef{}, err
	}
	if err := sw.Close(); err != nil {
		return nil, BlobRef{}, err
	}
	return m, ch.ref(), nil
}

// §5.5: a changed entrypoint, cmd or env.
func TestAttackChangedEntrypoint(t *testing.T) {
	n := newTestNet(t)
	env, code := n.create(t)
	e := editStatement(t, env, func(s *Statement) { s.Exec.Entrypoint = []string{"/bin/sh", "-c", "curl evil"} })
	_, err := n.preRun(t, n.trust, "st-a", n.stations["st-a"], e, code, nil)
	wantErr(t, err, ErrSignature, "")

	// Re-signed by the real creator, but the approval covered the old exec.
	e = resignStatement(t, env, n.creator, func(s *Statement) {
		s.Exec.Env = append(s.Exec.Env, "LD_PRELOAD=/opt/pht_train/evil.so")
		s.Code.Approval = ApprovalDigest(s.Code.Manifest, s.Exec, s.Base)
	})
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], e, code, nil)
	wantErr(t, err, ErrUnapproved, "no approval")
	// ...or keeping the old approval digest, which no longer matches.
	e = resignStatement(t, env, n.creator, func(s *Statement) { s.Exec.Cmd = []string{"evil"} })
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], e, code, nil)
	wantErr(t, err, ErrTampered, "approval digest")

	// The image config the station is about to run is compared too.
	s, err := n.preRun(t, n.trust, "st-a", n.stations["st-a"], env, code, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckExec(s.Exec(), n.exec); err != nil {
		t.Fatal(err)
	}
	changed := n.exec
	changed.Entrypoint = []string{"/bin/sh"}
	wantErr(t, CheckExec(s.Exec(), changed), ErrTampered, "entrypoint")
}

func TestAttackUnapprovedTrain(t *testing.T) {
	n := newTestNet(t)
	var blob bytes.Buffer
	env, err := Create(context.Background(), Party{ID: "alice", Key: n.creator, Trust: n.trust}, Spec{Route: n.route, Exec: n.exec, Code: os.DirFS(n.code)}, &blob)
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], env, blob.Bytes(), nil)
	wantErr(t, err, ErrUnapproved, "no approval")

	// Approved, but only for other stations.
	n.trust.Approve(Approval{Digest: mustStatement(t, env).Code.Approval, Stations: []string{"st-b"}})
	_, err = n.preRun(t, n.trust, "st-a", n.stations["st-a"], env, blob.Bytes(), nil)
	wantErr(t, err, ErrUnapproved, "does not cover station")
}

func TestAttackWrongStation(t *testing.T) {
	n := newTestNet(t)
	env, code := n.create(t)
	_, err := n.preRun(t, n.trust, "st-c", n.stations["st-c"], env, code, nil)
	wantErr(t, err, ErrRoute, "due at stop 0 (station \"st-a\")")

	outsider := mustKey(t)
	n.trust.AddStation("st-x", outsider.Public())
	_, err = n.preRun(t, n.trust, "st-x", outsider, env, code, nil)
	wantErr(t, err, ErrRoute, "not on the route")

	// The creator cannot read unfinished results.
	part, _, res := n.roundTrip(t, 1)
	_, err = OpenResults(context.Background(), Party{ID: "alice", Key: n.creator, Trust: n.trust}, Train{Envelope: part, Results: bytes.NewReader(res)}, t.TempDir())
	wantErr(t, err, ErrRoute, "finished 1 of 3")
	// Nor can anyone else read final results.
	full, _, res := n.roundTrip(t, 3)
	_, err = OpenResults(context.Background(), Party{ID: "mallory", Key: outsider, Trust: n.trust}, Train{Envelope: full, Results: bytes.NewReader(res)}, t.TempDir())
	wantErr(t, err, ErrRoute, "only the creator")
}

func TestAttackCiphertextTamper(t *testing.T) {
	n := newTestNet(t)
	env, code, res := n.roundTrip(t, 1)
	flip := bytes.Clone(res)
	flip[len(flip)/2] ^= 1
	_, err := n.preRun(t, n.trust, "st-b", n.stations["st-b"], env, code, flip)
	wantErr(t, err, ErrTampered, "")
	_, err = n.preRun(t, n.trust, "st-b", n.stations["st-b"], env, code, res[:len(res)-1])
	wantErr(t, err, ErrTampered, "")
	_, err = n.preRun(t, n.trust, "st-b", n.stations["st-b"], env, code, append(bytes.Clone(res), 0))
	wantErr(t, err, ErrTampered, "")
	badCode := bytes.Clone(code)
	badCode[len(badCode)-3] ^= 0x80
	_, err = n.preRun(t, n.trust, "st-b", n.stations["st-b"], env, badCode, res)
	wantErr(t, err, ErrTampered, "")
}
