package hardened

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testNet is a small network: a trust store, a creator and three stations.
type testNet struct {
	trust    *MemoryTrust
	creator  *PrivateKey
	stations map[string]*PrivateKey
	route    []string
	exec     ExecConfig
	code     string // plaintext code dir
}

func mustKey(t testing.TB) *PrivateKey {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	n := &testNet{trust: NewMemoryTrust(), creator: mustKey(t), stations: map[string]*PrivateKey{},
		route: []string{"st-a", "st-b", "st-c"},
		exec:  ExecConfig{Entrypoint: []string{"/opt/pht_train/run.sh"}, Env: []string{"PATH=/usr/bin:/bin"}, WorkingDir: "/opt/pht_train"}}
	n.trust.AddUser("alice", n.creator.Public())
	for _, id := range n.route {
		k := mustKey(t)
		n.stations[id] = k
		n.trust.AddStation(id, k.Public())
	}
	n.code = t.TempDir()
	writeFile(t, filepath.Join(n.code, "run.sh"), "#!/bin/sh\necho 1 >> /opt/pht_results/count\n", 0o755)
	writeFile(t, filepath.Join(n.code, "lib", "util.py"), "X = 42\n", 0o644)
	writeFile(t, filepath.Join(n.code, "lib", "data.bin"), strings.Repeat("\x00\x01", 3000), 0o644)
	return n
}

func writeFile(t testing.TB, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// create makes and approves a train; it returns the envelope and code blob.
func (n *testNet) create(t testing.TB, opts ...Option) (*Envelope, []byte) {
	t.Helper()
	ctx := context.Background()
	var blob bytes.Buffer
	env, err := Create(ctx, Party{ID: "alice", Key: n.creator, Trust: n.trust}, Spec{Route: n.route, Exec: n.exec, Code: os.DirFS(n.code)}, &blob, opts...)
	if err != nil {
		t.Fatal(err)
	}
	v := mustStatement(t, env)
	n.trust.Approve(Approval{Digest: v.Code.Approval, Approvers: []string{"board"}})
	return env, blob.Bytes()
}

func mustStatement(t testing.TB, env *Envelope) *Statement {
	t.Helper()
	raw, err := env.Train.DecodeB64Payload()
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseStatement(raw)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// hop runs one stop: pre-run, a fake train run that appends the station's
// row to results/sum.csv, post-run. It returns the new envelope and blob.
func (n *testNet) hop(t testing.TB, station string, env *Envelope, code, results []byte, opts ...Option) (*Envelope, []byte, error) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	codeDir, resDir := filepath.Join(dir, "code"), filepath.Join(dir, "results")
	tr := Train{Envelope: env, Code: bytes.NewReader(code)}
	if results != nil {
		tr.Results = bytes.NewReader(results)
	}
	s, err := PreRun(ctx, Party{ID: station, Key: n.stations[station], Trust: n.trust}, tr, Dirs{Code: codeDir, Results: resDir}, opts...)
	if err != nil {
		return nil, nil, err
	}
	if b, err := os.ReadFile(filepath.Join(codeDir, "lib", "util.py")); err != nil || string(b) != "X = 42\n" {
		t.Fatalf("code not decrypted: %q %v", b, err)
	}
	f, err := os.OpenFile(filepath.Join(resDir, "sum.csv"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(station + ",10\n")
	f.Close()
	var out bytes.Buffer
	env2, err := s.PostRun(ctx, resDir, &out)
	if err != nil {
		return nil, nil, err
	}
	return env2, out.Bytes(), nil
}

// roundTrip runs the train over the first k stations.
func (n *testNet) roundTrip(t testing.TB, k int) (*Envelope, []byte, []byte) {
	t.Helper()
	env, code := n.create(t)
	var res []byte
	for _, st := range n.route[:k] {
		var err error
		env, res, err = n.hop(t, st, env, code, res)
		if err != nil {
			t.Fatalf("hop %s: %v", st, err)
		}
	}
	return env, code, res
}

func wantErr(t testing.TB, err, target error, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("error %q; want %v", err, target)
	}
	if contains != "" && !strings.Contains(err.Error(), contains) {
		t.Fatalf("error %q does not mention %q", err, contains)
	}
	t.Logf("refused as expected: %v", err)
}

func newSHA256() hash.Hash { return sha256.New() }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
