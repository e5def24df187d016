package station

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/train"
)

// The state layer of a trainyard/v1 train holds the envelope at
// hardened.ConfigPath (the PHT config's place, so tools that look for
// /opt/train_config.json find the train's signed description) and the
// sealed blobs at hardened.CodeBlobPath and hardened.ResultsBlobPath.
const (
	CodeBlob    = hardened.CodeBlobPath
	ResultsBlob = hardened.ResultsBlobPath
)

// ErrImage is wrapped when a train image does not have the trainyard/v1
// layout (missing envelope, stray files, unlabelled layers).
var ErrImage = errors.New("not a trainyard/v1 train image")

// BaseID identifies the base filesystem a train's code sits on: a digest
// over the diff ids of every layer below the state layer, in order. The
// creator signs it (Statement.Base) and approvers approve it, so a station
// runs exactly the approved base; "scratch" is the empty base.
func BaseID(diffIDs []v1.Hash) string {
	if len(diffIDs) == 0 {
		return "scratch"
	}
	h := sha256.New()
	io.WriteString(h, "trainyard/v1 base\n")
	for _, d := range diffIDs {
		io.WriteString(h, d.String()+"\n")
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// baseLayers returns the layers of img below its state layer, with their
// diff ids. It needs a history that names every layer: otherwise the state
// layer cannot be told apart and the image is refused.
func baseLayers(img v1.Image) ([]v1.Layer, []v1.Hash, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: image config: %v", ErrImage, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: layers: %v", ErrImage, err)
	}
	var hist []v1.History
	for _, h := range cf.History {
		if !h.EmptyLayer {
			hist = append(hist, h)
		}
	}
	if len(hist) != len(layers) || len(cf.RootFS.DiffIDs) != len(layers) {
		return nil, nil, fmt.Errorf("%w: history names %d layers, image has %d", ErrImage, len(hist), len(layers))
	}
	var keep []v1.Layer
	var ids []v1.Hash
	for i, l := range layers {
		if !train.IsStateLayer(hist[i]) {
			keep = append(keep, l)
			ids = append(ids, cf.RootFS.DiffIDs[i])
		}
	}
	return keep, ids, nil
}

// ExecOf returns the exec part of an image config.
func ExecOf(cf *v1.ConfigFile) hardened.ExecConfig {
	return hardened.ExecConfig{Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Env: cf.Config.Env,
		WorkingDir: cf.Config.WorkingDir, User: cf.Config.User}
}

// withExec sets the image config's exec part to e.
func withExec(img v1.Image, e hardened.ExecConfig) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	c := cf.Config
	c.Entrypoint, c.Cmd, c.Env, c.WorkingDir, c.User = e.Entrypoint, e.Cmd, e.Env, e.WorkingDir, e.User
	return mutate.Config(img, c)
}

// sealedTrain is a train read from an image: the envelope and the sealed
// blobs spooled to private temp files.
type sealedTrain struct {
	env     *hardened.Envelope
	code    string // path of the sealed code blob
	results string // path of the sealed results, "" at the first stop
	dir     string
}

func (s *sealedTrain) Close() error { return os.RemoveAll(s.dir) }

// open returns the hardened.Train view; the caller closes the files.
func (s *sealedTrain) open() (hardened.Train, func(), error) {
	code, err := os.Open(s.code)
	if err != nil {
		return hardened.Train{}, nil, err
	}
	t := hardened.Train{Envelope: s.env, Code: code}
	closers := []io.Closer{code}
	if s.results != "" {
		r, err := os.Open(s.results)
		if err != nil {
			code.Close()
			return hardened.Train{}, nil, err
		}
		t.Results = r
		closers = append(closers, r)
	}
	return t, func() {
		for _, c := range closers {
			c.Close()
		}
	}, nil
}

