package station_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainimage"
	"github.com/trainyard/trainyard/trainrun"
)

// inspectNet is a network for the inspect tests: a real registry, a trust
// store with creator alice, and one key per station.
type inspectNet struct {
	ctx     context.Context
	rc      *registry.Client
	trust   *hardened.MemoryTrust
	network station.Network
	alice   *hardened.PrivateKey
	keys    map[string]*hardened.PrivateKey
	exec    hardened.ExecConfig
}

func newInspectNet(t *testing.T, stations ...string) *inspectNet {
	t.Helper()
	srv := testutil.Registry(t)
	t.Cleanup(srv.Close)
	n := &inspectNet{ctx: context.Background(), rc: registry.NewClient(), trust: hardened.NewMemoryTrust(),
		network: station.Network{Prefix: strings.TrimPrefix(srv.URL, "http://") + "/pht"},
		keys:    map[string]*hardened.PrivateKey{},
		exec: hardened.ExecConfig{Entrypoint: []string{"/opt/pht_train/run.sh"}, Cmd: []string{"--fast"},
			Env: []string{"MODE=sum"}, WorkingDir: "/opt/pht_train", User: "1000:1000"}}
	var err error
	if n.alice, err = hardened.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	n.trust.AddUser("alice", n.alice.Public())
	for _, id := range stations {
		k, err := hardened.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		n.keys[id] = k
		n.trust.AddStation(id, k.Public())
	}
	return n
}

