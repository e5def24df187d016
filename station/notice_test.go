package station_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainimage"
)

var ociTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// TestNoticeTag: tags are valid OCI tags, readable when they can be, and
// distinct for distinct (train, station) pairs, including pairs that would
// spell the same plain tag.
func TestNoticeTag(t *testing.T) {
	if got := station.NoticeTag("study42", "hospital-a"); got != "study42.notice.hospital-a" {
		t.Fatalf("plain tag %q", got)
	}
	long := strings.Repeat("x", 120)
	pairs := [][2]string{
		{"study42", "hospital-a"}, {"study42", "hospital-b"}, {"study43", "hospital-a"},
		{"a.notice.b", "c"}, {"a", "b.notice.c"}, // both would read "a.notice.b.notice.c"
		{long, "hospital-a"}, {long + "y", "hospital-a"}, {"t/1", "st"}, {"", "st"}, {"t", ""},
		{"ab", "c"}, {"a", "bc"}, {"st.1", "x"}, {"st", "1.x"},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		tag := station.NoticeTag(p[0], p[1])
		if !ociTag.MatchString(tag) {
			t.Errorf("NoticeTag(%q, %q) = %q: not a valid tag", p[0], p[1], tag)
		}
		if tag == p[0] {
			t.Errorf("NoticeTag(%q, %q) is the train's own tag", p[0], p[1])
		}
		if q, dup := seen[tag]; dup {
			t.Errorf("NoticeTag(%q) = NoticeTag(%q) = %q", p, q, tag)
		}
		seen[tag] = p
	}
}

type noticeNet struct {
	ctx     context.Context
	rc      *registry.Client
	trust   *hardened.MemoryTrust
	network station.Network
	keys    map[string]*hardened.PrivateKey
	alice   *hardened.PrivateKey
}

