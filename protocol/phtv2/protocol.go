package phtv2

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/train"
)

// Station is who runs the protocol: its route id (STATION_ID) and RSA key.
type Station struct {
	ID  string
	Key *rsa.PrivateKey
}

// Option configures PreRun and PostRun.
type Option func(*options)

type options struct {
	tmpDir string
	base   v1.Image
}

// WithTempDir sets where file contents and the new layer are spooled
// (default: the system temp directory). It needs room for the results.
func WithTempDir(dir string) Option { return func(o *options) { o.tmpDir = dir } }

// WithBase makes PostRun rebase the train onto base (the train's ":base"
// image, like the PHT library's --rebase) instead of onto the lower layers
// it finds free of train files. PreRun ignores it.
func WithBase(base v1.Image) Option { return func(o *options) { o.base = base } }

// Output is a protocol result: the new image and the config it carries.
// Its layer lives in a temporary file: Close it after saving the image.
type Output struct {
	Image  v1.Image
	Config *train.Config
	// First is true when pre-run found no previous results (first stop).
	First bool
	// Decrypted is true when Image holds plaintext train files or results
	// (pre-run output): it must stay at the station.
	Decrypted bool
	layer     *train.FileLayer
}

// Close removes the temporary layer file backing Image.
func (o *Output) Close() error {
	if o == nil || o.layer == nil {
		return nil
	}
	err := o.layer.Remove()
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}

// begin reads the state and config of img and finds the station's stop.
func begin(ctx context.Context, img v1.Image, st Station, o *options) (*train.State, *train.Config, *train.RouteEntry, error) {
	if st.Key == nil {
		return nil, nil, nil, fmt.Errorf("%w: no station private key", ErrKey)
	}
	if st.ID == "" {
		return nil, nil, nil, fmt.Errorf("%w: no station id (STATION_ID)", ErrStation)
	}
	state, err := train.ReadState(ctx, img, o.tmpDir)
	if err != nil {
		return nil, nil, nil, err
	}
	if state.Config == nil {
		state.Close()
		return nil, nil, nil, fmt.Errorf("%w: /%s is missing from the image", train.ErrConfig, train.ConfigPath)
	}
	cfg, err := train.ParseConfig(state.Config)
	if err != nil {
		state.Close()
		return nil, nil, nil, err
	}
	stop, err := cfg.Stop(st.ID)
	if err != nil {
		state.Close()
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrStation, err)
	}
	return state, cfg, stop, nil
}

