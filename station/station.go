// Package station is a station's whole stop for a trainyard/v1 train: pull
// the train, verify it against the trust directory (pre-run), run it beside
// the station's data with no network, seal the results for the route
// (post-run) and push the train on to the next hop's repository.
package station

import (
	"context"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/trainrun"
)

// Runner executes a train image; trainrun.Runc and trainrun.Docker are the
// real ones.
type Runner interface {
	Run(ctx context.Context, img v1.Image, spec trainrun.RunSpec) (trainrun.Result, error)
}

// Network says where trains wait: every station has an inbox repository and
// every user an outbox that finished trains are delivered to.
type Network struct {
	// Prefix is "registry-host[:port]/path", e.g. "127.0.0.1:5000/trainyard".
	Prefix string
}

// Inbox is the repository where trains for station id wait.
func (n Network) Inbox(id string) string { return n.Prefix + "/stations/" + id }

// Outbox is the repository where user id's finished trains arrive.
func (n Network) Outbox(id string) string { return n.Prefix + "/users/" + id }

// Station runs trains for one station id.
type Station struct {
	ID string
	// Protocol is ProtocolV1 (default) or ProtocolPHTv2.
	Protocol string
	Key      *hardened.PrivateKey
	// LegacyKey is the station's RSA key for ProtocolPHTv2.
	LegacyKey *rsa.PrivateKey
	Trust     hardened.TrustStore
	Runner    Runner
	Client    *registry.Client
	Network   Network
	// DataDir is mounted read-only into every train.
	DataDir string
	// WorkDir holds temporary bundles and blobs; "" uses the system temp dir.
	WorkDir string
	// Guard refuses a stop this station already started (replays).
	Guard hardened.ReplayGuard
	// Limits for each run; zero fields take trainrun's defaults.
	Memory  int64
	PIDs    int64
	CPUs    float64
	Timeout time.Duration
	// MaxResults caps a train's results in bytes (apparent sizes) while it
	// runs and when they are sealed; 0 = trainrun.DefaultMaxResults, < 0 = no
	// filesystem cap (post-run still bounds depth, paths and entries).
	MaxResults int64
	// TrainLogDir keeps each stop's train output (stdout and stderr) in a
	// private file, capped at MaxTrainLog (0: DefaultMaxTrainLog) with a
	// marker; "" discards it. Train output never reaches Logger.
	TrainLogDir string
	MaxTrainLog int64
	// KeepTrainLogs is how many kept logs TrainLogDir holds at most, the
	// oldest removed first (0: DefaultKeepTrainLogs).
	KeepTrainLogs int
	// Logger receives one structured record per stop.
	Logger *slog.Logger
}

