package phtv2

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/trainyard/trainyard/train"
)

// RouteStop names a station and its public key for a new train.
type RouteStop struct {
	Station   string
	PublicKey *rsa.PublicKey
	EcoSystem string // "tue" (default) or "padme"
}

// BuildSpec is what a creator decides about a new PHT train.
type BuildSpec struct {
	Dir        string          // train code; every regular file goes to /opt/pht_train
	Entrypoint string          // file under Dir the CMD runs (default: first of entrypoint.py, main.py)
	Command    []string        // interpreter and args before the entrypoint (default: python)
	Query      []byte          // optional query.json content
	Route      []RouteStop     // in order
	CreatorID  string          // creator.id (hashed as pydantic's str() of it)
	CreatorKey *rsa.PrivateKey // signs the hash, receives the final results
	ProposalID string
	TrainID    string // @id
	Source     *train.Source
}

// Build makes a PHT-format train on base like the central builder: a fresh
// session id, the immutable hash signed by the creator, a fresh builder key
// signing hash||signature, the train files and query encrypted under one
// fresh key that is wrapped for the first stop only, /opt/pht_results empty,
// CMD set to run the entrypoint. The state goes into one layer that later
// protocol steps replace. Close the Output after saving its image.
func Build(ctx context.Context, base v1.Image, spec BuildSpec, opts ...Option) (*Output, error) {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	if len(spec.Route) == 0 {
		return nil, fmt.Errorf("%w: empty route", train.ErrConfig)
	}
	if spec.CreatorKey == nil {
		return nil, fmt.Errorf("%w: no creator key", ErrKey)
	}
	if spec.CreatorID == "" || spec.TrainID == "" {
		return nil, fmt.Errorf("%w: creator id and train id are required", train.ErrConfig)
	}
	if spec.ProposalID == "" {
		spec.ProposalID = "1"
	}
	sp, err := train.NewSpool(o.tmpDir)
	if err != nil {
		return nil, err
	}
	defer sp.Close()
	code, err := train.TreeFromDir(spec.Dir, sp, train.TrainDir)
	if err != nil {
		return nil, fmt.Errorf("read train code: %w", err)
	}
	var fileList []string
	for _, e := range code.Entries {
		switch {
		case e.IsRegular():
			if e.Name == train.QueryName && spec.Query != nil {
				return nil, fmt.Errorf("query given twice: %s/query.json and the query option", spec.Dir)
			}
			if e.Name != train.QueryName {
				fileList = append(fileList, "./"+e.Name)
			}
		case e.Type == '5':
		default:
			return nil, fmt.Errorf("train code: %s is not a regular file or directory", e.Name)
		}
	}
	if e := code.Lookup(train.QueryName); e != nil && spec.Query == nil {
		rc, err := code.Open(e)
		if err != nil {
			return nil, err
		}
		spec.Query, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	if spec.Query != nil {
		if !json.Valid(spec.Query) {
			return nil, fmt.Errorf("query is not valid JSON")
		}
		if code.Lookup(train.QueryName) == nil {
			if _, err := code.AddFile(train.QueryName, 0o644, bytes.NewReader(spec.Query)); err != nil {
				return nil, err
			}
		}
	}
	if len(fileList) == 0 {
		return nil, fmt.Errorf("train code %s holds no files", spec.Dir)
	}
	entry := spec.Entrypoint
	if entry == "" {
		for _, c := range []string{"entrypoint.py", "main.py"} {
			if code.Lookup(c) != nil {
				entry = c
				break
			}
		}
	}
	if e := code.Lookup(entry); entry == "" || e == nil || !e.IsRegular() {
		return nil, fmt.Errorf("entrypoint %q is not a file of %s", entry, spec.Dir)
	}

	sid := make([]byte, 64)
	if _, err := rand.Read(sid); err != nil {
		return nil, err
	}
	creatorID := train.NewIntOrString(spec.CreatorID)
	open := func(name string) (io.ReadCloser, error) {
		e := code.Lookup(name)
		if e == nil {
			return nil, os.ErrNotExist
		}
		return code.Open(e)
	}
	h, err := ImmutableHash(creatorID.String(), fileList, open, sid, spec.Query)
	if err != nil {
		return nil, err
	}
	userSig, err := SignPKCS1(spec.CreatorKey, h)
	if err != nil {
		return nil, fmt.Errorf("%w: creator signature: %v", ErrKey, err)
	}
	builder, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	buildSig, err := SignPKCS1(builder, append(append([]byte{}, h...), userSig...))
	if err != nil {
		return nil, err
	}
	key := NewKey()
	cfg := &train.Config{
		Source:     spec.Source,
		Creator:    train.Creator{ID: creatorID, RSAPublicKey: PublicKeyHex(&spec.CreatorKey.PublicKey)},
		ProposalID: train.NewIntOrString(spec.ProposalID),
		ID:         spec.TrainID,
		SessionID:  train.Hex(sid),
		FileList:   fileList,
		Hash:       train.Hex(h),
		Signature:  train.Hex(userSig),
		Build:      train.Build{Signature: train.Hex(buildSig), RSAPublicKey: PublicKeyHex(&builder.PublicKey)},
	}
	if cfg.Source == nil {
		cfg.Source = &train.Source{Type: "docker_repository", Address: "scratch"}
	}
	for i, r := range spec.Route {
		eco := r.EcoSystem
		if eco == "" {
			eco = "tue"
		}
		e := train.RouteEntry{Station: train.NewIntOrString(r.Station), EcoSystem: eco, RSAPublicKey: PublicKeyHex(r.PublicKey), Index: i}
		if i == 0 {
			ct, err := WrapKey(r.PublicKey, key)
			if err != nil {
				return nil, fmt.Errorf("route stop 0: %w", err)
			}
			e.EncryptedKey = train.HexPtr(ct)
		}
		cfg.Route = append(cfg.Route, e)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	raw, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	empty := &train.Tree{Root: train.ResultsDir}
	empty.Entries = []*train.Entry{{Name: "", Type: '5', Mode: 0o755}}
	img, layer, err := train.WriteState(base, o.tmpDir, train.StateContent{Config: raw, Train: code, TrainTF: encryptor{key}, Results: empty})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		layer.Remove()
		return nil, err
	}
	cf = cf.DeepCopy()
	cmd := spec.Command
	if len(cmd) == 0 {
		cmd = []string{"python"}
	}
	cf.Config.Cmd = append(append([]string{}, cmd...), "/"+path.Join(train.TrainDir, entry))
	cf.Config.Entrypoint = nil
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		layer.Remove()
		return nil, err
	}
	return &Output{Image: img, Config: cfg, First: true, layer: layer}, nil
}