// PreRun verifies img for station st like the Python pre_run_protocol and
// returns the image with the train files and previous results decrypted
// (in one state layer that replaces the previous one). On any refusal it
// returns an error and no image, so whatever img came from stays as it was.
//
// Checks, in order: the station is on the route and its wrapped key opens;
// every train file decrypts; the files are exactly file_list (plus
// query.json); the immutable hash equals config.hash; the user signature
// and the build signature verify; then, when result_hash is set, every
// earlier stop's chain signature, the results hash and the previous
// station's result signature. Stricter than Python where it costs no
// compatibility: extra or non-regular train files, results without a
// result_hash, and a result_hash at the first stop are refused.
func PreRun(ctx context.Context, img v1.Image, st Station, opts ...Option) (*Output, error) {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	state, cfg, stop, err := begin(ctx, img, st, o)
	if err != nil {
		return nil, err
	}
	defer state.Close()
	if stop.EncryptedKey == nil {
		return nil, fmt.Errorf("%w: route entry of station %s has no encrypted_key", ErrStation, st.ID)
	}
	wrapped, err := stop.EncryptedKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted_key: %v", train.ErrConfig, err)
	}
	key, err := UnwrapKey(st.Key, wrapped)
	if err != nil {
		return nil, fmt.Errorf("station %s: %w", st.ID, err)
	}
	sid, _ := cfg.SessionID.Bytes() // validated by ParseConfig

	// Train files: decrypt in place, then hash in file_list order.
	qe := state.Train.Lookup(train.QueryName)
	if err := checkTrainFiles(cfg, state.Train, qe != nil && qe.IsRegular()); err != nil {
		return nil, err
	}
	query, err := decryptTrain(state.Train, key)
	if err != nil {
		return nil, err
	}
	if err := verifyImmutable(cfg, state.Train, sid, query); err != nil {
		return nil, err
	}

	first := cfg.ResultHash == nil
	if first {
		if stop.Index != 0 {
			return nil, fmt.Errorf("%w: result_hash is null at stop %d: earlier results would go unverified", ErrTampered, stop.Index)
		}
		if len(state.Results.Files()) > 0 {
			return nil, fmt.Errorf("%w: /%s holds files but result_hash is null", ErrTampered, train.ResultsDir)
		}
	} else if err := verifyChain(cfg, stop); err != nil {
		return nil, err
	}

	// The decrypted state layer: the previous results are decrypted from
	// the spool straight into it (hashed on the way), so each result byte
	// is written once more, not spooled again; the layer is a private
	// temporary file, aborted (removed) unless every check below holds.
	w, err := train.NewStateWriter(o.tmpDir, img)
	if err != nil {
		return nil, fmt.Errorf("write decrypted image: %w", err)
	}
	var layer *train.FileLayer
	defer func() {
		if layer == nil {
			w.Abort()
		}
	}()
	if err := w.Tree(state.Train, nil); err != nil {
		return nil, fmt.Errorf("write decrypted image: %w", err)
	}
	if first {
		if err := w.Tree(state.Results, nil); err != nil {
			return nil, fmt.Errorf("write decrypted image: %w", err)
		}
	} else if err := verifyResults(cfg, stop, state.Results, key, sid, w); err != nil {
		return nil, err
	}

	var userKey []byte
	if cfg.Creator.EncryptedKey != nil {
		userKey, _ = cfg.Creator.EncryptedKey.Bytes()
	}
	if err := writeConfigAndKey(w, state.Config, userKey); err != nil {
		return nil, fmt.Errorf("write decrypted image: %w", err)
	}
	l, err := w.Close()
	if err != nil {
		return nil, fmt.Errorf("write decrypted image: %w", err)
	}
	layer = l
	out, err := train.WithState(img, l)
	if err != nil {
		l.Remove()
		return nil, fmt.Errorf("write decrypted image: %w", err)
	}
	return &Output{Image: out, Config: cfg, First: first, Decrypted: true, layer: l}, nil
}

// writeConfigAndKey ends a state layer like train.WriteState: the config,
// then the user key file (a whiteout hides an old one when there is none).
func writeConfigAndKey(w *train.LayerWriter, cfg, userKey []byte) error {
	if err := w.File(train.ConfigPath, 0o644, int64(len(cfg)), bytes.NewReader(cfg)); err != nil {
		return err
	}
	if userKey != nil {
		return w.File(train.UserKeyPath, 0o644, int64(len(userKey)), bytes.NewReader(userKey))
	}
	return w.Whiteout(train.UserKeyPath)
}

// decryptTrain decrypts every regular train file in place and returns the
// decrypted query (nil without /opt/pht_train/query.json).
func decryptTrain(t *train.Tree, key []byte) ([]byte, error) {
	var query []byte
	for _, e := range t.Files() {
		err := t.Rewrite(e, func(dst io.Writer, src io.Reader) error { return rawCBCDecrypt(dst, src, key) })
		if err != nil {
			return nil, fmt.Errorf("train file %s: %w", e.Name, err)
		}
		if e.Name == train.QueryName {
			rc, err := t.Open(e)
			if err != nil {
				return nil, err
			}
			query, err = io.ReadAll(io.LimitReader(rc, 64<<20))
			rc.Close()
			if err != nil {
				return nil, err
			}
			if query == nil {
				query = []byte{}
			}
		}
	}
	return query, nil
}

// checkTrainFiles refuses train files the hash would not cover.
func checkTrainFiles(cfg *train.Config, t *train.Tree, hasQuery bool) error {
	listed := make(map[string]bool, len(cfg.FileList))
	for _, f := range cfg.FileList {
		listed[trimDot(f)] = true
	}
	for _, e := range t.Entries {
		switch {
		case e.Type == '5': // directory
		case !e.IsRegular():
			return fmt.Errorf("%w: /%s/%s is not a regular file (type %q)", ErrTampered, train.TrainDir, e.Name, e.Type)
		case e.Name == train.QueryName && hasQuery:
		case !listed[e.Name]:
			return fmt.Errorf("%w: /%s/%s is not in file_list", ErrTampered, train.TrainDir, e.Name)
		}
	}
	return nil
}