// station returns station id of the network with its own work dir.
func (n *inspectNet) station(t *testing.T, id string, runner station.Runner) *station.Station {
	t.Helper()
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "patients.csv"), []byte("id,age,diagnosis\n1,50,flu\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &station.Station{ID: id, Protocol: station.V1{Key: n.keys[id]}, Trust: n.trust, Runner: runner, Client: n.rc,
		Network: n.network, DataDir: data, WorkDir: t.TempDir(), Timeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// push creates train t1 from the code in dir on base, has it approved
// (for approvedAt only, when given) and pushes it to the first inbox.
func (n *inspectNet) push(t *testing.T, dir string, base v1.Image, route []string, approvedAt ...string) string {
	t.Helper()
	d, err := creator.ApprovalDigest(n.ctx, dir, n.exec, base)
	if err != nil {
		t.Fatal(err)
	}
	n.trust.Approve(hardened.Approval{Digest: d, Approvers: []string{"ethics-board", "dpo"}, Stations: approvedAt})
	b, err := creator.Create(n.ctx, creator.Options{Creator: hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, Spec: hardened.Spec{ID: "t1", Route: route, Exec: n.exec}, CodeDir: dir, Base: base, TempDir: t.TempDir()})
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

// smallCode is a code tree of two files and a directory.
func smallCode(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, c := range map[string]string{"run.sh": "#!/bin/sh\nexit 0\n", "lib/util.py": "X = 42\n"} {
		mode := os.FileMode(0o644)
		if p == "run.sh" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// noLeftovers fails when a work dir still holds anything (decrypted code,
// spooled blobs).
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		t.Fatalf("inspect left %d entries in the work dir (%s)", len(ents), ents[0].Name())
	}
}

// tags lists every tag of every repository the network has, so a test can
// see that inspect pushed nothing.
func (n *inspectNet) tags(t *testing.T, ids ...string) []string {
	t.Helper()
	var all []string
	for _, repo := range append([]string{n.network.Outbox("alice")}, func() []string {
		var r []string
		for _, id := range ids {
			r = append(r, n.network.Inbox(id))
		}
		return r
	}()...) {
		tags, _ := n.rc.ListTags(n.ctx, repo)
		for _, tg := range tags {
			all = append(all, repo+":"+tg)
		}
	}
	return all
}

// TestInspectFreshTrain: inspect of a new train at its first stop shows the
// signed facts, the approval, the exec config and the decrypted code tree;
// it pushes nothing and leaves no file behind.
func TestInspectFreshTrain(t *testing.T) {
	n := newInspectNet(t, "st1", "st2")
	ref := n.push(t, smallCode(t), empty.Image, []string{"st1", "st2"})
	s := n.station(t, "st1", nil)
	before := n.tags(t, "st1", "st2")
	in, err := s.Inspect(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, s.WorkDir)
	if after := n.tags(t, "st1", "st2"); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("inspect changed the registry: %v -> %v", before, after)
	}
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	dg, _ := img.Digest()
	m, _ := img.Manifest()
	st, _, err := trainEnvelope(t, img).Unverified()
	if err != nil {
		t.Fatal(err)
	}

	if !in.Verified || in.Station != "st1" || in.Source != ref || in.Protocol != hardened.Protocol || in.ID != "t1" ||
		in.Creator != "alice" || !in.Created.Equal(st.Created) || in.TrainDigest == "" {
		t.Fatalf("train facts: %+v", in)
	}
	if len(in.Route) != 2 || in.Route[0] != (station.RouteStop{Index: 0, Station: "st1", Here: true}) ||
		in.Route[1] != (station.RouteStop{Index: 1, Station: "st2"}) {
		t.Fatalf("route: %+v", in.Route)
	}
	if in.Index != 0 || in.Next != "st2" || in.NextKind != "station" {
		t.Fatalf("index %d next %s (%s)", in.Index, in.Next, in.NextKind)
	}
	if in.Approval.Digest != st.Code.Approval || strings.Join(in.Approval.Approvers, ",") != "ethics-board,dpo" ||
		in.Approval.Stations == nil || len(in.Approval.Stations) != 0 {
		t.Fatalf("approval: %+v", in.Approval)
	}
	if e := in.Exec; strings.Join(e.Entrypoint, " ") != "/opt/pht_train/run.sh" || strings.Join(e.Cmd, " ") != "--fast" ||
		strings.Join(e.Env, " ") != "MODE=sum" || e.WorkingDir != "/opt/pht_train" || e.User != "1000:1000" {
		t.Fatalf("exec: %+v", e)
	}
	if in.Base != "scratch" || in.Results != nil {
		t.Fatalf("base %q results %+v", in.Base, in.Results)
	}
	c := in.Code
	if c.Manifest != st.Code.Manifest || c.Files != 2 || c.Dirs != 1 || c.Bytes != int64(len("#!/bin/sh\nexit 0\n")+len("X = 42\n")) || c.Truncated ||
		c.Sealed.Digest != st.Code.Blob.Digest || c.Sealed.Size != st.Code.Blob.Size || c.Sealed.Size <= c.Bytes {
		t.Fatalf("code: %+v", c)
	}
	want := []station.CodeEntry{
		{Path: "lib", Type: "dir", Mode: "0755"},
		{Path: "lib/util.py", Type: "file", Mode: "0644", Size: 7, SHA256: "sha256:" + sha256hex("X = 42\n")},
		{Path: "run.sh", Type: "file", Mode: "0755", Size: 17, SHA256: "sha256:" + sha256hex("#!/bin/sh\nexit 0\n")},
	}
	if len(c.Entries) != len(want) {
		t.Fatalf("entries: %+v", c.Entries)
	}
	for i := range want {
		if c.Entries[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, c.Entries[i], want[i])
		}
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	if in.Image.Digest != dg.String() || in.Image.Size != size || in.Image.Layers != len(m.Layers) || in.Image.BaseLayers != 0 {
		t.Fatalf("image: %+v (manifest %s, %d bytes)", in.Image, dg, size)
	}
	// Lists are [] in JSON, never null: a console renders them as they are.
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "null") && !strings.Contains(string(raw), `"results":null`) {
		t.Fatalf("null in %s", raw)
	}
}

