package hardened

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/trainyard/trainyard/internal/pipe"
)

// Option tunes Create, PreRun, PostRun and OpenResults.
type Option func(*options)

type options struct {
	guard      ReplayGuard
	chunkSize  int
	now        func() time.Time
	maxResults int64
}

func collect(opts []Option) options {
	o := options{chunkSize: DefaultChunkSize, now: time.Now, maxResults: DefaultMaxResults}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithReplayGuard makes PreRun refuse a stop this station already started.
func WithReplayGuard(g ReplayGuard) Option { return func(o *options) { o.guard = g } }

// WithChunkSize sets the plaintext chunk size of sealed streams written.
func WithChunkSize(n int) Option { return func(o *options) { o.chunkSize = n } }

// WithClock sets the clock used for timestamps in signed documents.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMaxResults caps the results PostRun seals, in bytes counted by the
// files' apparent sizes (default DefaultMaxResults; < 0 = no byte cap, the
// bounds on depth, path length and entries still apply).
func WithMaxResults(n int64) Option {
	return func(o *options) {
		if n != 0 {
			o.maxResults = n
		}
	}
}

// Party is who acts in the protocol, a creator or a station: its id in the
// trust store, its private key, and the trust store it checks everyone
// else against.
type Party struct {
	ID    string
	Key   *PrivateKey
	Trust TrustStore
}

func (p Party) check(what, role string) error {
	if p.ID == "" || p.Key == nil || p.Trust == nil {
		return fmt.Errorf("hardened: %s needs the %s's id, private key and trust store", what, role)
	}
	return nil
}

// Spec is what a creator decides about a train.
type Spec struct {
	ID    string   // train id; random when empty
	Route []string // station ids in order; fixed once signed
	Exec  ExecConfig
	Base  string // base image reference (with digest), signed and opaque here
	Code  fs.FS  // the train's code tree, sealed into the code blob
}

// Dirs are where PreRun unpacks a train: both must be empty or absent.
type Dirs struct {
	Code    string
	Results string
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// countingHash hashes and counts what is written through it.
type countingHash struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

func (c *countingHash) ref() BlobRef {
	return BlobRef{Digest: "sha256:" + hex.EncodeToString(c.h.Sum(nil)), Size: c.n}
}

// sealTree packs fsys as a tar stream sealed under a fresh key into w.
// maxBytes < 0 means no byte cap.
func sealTree(ctx context.Context, fsys fs.FS, w io.Writer, chunk int, maxBytes int64) (key []byte, m *Manifest, ref BlobRef, err error) {
	key = make([]byte, keySize)
	if _, err = rand.Read(key); err != nil {
		return nil, nil, ref, err
	}
	// The ciphertext is hashed and written on a second goroutine, beside
	// the reads, the plaintext hashing and the sealing on this one.
	ch := &countingHash{w: w, h: sha256.New()}
	pw := pipe.NewWriter(ch, 0, 0)
	defer pw.Close()
	sw, err := NewSealWriter(pw, key, chunk)
	if err != nil {
		return nil, nil, ref, err
	}
	if m, err = packTree(ctx, fsys, sw, maxBytes); err != nil {
		return nil, nil, ref, err
	}
	if err = sw.Close(); err != nil {
		return nil, nil, ref, err
	}
	if err = pw.Close(); err != nil {
		return nil, nil, ref, err
	}
	return key, m, ch.ref(), nil
}

// hashingReader hashes what it reads and refuses more than limit bytes.
type hashingReader struct {
	r     io.Reader
	h     hash.Hash
	n     int64
	limit int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if h.h != nil {
		h.h.Write(p[:n])
	}
	h.n += int64(n)
	if h.n > h.limit {
		return n, fmt.Errorf("%w: blob is longer than the signed %d bytes", ErrTampered, h.limit)
	}
	return n, err
}

// openTree checks a sealed blob against its signed ref while it decrypts and
// unpacks it into dir, and returns the manifest of what was written.
func openTree(ctx context.Context, blob io.Reader, ref BlobRef, key []byte, dir, what string, verified bool) (*Manifest, error) {
	hr := &hashingReader{r: blob, h: sha256.New(), limit: ref.Size}
	if verified {
		hr.h = nil // checked by the caller; the size is still held
	}
	// The blob is read and hashed on a second goroutine, beside the
	// decryption, the plaintext hashing and the writes on this one. hr is
	// inspected only after ra returned EOF, when that goroutine is done.
	ra := pipe.NewReader(hr, 0, 0)
	defer ra.Close()
	pr, err := NewOpenReader(ra, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	m, err := unpackTree(ctx, pr, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// Read to the end: the last chunk's flag is what proves no truncation.
	if _, err := io.Copy(io.Discard, pr); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if _, err := io.Copy(io.Discard, ra); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if hr.h == nil {
		if hr.n != ref.Size {
			return nil, fmt.Errorf("%w: %s blob is %d bytes, signed %d", ErrTampered, what, hr.n, ref.Size)
		}
		return m, nil
	}
	if got := (&countingHash{h: hr.h, n: hr.n}).ref(); got != ref {
		return nil, fmt.Errorf("%w: %s blob is %s (%d bytes), signed %s (%d bytes)", ErrTampered, what, got.Digest, got.Size, ref.Digest, ref.Size)
	}
	return m, nil
}

// Create makes a new train: it seals spec.Code into codeOut (the blob the
// glue stores as the code layer), wraps the code key to every route
// station, and returns the envelope holding the creator-signed statement and
// no stops. Keys come from the creator's trust store, where the creator's
// own entry must match its key.
func Create(ctx context.Context, creator Party, spec Spec, codeOut io.Writer, opts ...Option) (*Envelope, error) {
	o := collect(opts)
	if err := creator.check("Create", "creator"); err != nil {
		return nil, err
	}
	if spec.Code == nil || codeOut == nil {
		return nil, errors.New("hardened: Create needs a code tree and an output")
	}
	if len(spec.Route) == 0 || len(spec.Route) > maxRoute {
		return nil, fmt.Errorf("%w: a train needs 1..%d route stations", ErrRoute, maxRoute)
	}
	trust := creator.Trust
	ck, err := trust.UserKey(ctx, creator.ID)
	if err != nil {
		return nil, err
	}
	if !ck.Equal(creator.Key.Public()) {
		return nil, fmt.Errorf("%w: the creator's private key does not match the trust store entry for %q", ErrUntrusted, creator.ID)
	}
	st := &Statement{Protocol: Protocol, ID: spec.ID, Created: o.now().UTC(), Base: spec.Base, Exec: spec.Exec,
		Creator: Participant{ID: creator.ID, SignKey: ck.SignKeyID(), EncKey: ck.EncKeyID()}}
	if st.ID == "" {
		if st.ID, err = randomHex(16); err != nil {
			return nil, err
		}
	}
	if st.Nonce, err = randomHex(32); err != nil {
		return nil, err
	}
	keys := make([]PublicKey, len(spec.Route))
	seen := map[string]bool{}
	for i, id := range spec.Route {
		if id == "" || seen[id] {
			return nil, fmt.Errorf("%w: route station %d is empty or repeated (%q)", ErrRoute, i, id)
		}
		seen[id] = true
		if keys[i], err = trust.StationKey(ctx, id); err != nil {
			return nil, err
		}
		st.Route = append(st.Route, Participant{ID: id, SignKey: keys[i].SignKeyID(), EncKey: keys[i].EncKeyID()})
	}
	key, m, ref, err := sealTree(ctx, spec.Code, codeOut, o.chunkSize, -1)
	if err != nil {
		return nil, fmt.Errorf("sealing code: %w", err)
	}
	st.Code = CodeRef{Manifest: m.Digest(), Blob: ref}
	st.Code.Approval = ApprovalDigest(st.Code.Manifest, st.Exec, st.Base)
	for i, id := range spec.Route {
		to := stationTo(id)
		w, err := wrapKey(to, keys[i], wrapInfo("code", st.ID, st.Nonce, -1, to), key)
		if err != nil {
			return nil, err
		}
		st.Code.Keys = append(st.Code.Keys, w)
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return &Envelope{Protocol: Protocol, Train: signDSSE(StatementType, payload, creator.Key), Stops: []dsse.Envelope{}}, nil
}

// Train is what a station receives: the envelope and the sealed blobs.
type Train struct {
	Envelope *Envelope
	Code     io.Reader // sealed code blob
	Results  io.Reader // sealed results of the previous stop; nil at the first stop
	// BlobsVerified says the caller already checked Code and Results
	// against their signed digests and sizes (a station spools each blob
	// through that check into a private file before pre-run): they are not
	// hashed again, only held to their signed sizes. Leave it false for
	// bytes straight from a registry or a file anyone could change.
	BlobsVerified bool
}

// Session is one station's stop between PreRun and PostRun.
type Session struct {
	v         *Verified
	env       *Envelope
	index     int
	station   string
	key       *PrivateKey
	sessionID string
	opts      options
	done      bool
}

// Verified returns the checked train.
func (s *Session) Verified() *Verified { return s.v }

// Index is this stop's position on the route.
func (s *Session) Index() int { return s.index }

// SessionID is the fresh random id of this hop.
func (s *Session) SessionID() string { return s.sessionID }

// Exec is the signed exec config the station must run (see CheckExec).
func (s *Session) Exec() ExecConfig { return s.v.Statement.Exec }

// PreRun verifies a train for station from its first stop, then decrypts
// the code into dirs.Code and the previous stop's results into
// dirs.Results (both must be empty or absent). On error both directories
// are emptied.
func PreRun(ctx context.Context, station Party, t Train, dirs Dirs, opts ...Option) (_ *Session, err error) {
	o := collect(opts)
	if err := station.check("PreRun", "station"); err != nil {
		return nil, err
	}
	stationID, key, codeDir, resultsDir := station.ID, station.Key, dirs.Code, dirs.Results
	v, err := Verify(ctx, station.Trust, t.Envelope)
	if err != nil {
		return nil, err
	}
	st := v.Statement
	pos, err := dueStop(v, stationID, key)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{codeDir, resultsDir} {
		if err := prepareDir(d); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			clearDir(codeDir)
			clearDir(resultsDir)
		}
	}()
	to := stationTo(stationID)
	if t.Code == nil {
		return nil, fmt.Errorf("%w: no code blob", ErrTampered)
	}
	ck, err := unwrapFor(st.Code.Keys, to, key, wrapInfo("code", st.ID, st.Nonce, -1, to))
	if err != nil {
		return nil, err
	}
	got, err := openTree(ctx, t.Code, st.Code.Blob, ck, codeDir, "code", t.BlobsVerified)
	if err != nil {
		return nil, err
	}
	if got := got.Digest(); got != st.Code.Manifest {
		return nil, fmt.Errorf("%w: code tree %s does not match the signed manifest %s", ErrTampered, got, st.Code.Manifest)
	}
	if pos == 0 {
		if t.Results != nil {
			var b [1]byte
			if n, _ := io.ReadFull(t.Results, b[:]); n > 0 {
				return nil, fmt.Errorf("%w: results present at the first stop, where none were signed", ErrTampered)
			}
		}
	} else {
		last := v.Stops[pos-1]
		if t.Results == nil {
			return nil, fmt.Errorf("%w: results of stop %d are missing", ErrTampered, pos-1)
		}
		rk, err := unwrapFor(last.Output.Keys, to, key, wrapInfo("results", st.ID, st.Nonce, pos-1, to))
		if err != nil {
			return nil, err
		}
		got, err := openTree(ctx, t.Results, last.Output.Blob, rk, resultsDir, "results", t.BlobsVerified)
		if err != nil {
			return nil, err
		}
		if got := got.Digest(); got != last.Output.Manifest {
			return nil, fmt.Errorf("%w: results tree %s does not match the manifest %s signed by stop %d", ErrTampered, got, last.Output.Manifest, pos-1)
		}
	}
	// Marked last, so a tampered copy cannot burn the stop of a good one.
	if o.guard != nil {
		fresh, err := o.guard.Mark(ctx, v.TrainDigest, pos)
		if err != nil {
			return nil, err
		}
		if !fresh {
			return nil, fmt.Errorf("%w: station %q already started stop %d of train %s", ErrReplay, stationID, pos, st.ID)
		}
	}
	sid, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	return &Session{v: v, env: t.Envelope.clone(), index: pos, station: stationID, key: key, sessionID: sid, opts: o}, nil
}

func unwrapFor(keys []WrappedKey, to string, key *PrivateKey, info []byte) ([]byte, error) {
	for _, w := range keys {
		if w.To == to {
			return unwrapKey(w, key, info)
		}
	}
	return nil, fmt.Errorf("%w: no key is wrapped to %s", ErrRoute, to)
}

// PostRun seals the results tree in resultsDir into out (the new results
// blob) with a fresh key wrapped to the next station and the creator only,
// signs this stop's record and returns the new envelope. Symlinks and other
// special files in resultsDir are refused. A session posts once.
func (s *Session) PostRun(ctx context.Context, resultsDir string, out io.Writer) (*Envelope, error) {
	if s.done {
		return nil, errors.New("hardened: PostRun called twice for one session")
	}
	root, err := os.OpenRoot(resultsDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	key, m, ref, err := sealTree(ctx, root.FS(), out, s.opts.chunkSize, s.opts.maxResults)
	if err != nil {
		return nil, fmt.Errorf("sealing results: %w", err)
	}
	st := s.v.Statement
	rec := StopRecord{Protocol: Protocol, Train: s.v.TrainDigest, Index: s.index, Station: s.station,
		Session: s.sessionID, Prev: s.v.lastPayload, Time: s.opts.now().UTC(),
		Output: ResultsRef{Manifest: m.Digest(), Blob: ref}}
	if s.index > 0 {
		in := s.v.Stops[s.index-1].Output.Blob
		rec.Input = &in
	}
	type rcpt struct {
		to  string
		key PublicKey
	}
	rcpts := []rcpt{}
	if s.index+1 < len(st.Route) {
		rcpts = append(rcpts, rcpt{stationTo(st.Route[s.index+1].ID), s.v.routeKeys[s.index+1]})
	}
	rcpts = append(rcpts, rcpt{userTo(st.Creator.ID), s.v.creatorKey})
	for _, r := range rcpts {
		w, err := wrapKey(r.to, r.key, wrapInfo("results", st.ID, st.Nonce, s.index, r.to), key)
		if err != nil {
			return nil, err
		}
		rec.Output.Keys = append(rec.Output.Keys, w)
	}
	payload, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	s.done = true
	env := s.env.clone()
	env.Stops = append(env.Stops, signDSSE(StopType, payload, s.key))
	return env, nil
}

// OpenResults is the creator's last step: it verifies the whole train
// (t.Envelope), insists the route is complete, and decrypts the final
// results (t.Results) into dir.
func OpenResults(ctx context.Context, user Party, t Train, dir string) (_ *Verified, err error) {
	if err := user.check("OpenResults", "creator"); err != nil {
		return nil, err
	}
	userID, key, results := user.ID, user.Key, t.Results
	v, err := Verify(ctx, user.Trust, t.Envelope)
	if err != nil {
		return nil, err
	}
	st := v.Statement
	if userID != st.Creator.ID {
		return nil, fmt.Errorf("%w: only the creator %q reads the final results, not %q", ErrRoute, st.Creator.ID, userID)
	}
	if !v.creatorKey.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: the private key does not match the trust store entry for %q", ErrUntrusted, userID)
	}
	if !v.Complete() {
		return nil, fmt.Errorf("%w: train %s has finished %d of %d stops", ErrRoute, st.ID, len(v.Stops), len(st.Route))
	}
	if results == nil {
		return nil, fmt.Errorf("%w: no results blob", ErrTampered)
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			clearDir(dir)
		}
	}()
	last := v.Stops[len(v.Stops)-1]
	to := userTo(userID)
	rk, err := unwrapFor(last.Output.Keys, to, key, wrapInfo("results", st.ID, st.Nonce, last.Index, to))
	if err != nil {
		return nil, err
	}
	got, err := openTree(ctx, results, last.Output.Blob, rk, dir, "results", false)
	if err != nil {
		return nil, err
	}
	if got.Digest() != last.Output.Manifest {
		return nil, fmt.Errorf("%w: results tree does not match the signed manifest", ErrTampered)
	}
	return v, nil
}