func trimDot(s string) string {
	if len(s) > 2 && s[:2] == "./" {
		return s[2:]
	}
	return s
}

// verifyImmutable recomputes e_h over plaintext train files and checks the
// user and build signatures.
func verifyImmutable(cfg *train.Config, t *train.Tree, sid, query []byte) error {
	open := func(name string) (io.ReadCloser, error) {
		if query != nil && name == train.QueryName {
			return nil, os.ErrNotExist // Python removes query.json from the names
		}
		e := t.Lookup(name)
		if e == nil || !e.IsRegular() {
			return nil, os.ErrNotExist
		}
		return t.Open(e)
	}
	cur, err := ImmutableHash(cfg.Creator.ID.String(), cfg.FileList, open, sid, query)
	if err != nil {
		return err
	}
	want, _ := cfg.Hash.Bytes()
	if !bytes.Equal(cur, want) {
		return fmt.Errorf("%w: immutable files changed (hash of train files, creator id, session id and query differs from config.hash)", ErrTampered)
	}
	userPub, err := ParsePublicKey(cfg.Creator.RSAPublicKey)
	if err != nil {
		return fmt.Errorf("creator.rsa_public_key: %w", err)
	}
	userSig, _ := cfg.Signature.Bytes()
	if err := VerifyPKCS1(userPub, cur, userSig); err != nil {
		return fmt.Errorf("%w: user signature over the train hash does not verify", ErrSignature)
	}
	buildPub, err := ParsePublicKey(cfg.Build.RSAPublicKey)
	if err != nil {
		return fmt.Errorf("build.rsa_public_key: %w", err)
	}
	buildSig, _ := cfg.Build.Signature.Bytes()
	if err := VerifyPKCS1(buildPub, append(append([]byte{}, cur...), userSig...), buildSig); err != nil {
		return fmt.Errorf("%w: build signature does not verify", ErrSignature)
	}
	return nil
}

// verifyChain checks the chain signature of every stop before own.
func verifyChain(cfg *train.Config, own *train.RouteEntry) error {
	for i := 0; i < own.Index; i++ {
		s := cfg.StopAt(i)
		if s == nil || s.Signature == nil {
			return fmt.Errorf("%w: stop %d has no chain signature", ErrSignature, i)
		}
		pub, err := ParsePublicKey(s.RSAPublicKey)
		if err != nil {
			return fmt.Errorf("route stop %d: %w", i, err)
		}
		digest, _ := s.Signature.Digest.Bytes()
		sig, _ := s.Signature.Signature.Bytes()
		if err := VerifyPSS(pub, digest, sig); err != nil {
			return fmt.Errorf("%w: chain signature of stop %d (station %s) does not verify", ErrSignature, i, s.Station)
		}
	}
	return nil
}

// verifyResults decrypts the previous results into w (the decrypted state
// layer) and checks e_d and the previous station's signature over it.
func verifyResults(cfg *train.Config, own *train.RouteEntry, t *train.Tree, key, sid []byte, w *train.LayerWriter) error {
	if own.Index == 0 {
		return fmt.Errorf("%w: result_hash is set at the first stop", ErrTampered)
	}
	prev := cfg.StopAt(own.Index - 1)
	rh := NewResultHasher(sid)
	if err := w.Tree(t, hashingDecryptor{key: key, h: rh}); err != nil {
		return fmt.Errorf("result file %w", err)
	}
	got := rh.Sum()
	want, _ := cfg.ResultHash.Bytes()
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: previous results changed (results hash differs from config.result_hash)", ErrTampered)
	}
	pub, err := ParsePublicKey(prev.RSAPublicKey)
	if err != nil {
		return fmt.Errorf("route stop %d: %w", prev.Index, err)
	}
	sig, _ := cfg.ResultSignature.Bytes()
	if err := VerifyPSS(pub, got, sig); err != nil {
		return fmt.Errorf("%w: result signature of stop %d (station %s) does not verify", ErrSignature, prev.Index, prev.Station)
	}
	return nil
}

