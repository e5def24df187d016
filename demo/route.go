package demo

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainrun"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf/repo"
)

// The train's source travels inside the binary so that the demo can build
// it wherever it runs (a Go toolchain on PATH is the only need).
//
//go:embed aggregate/main.go
var aggregateSource []byte

// demoPassword encrypts the demo's TUF keys at rest. A real directory admin
// sets TRAINYARD_TRUST_KEY_PASSWORD or types it at the prompt.
const demoPassword = "demo-only-password"

var stationIDs = []string{"hospital-a", "hospital-b", "lab-c"}

type people struct {
	creator, board *hardened.PrivateKey
	stations       map[string]*hardened.PrivateKey
}

// trainRoute is the whole story: trust directory, approval, a train at
// three stations run with runc, and the creator reading the result.
func trainRoute(ctx context.Context, e *env) error {
	runner := trainrun.NewRunc(trainrun.WithBundleDir(filepath.Join(e.dir, "bundles")))
	if err := os.MkdirAll(filepath.Join(e.dir, "bundles"), 0o700); err != nil {
		return err
	}
	if err := runner.Available(); err != nil {
		return fmt.Errorf("the demo runs trains with runc as root: %w (make demo installs runc)", err)
	}
	p, err := newPeople()
	if err != nil {
		return err
	}

	// 1. The network's trust directory: a TUF repository in the registry.
	trustRepo := e.host + "/trainyard/trust"
	pub, err := repo.Open(e.client, trustRepo, filepath.Join(e.dir, "trust-admin"),
		repo.WithPasswords(func(string) ([]byte, error) { return []byte(demoPassword), nil }))
	if err != nil {
		return err
	}
	admin, err := trust.Init(ctx, pub)
	if err != nil {
		return err
	}
	for _, id := range stationIDs {
		if err := admin.AddStation(ctx, id, p.stations[id].Public()); err != nil {
			return err
		}
	}
	for id, k := range map[string]*hardened.PrivateKey{"alice": p.creator, "ethics-board": p.board} {
		if err := admin.AddUser(ctx, id, k.Public()); err != nil {
			return err
		}
	}
	if err := admin.Publish(ctx); err != nil {
		return err
	}
	root, err := os.ReadFile(pub.RootPath())
	if err != nil {
		return err
	}
	e.say("trust directory published with TUF at %s: users alice, ethics-board; stations %s", trustRepo, strings.Join(stationIDs, ", "))
	openTrust := func(who string) (*trust.Store, error) {
		return trust.OpenStore(ctx, e.client, trustRepo, filepath.Join(e.dir, "trust-"+who), root)
	}

	// 2. The creator writes a train; the ethics board approves exactly it.
	code, err := buildAggregate(ctx, e.dir)
	if err != nil {
		return err
	}
	exec := aggregateExec
	base := train.ScratchImage() // empty, but with the os/architecture the OCI spec requires
	digest, err := creator.ApprovalDigest(ctx, code, exec, base)
	if err != nil {
		return err
	}
	approval := &trust.ApprovalDoc{Digest: digest}
	approval.Sign("ethics-board", p.board)
	if err := admin.Approve(ctx, approval); err != nil {
		return err
	}
	if err := admin.Publish(ctx); err != nil {
		return err
	}
	e.say("train program built (static Go, aggregates CSV); ethics-board approved %s", short(digest))

	aliceTrust, err := openTrust("alice")
	if err != nil {
		return err
	}
	network := station.Network{Prefix: e.host + "/trainyard"}
	built, err := creator.Create(ctx, creator.Options{
		Creator: hardened.Party{ID: "alice", Key: p.creator, Trust: aliceTrust},
		Spec:    hardened.Spec{ID: "demo-train-1", Route: stationIDs, Exec: exec},
		CodeDir: code, Base: base, TempDir: e.dir,
	})
	if err != nil {
		return err
	}
	defer built.Release()
	first := network.Inbox(stationIDs[0]) + ":demo-train-1"
	if _, err := e.client.Push(ctx, built.Image, first); err != nil {
		return err
	}
	e.say("alice signed route %s and sealed the code to it; pushed %s", strings.Join(stationIDs, " -> "), first)

	// 3. Attacks: a train with unapproved code, and a genuine train whose
	// image was changed to run something else.
	if err := forgedTrain(ctx, e, p, aliceTrust, network); err != nil {
		return err
	}
	if err := tamperedCopy(ctx, e, network.Inbox(stationIDs[0])); err != nil {
		return err
	}

	// 4. Each station watches its inbox and runs what is addressed to it.
	for i, id := range stationIDs {
		st, err := newStation(ctx, e, id, p.stations[id], i, runner, network, openTrust)
		if err != nil {
			return err
		}
		done, err := st.PollOnce(ctx)
		if err != nil {
			return err
		}
		for _, d := range done {
			if d.Error != "" {
				e.say("%s refused %q before running it: %s", id, d.Tag, d.Error)
				continue
			}
			e.say("%s: verified from stop 0, ran with runc (no network, read-only data), sealed results for %s (session %s..., %s)",
				id, d.Next, d.Session[:8], time.Duration(d.Seconds*float64(time.Second)).Round(10*time.Millisecond))
		}
		st.Station.DB.Close()
	}

	// 5. Alice verifies the whole route and reads the aggregate.
	img, err := e.client.Pull(ctx, network.Outbox("alice")+":demo-train-1")
	if err != nil {
		return err
	}
	out := filepath.Join(e.dir, "results")
	v, err := creator.OpenResults(ctx, hardened.Party{ID: "alice", Key: p.creator, Trust: aliceTrust}, img, out, creator.WithOpenTempDir(e.dir))
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(out, "aggregate.json"))
	if err != nil {
		return err
	}
	var agg struct {
		Stations  []string       `json:"stations"`
		Patients  int            `json:"patients"`
		MeanAge   float64        `json:"mean_age"`
		Diagnoses map[string]int `json:"diagnoses"`
	}
	if err := json.Unmarshal(b, &agg); err != nil {
		return err
	}
	e.say("alice verified %d signed stops and decrypted the result: %d patients at %s, mean age %.1f, diagnoses %v",
		len(v.Stops), agg.Patients, strings.Join(agg.Stations, ", "), agg.MeanAge, agg.Diagnoses)
	return nil
}

