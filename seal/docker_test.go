package seal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"

	"github.com/trainyard/trainyard/internal/testutil"
)

// fakeEngine stands in for POST /images/load: it reads the docker-archive
// with go-containerregistry's tarball package, as an independent reader of
// the format, and remembers image IDs by tag.
type fakeEngine struct {
	loaded  map[string]string
	aborted bool
}

func (f *fakeEngine) ImageLoad(_ context.Context, r io.Reader, _ ...client.ImageLoadOption) (client.ImageLoadResult, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		f.aborted = true
		return nil, err
	}
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, err
	}
	f.loaded = map[string]string{}
	for _, e := range m {
		for _, rt := range e.RepoTags {
			tag, err := name.NewTag(rt)
			if err != nil {
				return nil, err
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return nil, err
			}
			layers, err := img.Layers()
			if err != nil {
				return nil, err
			}
			for _, l := range layers { // read every layer: a broken archive fails here
				rc, err := l.Compressed()
				if err != nil {
					return nil, err
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					return nil, err
				}
				rc.Close()
			}
			cfg, err := img.ConfigName()
			if err != nil {
				return nil, err
			}
			f.loaded[rt] = cfg.String()
		}
	}
	return io.NopCloser(strings.NewReader(`{"stream":"Loaded image"}` + "\n")), nil
}

func (f *fakeEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	id, ok := f.loaded[ref]
	if !ok {
		return client.ImageInspectResult{}, errors.New("No such image: " + ref)
	}
	return client.ImageInspectResult{InspectResponse: image.InspectResponse{ID: id}}, nil
}

func TestDockerTargetArchive(t *testing.T) {
	fx := sealFixture(t)
	var expects []Expect
	for _, s := range fx.images {
		e, _ := ParseExpect(s.Name+"@"+digestOf(t, s.Image), "")
		expects = append(expects, e)
	}
	eng := &fakeEngine{}
	if _, err := Unseal(context.Background(), fx.path, fx.keys, NewDockerTarget(eng), WithExpect(expects...)); err != nil {
		t.Fatal(err)
	}
	for _, s := range fx.images {
		cfg, _ := s.Image.ConfigName()
		if eng.loaded[s.Name] != cfg.String() {
			t.Fatalf("%s: engine has %q", s.Name, eng.loaded[s.Name])
		}
	}

	// A tampered archive fails in the first pass: the engine is never called.
	orig, _ := os.ReadFile(fx.path)
	eng2 := &fakeEngine{}
	_, err := Unseal(context.Background(), writeCopy(t, flip(orig, len(orig)-30)), fx.keys, NewDockerTarget(eng2))
	if !errors.Is(err, ErrTampered) || eng2.loaded != nil || eng2.aborted {
		t.Fatalf("tampered: %v loaded=%v", err, eng2.loaded)
	}
}

// TestDockerTargetAbort: when the load pass fails, the request body fails
// too, so the engine loads nothing.
func TestDockerTargetAbort(t *testing.T) {
	fx := sealFixture(t)
	eng := &fakeEngine{}
	dt := NewDockerTarget(eng)
	inv := &Inventory{Images: []ArchiveImage{}}
	if err := dt.Prepare(context.Background(), inv); err != nil {
		t.Fatal(err)
	}
	_ = dt.WriteBlob(context.Background(), fx.sealedDesc(t), strings.NewReader("partial"))
	dt.Abort(context.Background())
	if !eng.aborted || eng.loaded != nil {
		t.Fatalf("engine loaded after abort: %v", eng.loaded)
	}
}

// TestDockerEngine loads into a real engine, a dockerd the test starts, and
// finds every archived image there afterwards.
func TestDockerEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", testutil.Dockerd(t))
	c, err := NewDockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fx := sealFixture(t)
	if _, err := Unseal(context.Background(), fx.path, fx.keys, NewDockerTarget(c)); err != nil {
		t.Fatal(err)
	}
	for _, im := range fx.images {
		if _, err := c.ImageInspect(context.Background(), dockerName(im.Name)); err != nil {
			t.Errorf("%s not in the engine after unseal: %v", im.Name, err)
		}
	}
}

func (fx *sealedFixture) sealedDesc(t *testing.T) (d v1.Descriptor) {
	l, err := fx.images[2].Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	dg, _ := l[0].Digest()
	sz, _ := l[0].Size()
	d.Digest, d.Size = dg, sz
	return d
}
