package trainimage

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"path"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/train"
)

// PeekEnvelope reads only the envelope of the trainyard/v1 train image at
// ref, not its sealed blobs: the first entry of its state layer, bounded.
// Nothing in it is verified here (the caller runs hardened.Verify), and the
// layer is not read to its end, so its digest is not checked: the signatures
// are what make the envelope trustworthy. `train status` uses it to see
// where a train is without downloading its code.
func PeekEnvelope(ctx context.Context, c *registry.Client, ref string) (*hardened.Envelope, error) {
	img, err := Pull(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	m, err := CheckImage(img)
	if err != nil {
		return nil, err
	}
	layer, desc, err := stateLayer(img, m)
	if err != nil {
		return nil, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("%w: state layer: %w", ErrImage, err)
	}
	defer rc.Close()
	var body io.Reader = io.LimitReader(rc, desc.Size)
	switch desc.MediaType {
	case types.DockerLayer, types.OCILayer:
		gz, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("%w: state layer: %w", ErrImage, err)
		}
		defer gz.Close()
		body = gz
	case types.DockerUncompressedLayer, types.OCIUncompressedLayer:
	default:
		return nil, fmt.Errorf("%w: state layer media type %q", ErrImage, desc.MediaType)
	}
	return peekState(tar.NewReader(&boundedReader{r: body, limit: maxEnvelopeSize + stateSlack}))
}

// peekState returns the envelope, the first file of a state layer; only
// the directories and opaque markers readState allows may come before it.
func peekState(tr *tar.Reader) (*hardened.Envelope, error) {
	// What may come before the envelope: as in readState, each once.
	allowed := map[string]bool{"opt": true, train.TrainDir: true, train.ResultsDir: true,
		train.TrainDir + "/.wh..wh..opq": true, train.ResultsDir + "/.wh..wh..opq": true}
	for {
		hdr, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%w: state layer before the envelope: %w", ErrImage, err)
		}
		name := path.Clean("/" + hdr.Name)[1:]
		switch {
		case allowed[name] && (hdr.Typeflag == tar.TypeDir || (hdr.Typeflag == tar.TypeReg && hdr.Size == 0)):
			delete(allowed, name)
			continue
		case name == train.ConfigPath && hdr.Typeflag == tar.TypeReg:
			if hdr.Size > maxEnvelopeSize {
				return nil, fmt.Errorf("%w: %w: envelope is %d bytes, at most %d", ErrImage, ErrLimit, hdr.Size, maxEnvelopeSize)
			}
			return hardened.ReadEnvelope(io.LimitReader(tr, hdr.Size))
		}
		return nil, fmt.Errorf("%w: %q before the envelope in the state layer", ErrImage, "/"+name)
	}
}
