package station_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainrun"
)

var (
	buildOnce sync.Once
	codeDir   string
	buildErr  error
)

// aggregateCode builds the demo's aggregate train once per test binary.
func aggregateCode(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		codeDir, buildErr = os.MkdirTemp("", "station-code-")
		if buildErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			buildErr = train.BuildStatic(ctx, "../demo/aggregate", filepath.Join(codeDir, "aggregate"))
		}
	})
	if buildErr != nil {
		t.Fatalf("build train program: %v", buildErr)
	}
	return codeDir
}

func needRunc(t testing.TB) *trainrun.Runc {
	t.Helper()
	r := trainrun.NewRunc(trainrun.WithStateDir(t.TempDir()), trainrun.WithBundleDir(t.TempDir()))
	if err := r.Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run trains for real: %v", err)
		}
		t.Skipf("runc not usable here: %v", err)
	}
	return r
}

type net struct {
	ctx      context.Context
	rc       *registry.Client
	trust    *hardened.MemoryTrust
	network  station.Network
	alice    *hardened.PrivateKey
	stations map[string]*station.Station
	exec     hardened.ExecConfig
	gate     *gate
}

// gate is the test registry's front door: it counts manifest writes per
// path and fails the requests fail picks (a registry hiccup) with the
// status failCode (503 when 0; go-containerregistry retries 5xx a few
// times, other codes at once).
type gate struct {
	inner    http.Handler
	mu       sync.Mutex
	fail     func(r *http.Request) bool
	failCode int
	corrupt  string         // a blob digest served with one byte flipped
	puts     map[string]int // "/v2/REPO/manifests/REF" -> PUTs
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	fail, code, corrupt := g.fail != nil && g.fail(r), g.failCode, g.corrupt
	if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
		g.puts[r.URL.Path]++
	}
	g.mu.Unlock()
	if fail {
		if code == 0 {
			code = http.StatusServiceUnavailable
		}
		http.Error(w, "injected failure", code)
		return
	}
	if corrupt != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+corrupt) {
		rec := httptest.NewRecorder()
		g.inner.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		if len(b) > 0 {
			b[len(b)/2] ^= 1
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(b)
		return
	}
	g.inner.ServeHTTP(w, r)
}

// setFail sets (nil: clears) the requests the gate fails.
func (g *gate) setFail(f func(r *http.Request) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = f
}

// manifestPuts counts manifest writes to repo:tag.
func (g *gate) manifestPuts(repoTag string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	host, rest, _ := strings.Cut(repoTag, "/")
	_ = host
	repo, tag, _ := strings.Cut(rest, ":")
	return g.puts["/v2/"+repo+"/manifests/"+tag]
}

func newNet(t testing.TB, runner station.Runner, route ...string) *net {
	t.Helper()
	return newNetOn(t, testutil.QuietRegistry(), runner, route...)
}

