package hardened

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenCode: the code of a train due here is decrypted with its manifest;
// every refusal of PreRun's checks is a refusal here too, and a refused
// open leaves nothing in the code directory.
func TestOpenCode(t *testing.T) {
	ctx := context.Background()
	n := newTestNet(t)
	env, code := n.create(t)
	st := mustStatement(t, env)
	dir := filepath.Join(t.TempDir(), "code")
	oc, err := OpenCode(ctx, Party{ID: "st-a", Key: n.stations["st-a"], Trust: n.trust}, Train{Envelope: env, Code: bytes.NewReader(code)}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if oc.Index != 0 || oc.Verified.Statement.ID != st.ID || oc.Manifest.Digest() != st.Code.Manifest {
		t.Fatalf("opened index %d, id %s, manifest %s", oc.Index, oc.Verified.Statement.ID, oc.Manifest.Digest())
	}
	want := map[string]Entry{
		"run.sh":       {Path: "run.sh", Type: "file", Mode: 0o755, Size: 43},
		"lib":          {Path: "lib", Type: "dir", Mode: 0o755},
		"lib/util.py":  {Path: "lib/util.py", Type: "file", Mode: 0o644, Size: 7},
		"lib/data.bin": {Path: "lib/data.bin", Type: "file", Mode: 0o644, Size: 6000},
	}
	if len(oc.Manifest.Entries) != len(want) {
		t.Fatalf("manifest entries %+v", oc.Manifest.Entries)
	}
	for _, e := range oc.Manifest.Entries {
		w := want[e.Path]
		if e.Path != w.Path || e.Type != w.Type || e.Mode != w.Mode || e.Size != w.Size {
			t.Errorf("entry %+v, want %+v", e, w)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "lib", "util.py")); err != nil || string(b) != "X = 42\n" {
		t.Fatalf("code not decrypted: %q %v", b, err)
	}

	// After stop 0: st-b opens with the results present, st-a is a replay.
	env1, _, err := n.hop(t, "st-a", env, code, nil)
	if err != nil {
		t.Fatal(err)
	}
	oc, err = OpenCode(ctx, Party{ID: "st-b", Key: n.stations["st-b"], Trust: n.trust}, Train{Envelope: env1, Code: bytes.NewReader(code), Results: bytes.NewReader([]byte("sealed"))}, filepath.Join(t.TempDir(), "c"))
	if err != nil || oc.Index != 1 || len(oc.Verified.Stops) != 1 {
		t.Fatalf("stop 1: %+v %v", oc, err)
	}

	flipped := bytes.Clone(code)
	flipped[len(flipped)/2] ^= 1
	cases := []struct {
		name    string
		station string
		key     *PrivateKey
		t       Train
		want    error
	}{
		{"not due yet", "st-b", n.stations["st-b"], Train{Envelope: env, Code: bytes.NewReader(code)}, ErrRoute},
		{"not on the route", "st-x", n.stations["st-a"], Train{Envelope: env, Code: bytes.NewReader(code)}, ErrRoute},
		{"already done", "st-a", n.stations["st-a"], Train{Envelope: env1, Code: bytes.NewReader(code), Results: bytes.NewReader([]byte("x"))}, ErrReplay},
		{"wrong key", "st-a", n.stations["st-b"], Train{Envelope: env, Code: bytes.NewReader(code)}, ErrUntrusted},
		{"flipped code byte", "st-a", n.stations["st-a"], Train{Envelope: env, Code: bytes.NewReader(flipped)}, ErrTampered},
		{"no code", "st-a", n.stations["st-a"], Train{Envelope: env}, ErrTampered},
		{"results at stop 0", "st-a", n.stations["st-a"], Train{Envelope: env, Code: bytes.NewReader(code), Results: bytes.NewReader([]byte("x"))}, ErrTampered},
		{"results missing", "st-b", n.stations["st-b"], Train{Envelope: env1, Code: bytes.NewReader(code)}, ErrTampered},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "code")
			_, err := OpenCode(ctx, Party{ID: c.station, Key: c.key, Trust: n.trust}, c.t, dir)
			wantErr(t, err, c.want, "")
			if ents, _ := os.ReadDir(dir); len(ents) > 0 {
				t.Fatalf("refused open left %d entries in the code dir", len(ents))
			}
		})
	}

	// Not approved for this station.
	n.trust.Approve(Approval{Digest: st.Code.Approval, Approvers: []string{"board"}, Stations: []string{"st-c"}})
	_, err = OpenCode(ctx, Party{ID: "st-a", Key: n.stations["st-a"], Trust: n.trust}, Train{Envelope: env, Code: bytes.NewReader(code)}, filepath.Join(t.TempDir(), "c"))
	wantErr(t, err, ErrUnapproved, "st-a")
}