// TestInspectRefusals: every check of a stop refuses at inspect too, with
// the stop's sentinel, without a push and without leftovers.
func TestInspectRefusals(t *testing.T) {
	approvedBase, err := mutate.AppendLayers(empty.Image, fileLayer(t, "etc/base.txt", "approved base"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		// prepare returns the reference to inspect and the inspecting station.
		prepare func(t *testing.T, n *inspectNet, ref string) (string, *station.Station)
		base    v1.Image
		only    []string // approval limited to these stations
		want    error
		says    string
	}{
		{name: "not due here", want: hardened.ErrRoute, says: "due at stop 0",
			prepare: func(t *testing.T, n *inspectNet, ref string) (string, *station.Station) {
				return ref, n.station(t, "st2", nil)
			}},
		{name: "not on the route", want: hardened.ErrRoute, says: "not on the route",
			prepare: func(t *testing.T, n *inspectNet, ref string) (string, *station.Station) {
				return ref, n.station(t, "st3", nil)
			}},
		{name: "approval for another station", only: []string{"st2"}, want: hardened.ErrUnapproved, says: "st1",
			prepare: func(t *testing.T, n *inspectNet, ref string) (string, *station.Station) {
				return ref, n.station(t, "st1", nil)
			}},
		{name: "wrong station key", want: hardened.ErrUntrusted, says: "private key",
			prepare: func(t *testing.T, n *inspectNet, ref string) (string, *station.Station) {
				s := n.station(t, "st1", nil)
				s.Protocol = station.V1{Key: n.keys["st2"]}
				return ref, s
			}},
		{name: "changed entrypoint", want: hardened.ErrTampered, says: "entrypoint",
			prepare: func(t *testing.T, n *inspectNet, ref string) (string, *station.Station) {
				img := n.pull(t, ref)
				cf, _ := img.ConfigFile()
				c := cf.Config
				c.Entrypoint = []string{"/bin/sh", "-c", "cat /opt/pht_data/*"}
				out, err := mutate.Config(img, c)
				if err != nil {
					t.Fatal(err)
				}
				return n.pushImage(t, out, "evil"), n.station(t, "st1", nil)
			}},
		{name: "changed code blob", want: hardened.ErrTampered, says: "code blob",
			prepare: func(t *testing.T, n *inspectNet, ref string) (string, *station.Station) {
				return n.pushImage(t, flipCodeByte(t, n.pull(t, ref)), "evil"), n.station(t, "st1", nil)
			}},
		{name: "swapped base layer", base: approvedBase, want: trainrun.ErrLayerDigest, says: "base layer 0",
			prepare: func(t *testing.T, n *inspectNet, ref string) (string, *station.Station) {
				swapBaseLayer(t, ref, fileLayer(t, "etc/base.txt", "not the approved base"))
				return ref, n.station(t, "st1", nil)
			}},
		{name: "an artifact, not a train", want: station.ErrNotTrain, says: "artifact",
			prepare: func(t *testing.T, n *inspectNet, ref string) (string, *station.Station) {
				return n.pushImage(t, mutate.ConfigMediaType(n.pull(t, ref), "application/vnd.example.sbom+json"), "sbom"), n.station(t, "st1", nil)
			}},
		{name: "pht-v2 station", want: hardened.ErrUnsupported, says: "inspect supports v1 trains",
			prepare: func(t *testing.T, n *inspectNet, ref string) (string, *station.Station) {
				s := n.station(t, "st1", nil)
				s.Protocol = station.PHTv2{}
				return ref, s
			}},
	}
	code := smallCode(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newInspectNet(t, "st1", "st2", "st3")
			base := c.base
			if base == nil {
				base = empty.Image
			}
			ref := n.push(t, code, base, []string{"st1", "st2"}, c.only...)
			target, s := c.prepare(t, n, ref)
			before := n.tags(t, "st1", "st2", "st3")
			in, err := s.Inspect(n.ctx, target)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("inspect: %+v, %v; want %v saying %q", in, err, c.want, c.says)
			}
			noLeftovers(t, s.WorkDir)
			if after := n.tags(t, "st1", "st2", "st3"); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Fatalf("inspect changed the registry: %v -> %v", before, after)
			}
		})
	}
}

