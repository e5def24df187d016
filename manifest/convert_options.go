package manifest

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// ConvertOptions are what Convert may need besides the manifest and the
// target kind; which fields a conversion reads is said on each.
type ConvertOptions struct {
	// Blobs reads blobs by digest: the config of a schema2/OCI image going
	// to schema1 when Config is nil, and the layers of a schema1 manifest
	// going to schema2/OCI (their sizes and diff ids come from streaming
	// them). Nil means no blob source.
	Blobs BlobFetcher
	// Config is the config blob of a schema2/OCI image going to schema1;
	// nil fetches it through Blobs. It is checked against the manifest's
	// config descriptor either way.
	Config []byte
	// MaxConfigSize bounds a config fetched through Blobs (default
	// DefaultMaxSize).
	MaxConfigSize int64
	// Name and Tag are the repository and tag a schema1 manifest records;
	// both are required for schema2/OCI -> schema1.
	Name, Tag string
	// Key signs schema1 output (ES256/384/512 by curve, RS256 for RSA);
	// nil leaves a converted schema1 manifest unsigned, and a schema1 input
	// going to schema1 unchanged.
	Key crypto.Signer
}

// Converted is Convert's output.
type Converted struct {
	// Manifest is the converted manifest.
	Manifest []byte
	// Config is the config blob a schema1 -> schema2/OCI conversion creates
	// (store it where the manifest's config descriptor points); nil for
	// every other conversion.
	Config []byte
	// Unsigned is set when Convert made a schema1 manifest without a Key
	// (media type application/vnd.docker.distribution.manifest.v1+json).
	Unsigned bool
}

// InputError says which input a conversion needed and could not get from
// ConvertOptions: "name" (Name and Tag, for schema1), "config" (the
// config blob) or "layers" (the layer blobs of a schema1 manifest). Err is
// the cause (ErrNeedInput when the option was simply not set).
type InputError struct {
	Input string
	Err   error
}

func (e *InputError) Error() string {
	switch e.Input {
	case "name":
		return "schema1 needs a repository and tag (ConvertOptions.Name and Tag)"
	case "layers":
		return "layer sizes and diff ids need the layer blobs: " + e.Err.Error()
	}
	return e.Input + ": " + e.Err.Error()
}

func (e *InputError) Unwrap() error { return e.Err }

// ErrNeedInput: an option a conversion needs was not given (see InputError).
var ErrNeedInput = errors.New("not given")

// errNoBlobSource is what a nil ConvertOptions.Blobs answers.
var errNoBlobSource = fmt.Errorf("no blob source (ConvertOptions.Blobs): %w", ErrNeedInput)

// Convert converts m to the kind to: schema2/OCI -> schema1 (signed with
// opts.Key, else unsigned), schema1 -> schema2/OCI (a new config blob in
// Converted.Config), schema2 <-> OCI, and schema1 -> schema1 (re-signed
// with opts.Key, else unchanged). A missing input is an *InputError; lists
// and indexes are ErrUnsupported (convert their children).
func Convert(ctx context.Context, m Manifest, to Kind, opts ConvertOptions) (*Converted, error) {
	blobs := opts.Blobs
	if blobs == nil {
		blobs = BlobFetcherFunc(func(context.Context, digest.Digest) (io.ReadCloser, error) { return nil, errNoBlobSource })
	}
	switch m := m.(type) {
	case *Image:
		if to != KindSchema1 {
			out, err := ConvertImage(m, to)
			if err != nil {
				return nil, err
			}
			return &Converted{Manifest: out}, nil
		}
		config := opts.Config
		if config == nil {
			limit := opts.MaxConfigSize
			if limit <= 0 {
				limit = DefaultMaxSize
			}
			var err error
			if config, err = fetchAll(ctx, blobs, m.Config().Digest, limit); err != nil {
				return nil, &InputError{Input: "config", Err: err}
			}
		}
		if opts.Name == "" || opts.Tag == "" {
			return nil, &InputError{Input: "name", Err: ErrNeedInput}
		}
		out, err := ToSchema1(m, config, opts.Name, opts.Tag)
		if err != nil {
			return nil, err
		}
		if opts.Key == nil {
			return &Converted{Manifest: out, Unsigned: true}, nil
		}
		if out, err = SignSchema1(out, opts.Key); err != nil {
			return nil, err
		}
		return &Converted{Manifest: out}, nil
	case *Schema1:
		if to == KindSchema1 {
			if opts.Key == nil {
				return &Converted{Manifest: m.Raw()}, nil
			}
			out, err := SignSchema1(m.Payload(), opts.Key)
			if err != nil {
				return nil, err
			}
			return &Converted{Manifest: out}, nil
		}
		infos, err := InspectLayers(ctx, m, blobs)
		if err != nil {
			return nil, &InputError{Input: "layers", Err: err}
		}
		mf, cfg, err := FromSchema1(m, to, infos)
		if err != nil {
			return nil, err
		}
		return &Converted{Manifest: mf, Config: cfg}, nil
	}
	return nil, fmt.Errorf("%w: %s cannot be converted (convert its children)", ErrUnsupported, m.Kind())
}

// fetchAll reads a whole blob of at most limit bytes.
func fetchAll(ctx context.Context, f BlobFetcher, d digest.Digest, limit int64) ([]byte, error) {
	rc, err := f.FetchBlob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrTooLarge
	}
	return b, nil
}