func newNoticeNet(t *testing.T, stations ...string) *noticeNet {
	t.Helper()
	srv := testutil.Registry(t)
	t.Cleanup(srv.Close)
	n := &noticeNet{ctx: context.Background(), rc: registry.NewClient(), trust: hardened.NewMemoryTrust(),
		network: station.Network{Prefix: strings.TrimPrefix(srv.URL, "http://") + "/net"}, keys: map[string]*hardened.PrivateKey{}}
	n.alice, _ = hardened.GenerateKey()
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

func (n *noticeNet) push(t *testing.T, st string, nt hardened.Notice) string {
	t.Helper()
	ref, err := (station.Outbox{Client: n.rc, Network: n.network, User: "alice"}).PushNotice(n.ctx, n.keys[st], nt)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestPushFetchNotices: notices pushed to the creator's outbox come back,
// verified, one per station that sent one; a newer notice replaces an
// older one; the artifact is an OCI 1.1 artifact with the empty config.
func TestPushFetchNotices(t *testing.T) {
	n := newNoticeNet(t, "st1", "st2", "st3")
	t0 := time.Now().UTC().Truncate(time.Second)
	n.push(t, "st1", hardened.Notice{Train: "t1", Station: "st1", Index: 0, Outcome: "failed", Reason: "train exited with status 3", ExitCode: 3, Time: t0})
	ref := n.push(t, "st2", hardened.Notice{Train: "t1", Station: "st2", Index: 1, Outcome: "refused", Reason: "bad signature", Time: t0})
	if want := n.network.Outbox("alice") + ":t1.notice.st2@sha256:"; !strings.HasPrefix(ref, want) {
		t.Fatalf("ref %q, want %s...", ref, want)
	}
	// Another train's notice is not this train's.
	n.push(t, "st3", hardened.Notice{Train: "t2", Station: "st3", Index: 2, Outcome: "failed", Time: t0})

	got := func() map[string]*hardened.Notice {
		t.Helper()
		envs, err := (station.Outbox{Client: n.rc, Network: n.network, User: "alice"}).FetchNotices(n.ctx, "t1", "st1", "st2", "st3", "st1")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*hardened.Notice{}
		for _, e := range envs {
			nt, err := hardened.VerifyNotice(n.ctx, n.trust, e)
			if err != nil {
				t.Fatal(err)
			}
			out[nt.Station] = nt
		}
		if len(out) != len(envs) {
			t.Fatalf("%d envelopes for %d stations", len(envs), len(out))
		}
		return out
	}
	m := got()
	if len(m) != 2 || m["st1"].Outcome != "failed" || m["st1"].ExitCode != 3 || m["st2"].Reason != "bad signature" || !m["st1"].Time.Equal(t0) {
		t.Fatalf("notices %+v", m)
	}
	// A retried stop fails again: the newer notice replaces the older.
	n.push(t, "st1", hardened.Notice{Train: "t1", Station: "st1", Index: 0, Outcome: "withheld", Reason: "results withheld by the operator", Time: t0.Add(time.Hour)})
	if m := got(); m["st1"].Outcome != "withheld" || !m["st1"].Time.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after a newer notice: %+v", m["st1"])
	}

	// What `crane manifest` / `oras manifest fetch` show.
	r, _ := n.rc.ParseReference(n.network.Outbox("alice") + ":t1.notice.st1")
	d, err := remote.Get(r, n.rc.RemoteOptions(n.ctx)...)
	if err != nil {
		t.Fatal(err)
	}
	var man v1.Manifest
	if err := json.Unmarshal(d.Manifest, &man); err != nil {
		t.Fatal(err)
	}
	if man.MediaType != types.OCIManifestSchema1 || man.ArtifactType != hardened.NoticeType || man.Config.MediaType != "application/vnd.oci.empty.v1+json" ||
		man.Config.Size != 2 || len(man.Layers) != 1 || man.Layers[0].MediaType != station.NoticeLayerType ||
		man.Layers[0].Annotations["org.opencontainers.image.title"] == "" {
		t.Fatalf("manifest %s", d.Manifest)
	}
	// Nothing unsigned goes out: a notice without a station is not pushed.
	if _, err := (station.Outbox{Client: n.rc, Network: n.network, User: "alice"}).PushNotice(n.ctx, n.keys["st1"], hardened.Notice{Train: "t1", Outcome: "failed"}); !errors.Is(err, hardened.ErrMalformed) {
		t.Fatalf("notice without station: %v", err)
	}
}

// TestNoticeNeverReplacesATrain: a tag that holds something else (a train
// whose id happens to be the notice tag) is not overwritten, and
// FetchNotices says that the tag holds no notice instead of reading it.
func TestNoticeNeverReplacesATrain(t *testing.T) {
	n := newNoticeNet(t, "st1")
	tag := n.network.Outbox("alice") + ":" + station.NoticeTag("t1", "st1")
	if _, err := n.rc.Push(n.ctx, empty.Image, tag); err != nil {
		t.Fatal(err)
	}
	want, _ := empty.Image.Digest()
	_, err := (station.Outbox{Client: n.rc, Network: n.network, User: "alice"}).PushNotice(n.ctx, n.keys["st1"], hardened.Notice{Train: "t1", Station: "st1", Index: 0, Outcome: "failed"})
	if !errors.Is(err, registry.ErrExists) {
		t.Fatalf("push over a train: %v", err)
	}
	if got, err := n.rc.Head(n.ctx, tag); err != nil || got != want {
		t.Fatalf("the train under %s was replaced: %v %v", tag, got, err)
	}
	if _, err := (station.Outbox{Client: n.rc, Network: n.network, User: "alice"}).FetchNotices(n.ctx, "t1", "st1"); err == nil || !strings.Contains(err.Error(), "not a stop notice") {
		t.Fatalf("fetch of a non-notice: %v", err)
	}
}

// TestFetchNoticeBounds: an oversized or mismatching notice blob is refused
// before (or instead of) being read whole.
func TestFetchNoticeBounds(t *testing.T) {
	n := newNoticeNet(t, "st1")
	repo, _ := n.rc.ParseRepository(n.network.Outbox("alice"))
	put := func(layer v1.Layer, size int64) {
		t.Helper()
		cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
		for _, l := range []v1.Layer{cfg, layer} {
			if err := remote.WriteLayer(repo, l, n.rc.RemoteOptions(n.ctx)...); err != nil {
				t.Fatal(err)
			}
		}
		cd, _ := cfg.Digest()
		ld, _ := layer.Digest()
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: hardened.NoticeType,
			Config: v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd, Size: 2},
			Layers: []v1.Descriptor{{MediaType: station.NoticeLayerType, Digest: ld, Size: size}}}
		raw, _ := json.Marshal(m)
		if err := remote.Put(repo.Tag(station.NoticeTag("t1", "st1")), noticeManifest{raw}, n.rc.RemoteOptions(n.ctx)...); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func() error {
		_, err := (station.Outbox{Client: n.rc, Network: n.network, User: "alice"}).FetchNotices(n.ctx, "t1", "st1")
		return err
	}
	big := static.NewLayer([]byte(`{"payload":"`+strings.Repeat("A", 1<<20)+`"}`), station.NoticeLayerType)
	bs, _ := big.Size()
	put(big, bs)
	if err := fetch(); !errors.Is(err, trainimage.ErrLimit) {
		t.Fatalf("1 MiB notice: %v", err)
	}
	small := static.NewLayer([]byte(`{"payloadType":"x","payload":"","signatures":[]}`), station.NoticeLayerType)
	ss, _ := small.Size()
	put(small, ss-1) // the descriptor lies about the size
	if err := fetch(); err == nil {
		t.Fatal("a blob longer than its descriptor was read")
	}
	put(static.NewLayer([]byte(`{"payloadType":"x","payload":"","signatures":[],"extra":1}`), station.NoticeLayerType), 58)
	if err := fetch(); !errors.Is(err, hardened.ErrMalformed) {
		t.Fatalf("unknown field in the envelope: %v", err)
	}
	// A corrupt older notice does not block the next one.
	if _, err := (station.Outbox{Client: n.rc, Network: n.network, User: "alice"}).PushNotice(n.ctx, n.keys["st1"], hardened.Notice{Train: "t1", Station: "st1", Index: 0, Outcome: "failed"}); err != nil {
		t.Fatalf("push over a corrupt notice: %v", err)
	}
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
}