// TestInspectAlongTheRoute (runc): inspect, then the stop itself at the
// first station (inspect did not use the stop up), then inspect at the
// second: stop 0 shows as done with its signed time, the previous results
// as a sealed blob, the creator as the next hop; the first station sees the
// train as a replay.
func TestInspectAlongTheRoute(t *testing.T) {
	runner := needRunc(t)
	n := newInspectNet(t, "st1", "st2")
	n.exec = hardened.ExecConfig{Entrypoint: []string{"/opt/pht_train/aggregate"}, WorkingDir: "/opt/pht_train"}
	ref := n.push(t, aggregateCode(t), empty.Image, []string{"st1", "st2"})
	s1, s2 := n.station(t, "st1", runner), n.station(t, "st2", runner)
	guard(t, s1)
	guard(t, s2)
	if _, err := s1.Inspect(n.ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Inspect(n.ctx, ref); err != nil {
		t.Fatalf("second inspect: %v", err)
	}
	stop, err := s1.Process(n.ctx, ref)
	if err != nil {
		t.Fatalf("stop after inspect: %v", err)
	}
	next := strings.SplitN(stop.Pushed, "@", 2)[0]
	in, err := s2.Inspect(n.ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, s2.WorkDir)
	r0 := in.Route[0]
	if !r0.Done || r0.Here || r0.Time == nil || r0.Time.IsZero() || r0.Time.Before(stop.Time.Add(-time.Second)) ||
		in.Route[1].Done || !in.Route[1].Here || in.Route[1].Time != nil {
		t.Fatalf("route after stop 0: %+v / %+v", r0, in.Route[1])
	}
	if in.Index != 1 || in.Next != "alice" || in.NextKind != "creator" || in.Results == nil || in.Results.Size <= 0 || !strings.HasPrefix(in.Results.Digest, "sha256:") {
		t.Fatalf("index %d next %s (%s) results %+v", in.Index, in.Next, in.NextKind, in.Results)
	}
	if _, err := s1.Inspect(n.ctx, next); !errors.Is(err, hardened.ErrReplay) {
		t.Fatalf("st1 inspecting its own output: %v", err)
	}
	if _, err := s2.Process(n.ctx, next); err != nil {
		t.Fatalf("stop 1 after inspect: %v", err)
	}
}

func (n *inspectNet) pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	img, err := n.rc.Pull(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func (n *inspectNet) pushImage(t *testing.T, img v1.Image, tag string) string {
	t.Helper()
	ref := n.network.Inbox("st1") + ":" + tag
	if _, err := n.rc.Push(n.ctx, img, ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// trainEnvelope reads the envelope from a train image (unverified).
func trainEnvelope(t *testing.T, img v1.Image) *hardened.Envelope {
	t.Helper()
	raw, err := train.ReadFile(context.Background(), img, train.ConfigPath, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	env, err := hardened.ParseEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// guard gives s a station database, so that a stop inspect had used up
// would be refused as a replay.
func guard(t *testing.T, s *station.Station) {
	t.Helper()
	d, err := station.OpenDB(filepath.Join(t.TempDir(), "station.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s.DB = d
}

// flipCodeByte returns img with one byte of its sealed code blob changed
// and everything else (envelope, sizes, config) as it was.
func flipCodeByte(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[len(layers)-1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	tr, tw := tar.NewReader(rc), tar.NewWriter(&buf)
	flipped := false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(hdr.Name, "/") == trainimage.CodeBlob {
			body[len(body)/2] ^= 1
			flipped = true
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	if !flipped {
		t.Fatal("no code blob in the state layer")
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	out, err := train.WithState(img, l)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// swapBaseLayer points the manifest's base layer 0 at evil's blob, config
// and diff ids untouched (the attack of issue 9).
func swapBaseLayer(t *testing.T, ref string, evil v1.Layer) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(r.Context(), evil); err != nil {
		t.Fatal(err)
	}
	m = m.DeepCopy()
	m.Layers[0].Digest, _ = evil.Digest()
	m.Layers[0].Size, _ = evil.Size()
	raw, _ := json.Marshal(m)
	if err := remote.Put(r, rawManifest{b: raw, mt: m.MediaType}); err != nil {
		t.Fatal(err)
	}
}