// PostRun seals img after a run for station st like the Python
// post_run_protocol: results hash and signature, the station's link of the
// digest chain, a fresh key wrapped for every route entry and the creator,
// results and train files encrypted under it, and the updated config; all
// in one state layer on the train's base layers (train.WithSealedState), so
// no plaintext remains in any layer, whatever was stacked on the input.
// The train files must still hash to config.hash (the run must
// not have changed them; Python does not check this).
func PostRun(ctx context.Context, img v1.Image, st Station, opts ...Option) (*Output, error) {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	out, err := postRunStreaming(ctx, img, st, o)
	if errors.Is(err, errNotInOrder) {
		return postRunSpooled(ctx, img, st, o)
	}
	return out, err
}

// postRunSpooled is post-run over train.ReadState: every file spooled
// first, for inputs whose results do not arrive in walk order.
func postRunSpooled(ctx context.Context, img v1.Image, st Station, o *options) (*Output, error) {
	state, cfg, stop, err := begin(ctx, img, st, o)
	if err != nil {
		return nil, err
	}
	defer state.Close()
	sid, _ := cfg.SessionID.Bytes()
	if err := checkPostRunTrain(cfg, state.Train, sid); err != nil {
		return nil, err
	}
	keys, err := sealKeys(cfg, stop)
	if err != nil {
		return nil, err
	}
	newKey := NewKey()
	w, err := train.NewStateWriter(o.tmpDir, img)
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			w.Abort()
		}
	}()
	// One pass over the results: hash the plaintext while encrypting it.
	rh := NewResultHasher(sid)
	if err := w.Tree(state.Results, hashingEncryptor{encryptor{newKey}, rh}); err != nil {
		return nil, fmt.Errorf("encrypt results: %w", err)
	}
	if err := w.Tree(state.Train, encryptor{newKey}); err != nil {
		return nil, fmt.Errorf("encrypt train files: %w", err)
	}
	out, err := sealFinish(ctx, img, st, o, cfg, stop, w, rh, newKey, keys)
	done = err == nil
	return out, err
}

// errNotInOrder: the results of the input do not arrive in walk order (for
// example spread over several layers), so they cannot be hashed while they
// stream; post-run then spools them first.
var errNotInOrder = errors.New("results not in walk order")

// postRunStreaming is post-run without spooling the results: the config is
// read first (train.ReadFile), then one walk encrypts every result file
// straight from the input layer into the new state layer and hashes it on
// the way. Only the (small) train files are spooled, because their hash
// follows file_list order. Nothing is returned unless every check holds;
// the partial layer is removed otherwise. It returns errNotInOrder, before
// anything is kept, when the results come out of walk order.
func postRunStreaming(ctx context.Context, img v1.Image, st Station, o *options) (*Output, error) {
	if st.Key == nil {
		return nil, fmt.Errorf("%w: no station private key", ErrKey)
	}
	if st.ID == "" {
		return nil, fmt.Errorf("%w: no station id (STATION_ID)", ErrStation)
	}
	raw, err := train.ReadFile(ctx, img, train.ConfigPath, train.MaxConfigSize)
	if errors.Is(err, train.ErrNotFound) {
		return nil, fmt.Errorf("%w: /%s is missing from the image", train.ErrConfig, train.ConfigPath)
	}
	if err != nil {
		return nil, err
	}
	cfg, err := train.ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	stop, err := cfg.Stop(st.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStation, err)
	}
	sid, _ := cfg.SessionID.Bytes()
	keys, err := sealKeys(cfg, stop)
	if err != nil {
		return nil, err
	}
	sp, err := train.NewSpool(o.tmpDir)
	if err != nil {
		return nil, err
	}
	defer sp.Close()
	trainTree := train.NewTree(sp, train.TrainDir)
	newKey := NewKey()
	w, err := train.NewStateWriter(o.tmpDir, img)
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			w.Abort()
		}
	}()
	rh := NewResultHasher(sid)
	budget := int64(train.DefaultMaxStateBytes) // ReadState's bound
	last, seen := "", false
	err = train.Walk(ctx, img, func(prefix, rel string, hdr *tar.Header, r io.Reader) error {
		if r != nil {
			if hdr.Size > budget {
				return fmt.Errorf("%w: %q is %d bytes, %d left of the %d-byte bound", train.ErrTooLarge, "/"+path.Join(prefix, rel), hdr.Size, budget, train.DefaultMaxStateBytes)
			}
			budget -= hdr.Size
		}
		if prefix == train.TrainDir {
			return trainTree.Add(rel, hdr, r)
		}
		if seen && !train.WalkLess(last, rel) {
			return errNotInOrder
		}
		last, seen = rel, true
		return sealResult(w, rel, hdr, r, newKey, rh)
	}, train.TrainDir, train.ResultsDir)
	if err != nil {
		return nil, err
	}
	train.SortWalkOrder(trainTree.Entries)
	if err := checkPostRunTrain(cfg, trainTree, sid); err != nil {
		return nil, err
	}
	if err := w.Tree(trainTree, encryptor{newKey}); err != nil {
		return nil, fmt.Errorf("encrypt train files: %w", err)
	}
	out, err := sealFinish(ctx, img, st, o, cfg, stop, w, rh, newKey, keys)
	done = err == nil
	return out, err
}