// newNetOn is newNet on the registry reg (an http.Handler).
func newNetOn(t testing.TB, reg http.Handler, runner station.Runner, route ...string) *net {
	t.Helper()
	g := &gate{inner: reg, puts: map[string]int{}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	n := &net{ctx: context.Background(), rc: registry.NewClient(), trust: hardened.NewMemoryTrust(), gate: g,
		network:  station.Network{Prefix: strings.TrimPrefix(srv.URL, "http://") + "/pht"},
		stations: map[string]*station.Station{},
		exec:     hardened.ExecConfig{Entrypoint: []string{"/opt/pht_train/aggregate"}, WorkingDir: "/opt/pht_train"}}
	n.alice, _ = hardened.GenerateKey()
	n.trust.AddUser("alice", n.alice.Public())
	for i, id := range route {
		k, _ := hardened.GenerateKey()
		n.trust.AddStation(id, k.Public())
		data := t.TempDir()
		csv := "id,age,diagnosis\n" + strings.Repeat("1,50,flu\n", i+1)
		if err := os.WriteFile(filepath.Join(data, "patients.csv"), []byte(csv), 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := station.OpenDB(filepath.Join(t.TempDir(), "station.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		n.stations[id] = &station.Station{ID: id, Protocol: station.V1{Key: k}, Trust: n.trust, Runner: runner, Client: n.rc,
			Network: n.network, DataDir: data, WorkDir: t.TempDir(), DB: db, ReviewDir: t.TempDir(), TrainLogDir: t.TempDir(),
			Timeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	return n
}

// create builds, approves and pushes a train to the first station's inbox.
func (n *net) create(t *testing.T, route ...string) string {
	t.Helper()
	return n.createFrom(t, aggregateCode(t), route...)
}

// createFrom is create with the code tree in dir.
func (n *net) createFrom(t *testing.T, code string, route ...string) string {
	t.Helper()
	base := empty.Image
	d, err := creator.ApprovalDigest(n.ctx, code, n.exec, base)
	if err != nil {
		t.Fatal(err)
	}
	n.trust.Approve(hardened.Approval{Digest: d, Approvers: []string{"alice"}})
	b, err := creator.Create(n.ctx, creator.Options{Creator: hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, Spec: hardened.Spec{ID: "t1", Route: route, Exec: n.exec}, CodeDir: code, Base: base, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	ref := n.network.Inbox(route[0]) + ":t1"
	if _, err := n.rc.Push(n.ctx, b.Image, ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestRouteOfThreeStations runs a real train with runc at three stations and
// has the creator read the aggregate of all three stations' data.
func TestRouteOfThreeStations(t *testing.T) {
	runner := needRunc(t)
	route := []string{"st1", "st2", "st3"}
	n := newNet(t, runner, route...)
	ref := n.create(t, route...)
	for _, id := range route {
		st, err := n.stations[id].Process(n.ctx, ref)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		ref = strings.SplitN(st.Pushed, "@", 2)[0]
	}
	if !strings.Contains(ref, "/users/alice:t1") {
		t.Fatalf("finished train went to %s", ref)
	}
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	v, err := creator.OpenResults(n.ctx, hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, img, out, creator.WithOpenTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Complete() || len(v.Stops) != 3 {
		t.Fatalf("verified %d stops", len(v.Stops))
	}
	var agg struct {
		Stations []string `json:"stations"`
		Patients int      `json:"patients"`
	}
	b, err := os.ReadFile(filepath.Join(out, "aggregate.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &agg); err != nil {
		t.Fatal(err)
	}
	if agg.Patients != 1+2+3 || strings.Join(agg.Stations, ",") != "st1,st2,st3" {
		t.Fatalf("aggregate = %s", b)
	}
	// The same stop again is a replay.
	if _, err := n.stations["st1"].Process(n.ctx, n.network.Inbox("st1")+":t1"); !errors.Is(err, hardened.ErrReplay) {
		t.Fatalf("replayed stop: %v", err)
	}
}

// TestStationRefusesTamperedImage changes what would run, outside of the
// signed envelope, and expects the station to refuse before running.
func TestStationRefusesTamperedImage(t *testing.T) {
	runner := needRunc(t)
	cases := map[string]func(t *testing.T, img v1.Image) v1.Image{
		"changed entrypoint": func(t *testing.T, img v1.Image) v1.Image {
			cf, _ := img.ConfigFile()
			c := cf.Config
			c.Entrypoint = []string{"/bin/sh", "-c", "cat /opt/pht_data/*"}
			out, err := mutate.Config(img, c)
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
		"extra base layer": func(t *testing.T, img v1.Image) v1.Image {
			l, err := train.ImageFromBinary(filepath.Join(aggregateCode(t), "aggregate"))
			if err != nil {
				t.Fatal(err)
			}
			ls, _ := l.Layers()
			cf, _ := img.ConfigFile()
			layers, _ := img.Layers()
			// Insert the layer below the state layer, with a history entry.
			base, _ := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: cf.OS, Architecture: cf.Architecture, Config: cf.Config})
			base, err = mutate.Append(base, mutate.Addendum{Layer: ls[0], History: v1.History{CreatedBy: "evil"}})
			if err != nil {
				t.Fatal(err)
			}
			out, err := mutate.Append(base, mutate.Addendum{Layer: layers[len(layers)-1], History: cf.History[len(cf.History)-1]})
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			n := newNet(t, runner, "st1")
			ref := n.create(t, "st1")
			img, err := n.rc.Pull(n.ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			evil := n.network.Inbox("st1") + ":evil"
			if _, err := n.rc.Push(n.ctx, tamper(t, img), evil); err != nil {
				t.Fatal(err)
			}
			_, err = n.stations["st1"].Process(n.ctx, evil)
			if err == nil {
				t.Fatal("tampered train was run")
			}
			want := map[string]string{"changed entrypoint": "entrypoint", "extra base layer": "base layers are"}[name]
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not name %q", err, want)
			}
			if tags, _ := n.rc.ListTags(n.ctx, n.network.Outbox("alice")); len(tags) != 0 {
				t.Fatal("refused train was pushed on")
			}
			// The tampered copy carried the genuine envelope; refusing it
			// must not have used up the genuine train's stop.
			if _, err := n.stations["st1"].Process(n.ctx, ref); err != nil {
				t.Fatalf("genuine train after a tampered copy: %v", err)
			}
		})
	}
}