func newPeople() (*people, error) {
	p := &people{stations: map[string]*hardened.PrivateKey{}}
	var err error
	if p.creator, err = hardened.GenerateKey(); err != nil {
		return nil, err
	}
	if p.board, err = hardened.GenerateKey(); err != nil {
		return nil, err
	}
	for _, id := range stationIDs {
		if p.stations[id], err = hardened.GenerateKey(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// buildAggregate compiles the embedded train program into a code dir.
func buildAggregate(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(dir, "aggregate-src")
	code := filepath.Join(dir, "code")
	for _, d := range []string{src, code} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), aggregateSource, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module aggregate\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	if err := train.BuildStatic(ctx, src, filepath.Join(code, "aggregate")); err != nil {
		return "", fmt.Errorf("building the demo train needs the go command: %w", err)
	}
	return code, nil
}

// newStation sets up one station: its key, its own view of the trust
// directory, its database and a CSV of synthetic patients.
func newStation(ctx context.Context, e *env, id string, key *hardened.PrivateKey, n int, runner station.Runner,
	network station.Network, openTrust func(string) (*trust.Store, error)) (*station.Server, error) {
	home := filepath.Join(e.dir, "stations", id)
	data := filepath.Join(home, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	if err := writePatients(filepath.Join(data, "patients.csv"), 40+20*n, uint64(n)); err != nil {
		return nil, err
	}
	ts, err := openTrust(id)
	if err != nil {
		return nil, err
	}
	db, err := station.OpenDB(filepath.Join(home, "station.db"))
	if err != nil {
		return nil, err
	}
	st := &station.Station{ID: id, Protocol: station.V1{Key: key}, Trust: ts, Runner: runner, Client: e.client, Network: network,
		DataDir: data, WorkDir: e.dir + "/bundles", DB: db, Timeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return &station.Server{Station: st}, nil
}

// writePatients writes n synthetic, deterministic patient rows.
func writePatients(path string, n int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 42))
	diag := []string{"asthma", "copd", "diabetes", "flu"}
	var b strings.Builder
	b.WriteString("id,age,diagnosis\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%d,%d,%s\n", i+1, 18+r.IntN(70), diag[r.IntN(len(diag))])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// forgedTrain shows the first check that matters: a train whose code was
// changed after approval is refused before anything runs.
func forgedTrain(ctx context.Context, e *env, p *people, ts *trust.Store, network station.Network) error {
	dir := filepath.Join(e.dir, "forged")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "aggregate"), []byte("#!/bin/sh\ncat /opt/pht_data/*\n"), 0o755); err != nil {
		return err
	}
	exec := aggregateExec
	_, err := creator.Create(ctx, creator.Options{
		Creator: hardened.Party{ID: "alice", Key: p.creator, Trust: ts},
		Spec:    hardened.Spec{ID: "forged", Route: stationIDs, Exec: exec},
		CodeDir: dir, Base: train.ScratchImage(), TempDir: e.dir,
	})
	if !errors.Is(err, hardened.ErrUnapproved) {
		return fmt.Errorf("a train with unapproved code was not refused (%v)", err)
	}
	e.say("a train with changed code is refused before it leaves: %s", firstClause(err))
	return nil
}

// aggregateExec runs the demo's program from the train's code directory.
var aggregateExec = hardened.ExecConfig{
	Entrypoint: []string{"/" + path.Join(train.TrainDir, "aggregate")},
	WorkingDir: "/" + train.TrainDir,
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19] + "..."
	}
	return d
}

func firstClause(err error) string {
	s := err.Error()
	if i := strings.Index(s, ";"); i > 0 {
		return s[:i]
	}
	return s
}

// tamperedCopy pushes the genuine train again with its entrypoint changed to
// dump the station's data; the station must refuse it and still run the
// genuine one.
func tamperedCopy(ctx context.Context, e *env, inbox string) error {
	img, err := e.client.Pull(ctx, inbox+":demo-train-1")
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	c := cf.Config
	c.Entrypoint = []string{"/bin/sh", "-c", "cat /opt/pht_data/*"}
	evil, err := mutate.Config(img, c)
	if err != nil {
		return err
	}
	if _, err := e.client.Push(ctx, evil, inbox+":tampered-copy"); err != nil {
		return err
	}
	e.say("an attacker pushed a copy with its entrypoint changed to dump the data: %s:tampered-copy", inbox)
	return nil
}