// Stop is the record of one processed train.
type Stop struct {
	Station  string        `json:"station"`
	Source   string        `json:"source"`
	Tag      string        `json:"tag,omitempty"` // the inbox tag serve found it under
	Train    string        `json:"train"`
	Digest   string        `json:"train_digest,omitempty"`
	Index    int           `json:"index"`
	Session  string        `json:"session,omitempty"`
	Next     string        `json:"next,omitempty"`
	Pushed   string        `json:"pushed,omitempty"`
	ExitCode int           `json:"exit_code"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
	Log      string        `json:"log,omitempty"` // the kept train output (EscapeLog shows it)
	Time     time.Time     `json:"time"`
}

// Process runs one stop for the train at ref and pushes it to the next hop.
// On any refusal nothing is pushed; the error says which check failed.
func (s *Station) Process(ctx context.Context, ref string) (*Stop, error) {
	start := time.Now()
	st := &Stop{Station: s.ID, Source: ref, Time: start.UTC()}
	err := s.process(ctx, ref, st)
	st.Duration = time.Since(start)
	if err != nil {
		st.Error = err.Error()
	}
	s.logStop(st, err)
	return st, err
}

func (s *Station) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

func (s *Station) logStop(st *Stop, err error) {
	l := s.logger()
	attrs := []any{"station", st.Station, "source", st.Source, "train", st.Train, "index", st.Index,
		"session", st.Session, "next", st.Next, "pushed", st.Pushed, "exit_code", st.ExitCode, "duration", st.Duration}
	if err != nil {
		l.Error("stop refused", append(attrs, "error", err.Error())...)
		return
	}
	l.Info("stop done", attrs...)
}

func (s *Station) process(ctx context.Context, ref string, st *Stop) error {
	work, err := os.MkdirTemp(s.WorkDir, "stop-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// Held while the stop runs: Recover removes only stop directories that
	// no live station holds (plaintext left by a killed one).
	unhold, err := holdWork(work)
	if err != nil {
		return err
	}
	defer unhold()
	switch s.Protocol {
	case "", ProtocolV1:
	case ProtocolPHTv2:
		return s.processLegacy(ctx, ref, work, st)
	default:
		return fmt.Errorf("unknown protocol %q (%s or %s)", s.Protocol, ProtocolV1, ProtocolPHTv2)
	}

	img, err := PullTrain(ctx, s.Client, ref)
	if err != nil {
		return err
	}
	// The envelope is verified inside readTrain, before any blob is kept.
	// What runs is the signed base, the signed code and the signed exec
	// config; the image's own config must agree with them. These checks
	// come before PreRun marks the stop as started, so a tampered copy of a
	// genuine train cannot burn the genuine train's stop at this station.
	sealed, v, err := readTrain(ctx, img, work, func(env *hardened.Envelope) (*hardened.Verified, error) {
		return hardened.Verify(ctx, s.Trust, env)
	})
	if err != nil {
		return err
	}
	defer sealed.Close()
	st.Train, st.Digest = v.Statement.ID, v.TrainDigest
	base, diffIDs, err := baseLayers(img)
	if err != nil {
		return err
	}
	if got := BaseID(diffIDs); got != v.Statement.Base {
		return fmt.Errorf("%w: base layers are %s, the creator signed %s", hardened.ErrTampered, got, v.Statement.Base)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	if err := hardened.CheckExec(v.Statement.Exec, ExecOf(cf)); err != nil {
		return err
	}

	tr, closeTrain, err := sealed.open()
	if err != nil {
		return err
	}
	codeDir, resultsDir := filepath.Join(work, "code"), filepath.Join(work, "results")
	var opts []hardened.Option
	if s.Guard != nil {
		opts = append(opts, hardened.WithReplayGuard(s.Guard))
	}
	opts = append(opts, hardened.WithMaxResults(s.MaxResults))
	sess, err := hardened.PreRun(ctx, s.Trust, s.ID, s.Key, tr, codeDir, resultsDir, opts...)
	closeTrain()
	if err != nil {
		return err
	}
	// From here until post-run has sealed them, the results live on a
	// filesystem of the cap's size (unmounted on every path).
	resultsFS, err := s.mountResults(ctx, resultsDir)
	if err != nil {
		return err
	}
	defer resultsFS.Close()
	v = sess.Verified()
	st.Index, st.Session = sess.Index(), sess.SessionID()

	run, release, err := runnableImage(img, base, codeDir, work, sess.Exec())
	if err != nil {
		return err
	}
	defer release()
	trainOut, closeOut, err := s.trainOutput(st)
	if err != nil {
		return err
	}
	res, err := s.Runner.Run(ctx, run, trainrun.RunSpec{
		ResultsDir: resultsDir, DataDir: s.DataDir, Env: []string{"PHT_STATION_ID=" + s.ID},
		Memory: s.Memory, PIDs: s.PIDs, CPUs: s.CPUs, Timeout: s.Timeout, MaxResults: s.MaxResults, Stdout: trainOut, Stderr: trainOut,
	})
	closeOut()
	st.ExitCode = res.ExitCode
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}

	pctx, cancelPost := s.postRunContext(ctx)
	defer cancelPost()
	resultsPath := filepath.Join(work, "results.sealed")
	out, err := os.OpenFile(resultsPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	env, err := sess.PostRun(pctx, resultsDir, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if cerr := resultsFS.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return postRunErr(pctx, err)
	}
	next, releaseState, err := writeState(img, work, env, sealed.code, resultsPath)
	if err != nil {
		return err
	}
	defer releaseState()
	dest := s.Network.Outbox(v.Statement.Creator.ID)
	st.Next = v.Statement.Creator.ID
	if i := sess.Index() + 1; i < len(v.Statement.Route) {
		st.Next = v.Statement.Route[i].ID
		dest = s.Network.Inbox(st.Next)
	}
	dest += ":" + v.Statement.ID
	dgst, err := s.Client.Push(ctx, next, dest)
	if err != nil {
		return err
	}
	st.Pushed = dest + "@" + dgst.String()
	return nil
}