// sealResult writes one walked results entry into w, a regular file
// encrypted under key while rh hashes its plaintext.
func sealResult(w *train.LayerWriter, rel string, hdr *tar.Header, r io.Reader, key []byte, rh io.Writer) error {
	full := path.Join(train.ResultsDir, rel)
	switch {
	case hdr.Typeflag == tar.TypeDir:
		return w.Dir(full, hdr.Mode)
	case rel == "":
		return fmt.Errorf("%w: /%s is not a directory", train.ErrLayout, train.ResultsDir)
	case r != nil:
		err := w.FileFunc(full, hdr.Mode, rawCBCEncryptedSize(hdr.Size), func(dst io.Writer) error {
			return rawCBCEncrypt(dst, io.TeeReader(r, rh), key, nil)
		})
		if err != nil {
			return fmt.Errorf("encrypt results: %q: %w", "/"+full, err)
		}
		return nil
	}
	return w.Header(&tar.Header{Typeflag: hdr.Typeflag, Name: full, Linkname: hdr.Linkname, Mode: hdr.Mode, ModTime: hdr.ModTime, Uid: hdr.Uid, Gid: hdr.Gid, Format: tar.FormatPAX})
}

// checkPostRunTrain: the train files are still exactly what config.hash
// signs (the run must not have changed them).
func checkPostRunTrain(cfg *train.Config, t *train.Tree, sid []byte) error {
	var query []byte
	if e := t.Lookup(train.QueryName); e != nil && e.IsRegular() {
		rc, err := t.Open(e)
		if err != nil {
			return err
		}
		query, err = io.ReadAll(io.LimitReader(rc, 64<<20))
		rc.Close()
		if err != nil {
			return err
		}
	}
	if err := checkTrainFiles(cfg, t, query != nil); err != nil {
		return err
	}
	if err := verifyImmutable(cfg, t, sid, query); err != nil {
		return fmt.Errorf("post-run needs the decrypted train files of pre-run: %w", err)
	}
	return nil
}

// postKeys are the public keys and earlier chain digests post-run needs,
// collected before any work so that a bad one fails fast.
type postKeys struct {
	pubs    []*rsa.PublicKey
	creator *rsa.PublicKey
	earlier [][]byte
}

func sealKeys(cfg *train.Config, stop *train.RouteEntry) (*postKeys, error) {
	k := &postKeys{pubs: make([]*rsa.PublicKey, len(cfg.Route))}
	var err error
	for i, r := range cfg.Route {
		if k.pubs[i], err = ParsePublicKey(r.RSAPublicKey); err != nil {
			return nil, fmt.Errorf("route stop %d: %w", r.Index, err)
		}
	}
	if k.creator, err = ParsePublicKey(cfg.Creator.RSAPublicKey); err != nil {
		return nil, fmt.Errorf("creator.rsa_public_key: %w", err)
	}
	for i := 0; i < stop.Index; i++ {
		s := cfg.StopAt(i)
		if s == nil || s.Signature == nil {
			return nil, fmt.Errorf("%w: stop %d has no chain signature to extend", ErrSignature, i)
		}
		d, _ := s.Signature.Digest.Bytes()
		k.earlier = append(k.earlier, d)
	}
	return k, nil
}

