package phtv2

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/train"
)

var (
	keysOnce sync.Once
	keys     map[string]*rsa.PrivateKey
)

// testKeys returns RSA-2048 keys shared by the tests of this package.
func testKeys(t testing.TB) map[string]*rsa.PrivateKey {
	keysOnce.Do(func() {
		keys = map[string]*rsa.PrivateKey{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, n := range []string{"s1", "s2", "s3", "user", "mallory"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					panic(err)
				}
				mu.Lock()
				keys[n] = k
				mu.Unlock()
			}()
		}
		wg.Wait()
	})
	return keys
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for n, c := range files {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// buildTrain builds a three-stop train on scratch.
func buildTrain(t testing.TB) v1.Image {
	t.Helper()
	k := testKeys(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"entrypoint.py": "print('hello pht')\n",
		"lib/util.py":   "X = 42\n",
	})
	out, err := Build(context.Background(), train.ScratchImage(), BuildSpec{
		Dir: dir, Query: []byte(`{"query":{"resource":"Patient"}}`),
		Route: []RouteStop{
			{Station: "s1", PublicKey: &k["s1"].PublicKey},
			{Station: "s2", PublicKey: &k["s2"].PublicKey},
			{Station: "s3", PublicKey: &k["s3"].PublicKey},
		},
		CreatorID: "test-user", CreatorKey: k["user"], TrainID: "train-1",
	}, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return out.Image
}

func station(t testing.TB, id string) Station {
	return Station{ID: id, Key: testKeys(t)[id]}
}

// simulateRun replaces the results like a run that appends a line to
// /opt/pht_results/out/log.txt and writes its own file.
func simulateRun(t testing.TB, img v1.Image, id string) v1.Image {
	t.Helper()
	ctx := context.Background()
	st, err := train.ReadState(ctx, img, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir := t.TempDir()
	prev := ""
	if e := st.Results.Lookup("out/log.txt"); e != nil {
		rc, _ := st.Results.Open(e)
		b, _ := io.ReadAll(rc)
		rc.Close()
		prev = string(b)
	}
	writeFiles(t, dir, map[string]string{
		"out/log.txt": prev + "ran at " + id + "\n",
		"model-" + id: strings.Repeat(id, 1000),
		"a.txt":       "walk order: a.txt after a/",
		"a/x":         "x",
	})
	out, layer, err := train.ReplaceResults(ctx, img, dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { layer.Remove() })
	return out
}

func newRegistry(t testing.TB) (host string) {
	t.Helper()
	srv := testutil.Registry(t)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// stop runs pre-run, a simulated execution and post-run for one station
// against the registry, the way a station does: pull, work, push.
func stop(t *testing.T, c *registry.Client, ref, id string) {
	t.Helper()
	ctx := context.Background()
	img, err := train.Load(ctx, ref, c)
	if err != nil {
		t.Fatal(err)
	}
	pre, err := PreRun(ctx, img, station(t, id), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatalf("pre-run at %s: %v", id, err)
	}
	defer pre.Close()
	ran := simulateRun(t, pre.Image, id)
	post, err := PostRun(ctx, ran, station(t, id), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatalf("post-run at %s: %v", id, err)
	}
	defer post.Close()
	if err := train.Save(ctx, post.Image, ref, c); err != nil {
		t.Fatal(err)
	}
}

func TestRouteThreeStations(t *testing.T) {
	ctx := context.Background()
	host := newRegistry(t)
	c := registry.NewClient(registry.WithInsecure(true))
	ref := host + "/incoming/train-1:latest"
	if err := train.Save(ctx, buildTrain(t), ref, c); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s1", "s2", "s3"} {
		stop(t, c, ref, id)
	}
	final, err := train.Load(ctx, ref, c)
	if err != nil {
		t.Fatal(err)
	}
	// Exactly one state layer (nothing stacked), and no plaintext in it.
	cf, _ := final.ConfigFile()
	n := 0
	for _, h := range cf.History {
		if train.IsStateLayer(h) {
			n++
		}
	}
	layers, _ := final.Layers()
	if n != 1 || len(layers) != 1 {
		t.Fatalf("state layers %d, layers %d; want 1 and 1", n, len(layers))
	}
	st, err := train.ReadState(ctx, final, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, e := range append(st.Train.Files(), st.Results.Files()...) {
		rc, _ := st.Results.Open(e)
		b, _ := io.ReadAll(rc)
		rc.Close()
		if strings.Contains(string(b), "ran at") || strings.Contains(string(b), "hello pht") {
			t.Fatalf("plaintext %s left in the pushed image", e.Name)
		}
	}

	// The creator decrypts the final results.
	out := t.TempDir()
	cfg, err := DecryptResults(ctx, final, testKeys(t)["user"], out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "out", "log.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "ran at s1\nran at s2\nran at s3\n" {
		t.Fatalf("final results %q", b)
	}
	for i, r := range cfg.Route {
		if r.Signature == nil || r.Index != i {
			t.Fatalf("route entry %d: %+v", i, r)
		}
	}
	// Someone else cannot.
	if _, err := DecryptResults(ctx, final, testKeys(t)["mallory"], t.TempDir()); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("mallory: %v", err)
	}
	// A station of the route can run pre-run again only where it is; an
	// off-route station is refused.
	if _, err := PreRun(ctx, final, Station{ID: "mallory", Key: testKeys(t)["mallory"]}); !errors.Is(err, ErrStation) {
		t.Fatalf("off-route station: %v", err)
	}
}