// readTrain reads the envelope and sealed blobs of a train image in one
// streaming pass; anything else under the train directories is refused.
func readTrain(ctx context.Context, img v1.Image, tmp string) (_ *sealedTrain, err error) {
	dir, err := os.MkdirTemp(tmp, "train-")
	if err != nil {
		return nil, err
	}
	st := &sealedTrain{dir: dir}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	cfg, err := train.ReadFile(ctx, img, train.ConfigPath, train.MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	if st.env, err = hardened.ParseEnvelope(cfg); err != nil {
		return nil, err
	}
	err = train.Walk(ctx, img, func(prefix, rel string, hdr *tar.Header, r io.Reader) error {
		full := path.Join(prefix, rel)
		switch {
		case rel == "" && hdr.Typeflag == tar.TypeDir:
			return nil
		case full == CodeBlob && r != nil:
			st.code = filepath.Join(dir, "code.sealed")
			return spool(st.code, r)
		case full == ResultsBlob && r != nil:
			st.results = filepath.Join(dir, "results.sealed")
			return spool(st.results, r)
		}
		return fmt.Errorf("%w: unexpected entry /%s", ErrImage, full)
	}, train.TrainDir, train.ResultsDir)
	if err != nil {
		return nil, err
	}
	if st.code == "" {
		return nil, fmt.Errorf("%w: no /%s", ErrImage, CodeBlob)
	}
	return st, nil
}

func spool(p string, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeState returns img with a fresh state layer holding the envelope and
// the sealed blobs (results may be ""). The layer's temp file backs the
// image until release is called.
func writeState(img v1.Image, tmp string, env *hardened.Envelope, code, results string) (v1.Image, func(), error) {
	cfg, err := env.Marshal()
	if err != nil {
		return nil, nil, err
	}
	w, err := train.NewStateWriter(tmp, img)
	if err != nil {
		return nil, nil, err
	}
	if err := writeStateBody(w, cfg, code, results); err != nil {
		w.Abort()
		return nil, nil, err
	}
	l, err := w.Close()
	if err != nil {
		return nil, nil, err
	}
	out, err := train.WithState(img, l)
	if err != nil {
		l.Remove()
		return nil, nil, err
	}
	return out, func() { l.Remove() }, nil
}

func writeStateBody(w *train.LayerWriter, cfg []byte, code, results string) error {
	if err := w.File(train.ConfigPath, 0o644, int64(len(cfg)), bytes.NewReader(cfg)); err != nil {
		return err
	}
	if err := addFile(w, CodeBlob, code); err != nil {
		return err
	}
	if results == "" {
		return nil
	}
	return addFile(w, ResultsBlob, results)
}

func addFile(w *train.LayerWriter, name, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return w.File(name, 0o644, fi.Size(), f)
}

// runnableImage is what the station executes: the approved base layers, the
// decrypted code at /opt/pht_train (nothing else there) and the signed exec
// config. The state layer, with its ciphertext, is not part of it.
func runnableImage(img v1.Image, base []v1.Layer, codeDir, tmp string, exec hardened.ExecConfig) (v1.Image, func(), error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	w, err := train.NewLayerWriter(tmp, train.LayerMediaType(img))
	if err != nil {
		return nil, nil, err
	}
	sp, err := train.NewSpool(tmp)
	if err != nil {
		w.Abort()
		return nil, nil, err
	}
	defer sp.Close()
	tree, err := train.TreeFromDir(codeDir, sp, train.TrainDir)
	if err == nil {
		err = w.Opaque(train.TrainDir)
	}
	if err == nil {
		err = w.Tree(tree, nil)
	}
	if err == nil {
		err = w.Dir(train.ResultsDir, 0o755)
	}
	if err != nil {
		w.Abort()
		return nil, nil, err
	}
	code, err := w.Close()
	if err != nil {
		return nil, nil, err
	}
	out, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{Architecture: cf.Architecture, OS: cf.OS, Config: cf.Config})
	if err == nil {
		out, err = mutate.AppendLayers(out, append(append([]v1.Layer{}, base...), code)...)
	}
	if err == nil {
		out, err = withExec(out, exec)
	}
	if err != nil {
		code.Remove()
		return nil, nil, err
	}
	return out, func() { code.Remove() }, nil
}