type noticeManifest struct{ raw []byte }

func (r noticeManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r noticeManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// TestPeekEnvelope reads the envelope of a pushed train (without its sealed
// code) exactly as the creator signed it, and refuses an image that is not
// a train.
func TestPeekEnvelope(t *testing.T) {
	n := newNoticeNet(t, "st1")
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	exec := hardened.ExecConfig{Entrypoint: []string{"/opt/pht_train/run.sh"}}
	d, err := creator.ApprovalDigest(n.ctx, code, exec, empty.Image)
	if err != nil {
		t.Fatal(err)
	}
	n.trust.Approve(hardened.Approval{Digest: d})
	b, err := creator.Create(n.ctx, creator.Options{Creator: hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, Spec: hardened.Spec{ID: "t1", Route: []string{"st1"}, Exec: exec}, CodeDir: code, Base: empty.Image, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	ref := n.network.Inbox("st1") + ":t1"
	if _, err := n.rc.Push(n.ctx, b.Image, ref); err != nil {
		t.Fatal(err)
	}
	env, err := trainimage.PeekEnvelope(n.ctx, n.rc, ref)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := env.Marshal()
	want, _ := b.Envelope.Marshal()
	if string(got) != string(want) {
		t.Fatalf("peeked envelope differs:\n%s\nwant\n%s", got, want)
	}
	if v, err := hardened.Verify(n.ctx, n.trust, env); err != nil || v.Statement.ID != "t1" {
		t.Fatalf("verify: %v", err)
	}
	other := n.network.Inbox("st1") + ":other"
	if _, err := n.rc.Push(n.ctx, empty.Image, other); err != nil {
		t.Fatal(err)
	}
	if _, err := trainimage.PeekEnvelope(n.ctx, n.rc, other); !errors.Is(err, trainimage.ErrImage) {
		t.Fatalf("peek of an empty image: %v", err)
	}
	if _, err := trainimage.PeekEnvelope(n.ctx, n.rc, n.network.Inbox("st1")+":nothing"); err == nil {
		t.Fatal("peek of a missing tag")
	}
}