// sealFinish signs the results and the chain, wraps newKey for everyone,
// writes the config and the user key into w, and returns the sealed image.
func sealFinish(ctx context.Context, img v1.Image, st Station, o *options, cfg *train.Config, stop *train.RouteEntry, w *train.LayerWriter, rh *ResultHasher, newKey []byte, k *postKeys) (*Output, error) {
	sid, _ := cfg.SessionID.Bytes()
	ed := rh.Sum()
	edSig, err := SignPSS(st.Key, ed)
	if err != nil {
		return nil, fmt.Errorf("%w: sign results: %v", ErrKey, err)
	}
	digest := StationDigest(sid, k.earlier, ed)
	chainSig, err := SignPSS(st.Key, digest)
	if err != nil {
		return nil, fmt.Errorf("%w: sign chain: %v", ErrKey, err)
	}
	if err := VerifyPSS(k.pubs[indexOf(cfg, stop)], digest, chainSig); err != nil {
		return nil, fmt.Errorf("%w: the private key does not match station %s's public key in the route", ErrKey, st.ID)
	}
	cfg.ResultHash, cfg.ResultSignature = train.HexPtr(ed), train.HexPtr(edSig)
	stop.Signature = &train.StationSignature{Signature: train.Hex(chainSig), Digest: train.Hex(digest)}
	for i := range cfg.Route {
		ct, err := WrapKey(k.pubs[i], newKey)
		if err != nil {
			return nil, fmt.Errorf("route stop %d: %w", cfg.Route[i].Index, err)
		}
		cfg.Route[i].EncryptedKey = train.HexPtr(ct)
	}
	userCT, err := WrapKey(k.creator, newKey)
	if err != nil {
		return nil, fmt.Errorf("creator: %w", err)
	}
	cfg.Creator.EncryptedKey = train.HexPtr(userCT)
	cfg.SortRoute()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	raw, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	if err := w.File(train.ConfigPath, 0o644, int64(len(raw)), bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	if err := w.File(train.UserKeyPath, 0o644, int64(len(userCT)), bytes.NewReader(userCT)); err != nil {
		return nil, err
	}
	l, err := w.Close()
	if err != nil {
		return nil, err
	}
	// Not WithState: layers a run committed on top and plaintext lower
	// layers of non-rebased PHT images must not leave the station.
	out, err := train.WithSealedState(ctx, img, l, o.base)
	if err != nil {
		l.Remove()
		return nil, err
	}
	return &Output{Image: out, Config: cfg, layer: l}, nil
}

func indexOf(cfg *train.Config, stop *train.RouteEntry) int {
	for i := range cfg.Route {
		if &cfg.Route[i] == stop {
			return i
		}
	}
	return 0
}

// hashingEncryptor feeds the plaintext to the results hash while encrypting.
type hashingEncryptor struct {
	encryptor
	h io.Writer
}

func (e hashingEncryptor) Apply(dst io.Writer, src io.Reader) error {
	return rawCBCEncrypt(dst, io.TeeReader(src, e.h), e.key, nil)
}

// hashingDecryptor is a train.SizedTransform: it decrypts into the layer
// and feeds the plaintext to the results hash in the same pass.
type hashingDecryptor struct {
	key []byte
	h   io.Writer
}

func (d hashingDecryptor) Size(n int64) int64 { return -1 } // SizeOf decides

func (d hashingDecryptor) SizeOf(src io.ReaderAt, n int64) (int64, error) {
	return rawCBCDecryptedSize(src, n, d.key)
}

func (d hashingDecryptor) Apply(dst io.Writer, src io.Reader) error {
	return rawCBCDecrypt(io.MultiWriter(dst, d.h), src, d.key)
}
