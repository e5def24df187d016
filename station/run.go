package station

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainimage"
)

// runnableImage is what the station executes: the approved base layers, the
// decrypted code at /opt/pht_train (nothing else there) and the signed exec
// config. The state layer, with its ciphertext, is not part of it. The code
// layer is uncompressed: it is only ever unpacked here, so gzip would be
// spent twice for nothing.
func runnableImage(img v1.Image, base []v1.Layer, codeDir, tmp string, exec hardened.ExecConfig) (v1.Image, func(), error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	w, err := train.NewLayerWriter(tmp, train.StateLayerMediaType(img))
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
		out, err = trainimage.WithExec(out, exec)
	}
	if err != nil {
		code.Remove()
		return nil, nil, err
	}
	return out, func() { code.Remove() }, nil
}
