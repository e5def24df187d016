package hardened

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTripThreeStations(t *testing.T) {
	n := newTestNet(t)
	env, _, res := n.roundTrip(t, 3)
	// The envelope survives a marshal/parse cycle unchanged in meaning.
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	env, err = ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	v, err := OpenResults(context.Background(), Party{ID: "alice", Key: n.creator, Trust: n.trust}, Train{Envelope: env, Results: bytes.NewReader(res)}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Complete() || len(v.Stops) != 3 {
		t.Fatalf("complete=%v stops=%d", v.Complete(), len(v.Stops))
	}
	got, err := os.ReadFile(filepath.Join(dir, "sum.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "st-a,10\nst-b,10\nst-c,10\n"; string(got) != want {
		t.Fatalf("aggregated results %q, want %q", got, want)
	}
	seen := map[string]bool{}
	for _, s := range v.Stops {
		if seen[s.Session] {
			t.Fatal("session id reused across hops")
		}
		seen[s.Session] = true
	}
}

func TestIsEnvelope(t *testing.T) {
	n := newTestNet(t)
	env, _ := n.create(t)
	b, _ := env.Marshal()
	if !IsEnvelope(b) {
		t.Fatal("v1 envelope not recognised")
	}
	legacy := `{"source":{"type":"docker_repository"},"@id":"t","route":[],"hash":"00"}`
	if IsEnvelope([]byte(legacy)) || IsEnvelope([]byte("junk")) {
		t.Fatal("legacy config taken for v1")
	}
}

// Sealed blobs carry no plaintext: neither file names nor contents.
func TestSealedBlobsHideNamesAndContent(t *testing.T) {
	n := newTestNet(t)
	env, code, res := n.roundTrip(t, 1)
	for _, leak := range []string{"util.py", "X = 42", "run.sh", "lib/"} {
		if bytes.Contains(code, []byte(leak)) {
			t.Errorf("code blob contains %q", leak)
		}
	}
	for _, leak := range []string{"sum.csv", "st-a,10"} {
		if bytes.Contains(res, []byte(leak)) {
			t.Errorf("results blob contains %q", leak)
		}
	}
	b, _ := env.Marshal()
	if bytes.Contains(b, []byte("sum.csv")) || bytes.Contains(b, []byte("util.py")) {
		t.Error("envelope names a file")
	}
}

// Small chunks push code and results through many stream chunks.
func TestRoundTripSmallChunks(t *testing.T) {
	n := newTestNet(t)
	env, code := n.create(t, WithChunkSize(512))
	var res []byte
	for _, st := range n.route {
		var err error
		if env, res, err = n.hop(t, st, env, code, res, WithChunkSize(512)); err != nil {
			t.Fatal(err)
		}
	}
	if h, err := ParseStreamHeader(res[:streamHeaderSize]); err != nil || h.ChunkSize != 512 {
		t.Fatalf("results header %+v %v", h, err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := OpenResults(context.Background(), Party{ID: "alice", Key: n.creator, Trust: n.trust}, Train{Envelope: env, Results: bytes.NewReader(res)}, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := PreRun(context.Background(), Party{ID: "st-a", Key: nil, Trust: n.trust}, Train{Envelope: env}, Dirs{Code: dir, Results: dir}); err == nil {
		t.Fatal("nil key accepted")
	}
}
