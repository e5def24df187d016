// Package station is a station's whole stop: pull the train, verify it
// (pre-run), run it beside the station's data with no network, seal the
// results for the route (post-run) and push the train on to the next hop.
// One flow serves both protocols (trainyard/v1 and the PHT's pht-v2); it
// decides once how each failure is handled (see Classify), and records every
// stop's state in the station's database so that a stop survives restarts
// and never runs twice.
package station

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/trainimage"
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
	// Protocol is the kind of train the station runs, with its key: V1 or
	// PHTv2 (required to run or inspect trains).
	Protocol Protocol
	// Trust is the trust directory v1 trains are verified against.
	Trust   hardened.TrustStore
	Runner  Runner
	Client  *registry.Client
	Network Network
	// DataDir is mounted read-only into every train; "" runs trains with
	// no data (the CLI asks for --no-data to say so).
	DataDir string
	// WorkDir holds temporary bundles and blobs; "" uses the system temp dir.
	WorkDir string
	// DB records every stop (see DB). Without one nothing stops a replay
	// but the protocol's own checks, and hold and review are unavailable.
	DB *DB
	// Hold keeps every verified train waiting for Accept or Reject.
	Hold bool
	// ReviewResults keeps each stop's plaintext results in ReviewDir, and
	// its sealed output unpushed, until Release or Withhold.
	ReviewResults bool
	ReviewDir     string
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

// Stop is the record of one stop: what the station knows about the train,
// its state and the outcome of its last attempt.
type Stop struct {
	// Key identifies the stop: "<train digest>/<index>" for a verified v1
	// train, "input/<manifest digest>" for what was refused before that
	// (and for pht-v2 trains, which have no signed identity).
	Key       string   `json:"key"`
	Station   string   `json:"station"`
	Protocol  string   `json:"protocol,omitempty"`
	Source    string   `json:"source"`
	Tag       string   `json:"tag,omitempty"`   // the inbox tag serve found it under
	Input     string   `json:"input,omitempty"` // manifest digest of the train as it arrived
	Train     string   `json:"train"`
	Digest    string   `json:"train_digest,omitempty"`
	Index     int      `json:"index"`
	State     State    `json:"state"`
	Class     Class    `json:"class,omitempty"` // of the last attempt's error
	Reason    string   `json:"reason,omitempty"`
	By        string   `json:"by,omitempty"` // who made the last decision
	Creator   string   `json:"creator,omitempty"`
	Route     []string `json:"route,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
	Session   string   `json:"session,omitempty"`
	Next      string   `json:"next,omitempty"`
	Dest      string   `json:"dest,omitempty"`   // where the output goes
	Output    string   `json:"output,omitempty"` // digest of the sealed output image
	Pushed    string   `json:"pushed,omitempty"`
	Notice    string   `json:"notice,omitempty"` // the signed notice sent to the creator
	ExitCode  int      `json:"exit_code"`
	// Seconds is how long the last attempt took.
	Seconds  float64   `json:"seconds"`
	Attempts int       `json:"attempts,omitempty"`
	Error    string    `json:"error,omitempty"`
	Log      string    `json:"log,omitempty"` // the kept train output (EscapeLog shows it)
	Time     time.Time `json:"time"`          // start of the last attempt
	Arrived  time.Time `json:"arrived"`
	Updated  time.Time `json:"updated"`
}

func (st *Stop) matches(name string) bool {
	return name == st.Key || name == st.Train || name == st.Tag || name == st.Input
}

const inputKeyPrefix = "input/"

func inputKey(digest string) string { return inputKeyPrefix + digest }

// trainStop is one train at one stop, as its protocol opened and verified
// it. The flow calls describe, then prepare, run, seal and pushes, once
// each, and close at the end.
type trainStop interface {
	// describe fills in what verification established (key, train, index,
	// creator, route, next hop, destination).
	describe(st *Stop)
	// prepare decrypts the code and the previous results into resultsDir
	// and returns the image to run and its release.
	prepare(ctx context.Context, resultsDir string, st *Stop) (v1.Image, func(), error)
	// seal seals the results in resultsDir and returns the train to pass on.
	seal(ctx context.Context, resultsDir string, st *Stop) (v1.Image, error)
	close()
}

// push is one image the flow pushes after a stop, in order.
type push struct {
	img v1.Image
	ref string
	// shared refs (pht-v2's base) may hold other content; others are
	// pushed only if absent or already the same.
	shared bool
}

// Process runs one stop for the train at ref and pushes it to the next hop.
// The returned Stop says what happened; the error's Class says how a caller
// (serve) handles it. Nothing is pushed unless the stop is done.
func (s *Station) Process(ctx context.Context, ref string) (*Stop, error) {
	start := time.Now()
	st := &Stop{Station: s.ID, Protocol: s.protocol(), Source: ref, Time: start.UTC(), Arrived: start.UTC(), Index: -1}
	err := s.process(ctx, ref, st)
	st.Seconds = time.Since(start).Seconds()
	if err != nil {
		st.Error, st.Class = err.Error(), Classify(err)
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
	attrs := []any{"station", st.Station, "source", st.Source, "train", st.Train, "index", st.Index, "state", string(st.State),
		"session", st.Session, "next", st.Next, "pushed", st.Pushed, "exit_code", st.ExitCode, "seconds", st.Seconds}
	switch c := Classify(err); c {
	case "":
		l.Info("stop done", attrs...)
	case ClassWaiting:
		l.Info("stop waiting for the operator", attrs...)
	case Transient, ClassInterrupted:
		l.Warn("stop not finished, will retry", append(attrs, "class", string(c), "error", err.Error())...)
	default:
		l.Error("stop "+string(c), append(attrs, "class", string(c), "error", err.Error())...)
	}
}

// open verifies the pulled train with the station's protocol.
func (s *Station) open(ctx context.Context, img v1.Image, ref, work string) (trainStop, error) {
	if s.Protocol == nil {
		return nil, fmt.Errorf("station %q has no protocol (station.V1 or station.PHTv2)", s.ID)
	}
	return s.Protocol.open(ctx, s, img, ref, work)
}

func (s *Station) process(ctx context.Context, ref string, st *Stop) (err error) {
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

	img, err := trainimage.Pull(ctx, s.Client, ref)
	if err != nil {
		return err
	}
	dg, err := img.Digest()
	if err != nil {
		return err
	}
	st.Input = dg.String()
	st.Key = inputKey(st.Input)
	if err := notTrain(img); err != nil {
		return err
	}
	if s.DB != nil {
		prev, err := s.DB.ByInput(st.Input)
		if err != nil {
			return err
		}
		if err := handled(prev); err != nil {
			*st = mergeStop(prev, st)
			return err
		}
	}
	t, err := s.open(ctx, img, ref, work)
	if err != nil {
		return s.refuse(ctx, st, err)
	}
	defer t.close()
	t.describe(st)

	if err := s.deliveredElsewhere(ctx, st); err != nil {
		return s.refuse(ctx, st, err)
	}
	var prev *Stop
	if s.DB != nil {
		if done, err := s.pushedBefore(ctx, st); done || err != nil {
			return err
		}
		if prev, err = s.DB.Begin(st, s.Hold); err != nil {
			if errors.Is(err, ErrHeld) {
				return err
			}
			return s.refuse(ctx, st, err)
		}
	}
	// From here on, every end of the stop is recorded under its key (with
	// a DB) and the creator told of a failure.
	defer func() {
		if err != nil {
			err = s.end(ctx, st, prev, err)
		}
	}()

	out, err := s.runStop(ctx, t, work, st)
	if err != nil {
		return err
	}
	pushes := s.pushes(out, st)
	if s.ReviewResults {
		return s.keepForReview(st, pushes)
	}
	return s.deliver(ctx, st, pushes, "")
}

// handled says what to do with input bytes the station has a record of.
func handled(prev *Stop) error {
	if prev == nil {
		return nil
	}
	switch prev.State {
	case Held:
		return ErrHeld
	case Review:
		return ErrUnderReview
	}
	if prev.State.Final() {
		return replayed(prev)
	}
	return nil
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

// mergeStop is the stored record seen from a new attempt.
func mergeStop(prev, st *Stop) Stop {
	out := *prev
	out.Source, out.Time = st.Source, st.Time
	return out
}

// runStop is pre-run, run and post-run: the sealed train to pass on.
func (s *Station) runStop(ctx context.Context, t trainStop, work string, st *Stop) (v1.Image, error) {
	resultsDir := filepath.Join(work, "results")
	if err := os.Mkdir(resultsDir, 0o700); err != nil {
		return nil, err
	}
	// From pre-run until post-run has sealed them, the results live on a
	// filesystem of the cap's size (unmounted on every path): pre-run
	// decrypts the previous stop's results straight into it, instead of
	// into the work dir and then through a copy (256 MiB of results were
	// 512 MiB more of writes, and this disk slows every writer once much
	// is dirty).
	resultsFS, err := s.mountResults(ctx, resultsDir)
	if err != nil {
		return nil, err
	}
	defer resultsFS.Close()
	run, release, err := t.prepare(ctx, resultsDir, st)
	if err != nil {
		return nil, resultsFull(err)
	}
	defer release()
	trainOut, closeOut, err := s.trainOutput(st)
	if err != nil {
		return nil, err
	}
	res, err := s.Runner.Run(ctx, run, trainrun.RunSpec{
		ResultsDir: resultsDir, DataDir: s.DataDir, Env: []string{"PHT_STATION_ID=" + s.ID},
		Memory: s.Memory, PIDs: s.PIDs, CPUs: s.CPUs, Timeout: s.Timeout, MaxResults: s.MaxResults, Stdout: trainOut, Stderr: trainOut,
	})
	closeOut()
	st.ExitCode = res.ExitCode
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	pctx, cancelPost := s.postRunContext(ctx)
	defer cancelPost()
	out, err := t.seal(pctx, resultsDir, st)
	if err == nil && s.ReviewResults {
		// The plaintext the operator reviews: copied off the capped
		// filesystem before it is unmounted.
		err = s.copyForReview(st, resultsDir)
	}
	if cerr := resultsFS.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, postRunErr(pctx, err)
	}
	return out, nil
}

// pushes is what a done stop delivers: the protocol's extra images, then
// the train under its own tag.
func (s *Station) pushes(out v1.Image, st *Stop) []push {
	var ps []push
	if ex, ok := out.(interface{ extraPushes() []push }); ok {
		ps = ex.extraPushes()
	}
	return append(ps, push{img: out, ref: st.Dest})
}

// deliver pushes the sealed train and records the stop done. The output's
// digest is recorded first, so a station killed during the push finds on
// its next start that the push completed (pushedBefore) instead of running
// the train a second time.
func (s *Station) deliver(ctx context.Context, st *Stop, ps []push, by string) error {
	last := ps[len(ps)-1]
	dg, err := last.img.Digest()
	if err != nil {
		return err
	}
	st.Output = dg.String()
	timed(st)
	if s.DB != nil {
		if err := s.DB.Save(st, ""); err != nil {
			return err
		}
	}
	for _, p := range ps {
		var err error
		if p.shared {
			_, err = s.Client.Push(ctx, p.img, p.ref)
		} else {
			_, err = s.Client.PushIfAbsent(ctx, p.img, p.ref)
		}
		if err != nil {
			return fmt.Errorf("push %s: %w", p.ref, err)
		}
	}
	st.Pushed = st.Dest + "@" + st.Output
	st.State, st.Reason = Done, ""
	if s.DB != nil {
		return s.DB.Save(st, by)
	}
	return nil
}

// pushedBefore finishes a stop whose output an interrupted attempt already
// pushed: the next hop has that exact digest, so the stop is done.
func (s *Station) pushedBefore(ctx context.Context, st *Stop) (bool, error) {
	prev, err := s.DB.Get(st.Key)
	if err != nil || prev == nil || prev.Output == "" || prev.Dest == "" || prev.State.Final() {
		return false, err
	}
	have, err := s.Client.Head(ctx, prev.Dest)
	if err != nil || have.String() != prev.Output {
		return false, nil
	}
	prev.State, prev.Reason, prev.Pushed = Done, "", prev.Dest+"@"+prev.Output
	if err := s.DB.Save(prev, ""); err != nil {
		return true, err
	}
	*st = mergeStop(prev, st)
	return true, nil
}

// deliveredElsewhere refuses a v1 stop whose output the next hop already
// holds, signed by this station: it ran before, from another state
// directory or before the database was lost, and running it again would
// put the train on the station's data a second time. It costs one HEAD;
// what is there but does not verify is left to the push, which never
// replaces other content.
func (s *Station) deliveredElsewhere(ctx context.Context, st *Stop) error {
	if s.protocol() != ProtocolV1 || st.Dest == "" {
		return nil
	}
	if _, err := s.Client.Head(ctx, st.Dest); err != nil {
		return nil
	}
	env, err := trainimage.PeekEnvelope(ctx, s.Client, st.Dest)
	if err != nil {
		return nil
	}
	v, err := hardened.Verify(ctx, s.Trust, env)
	if err != nil || v.TrainDigest != st.Digest || len(v.Stops) <= st.Index || v.Stops[st.Index].Station != s.ID {
		return nil
	}
	return fmt.Errorf("%w: %s already holds stop %d of train %s, signed by this station at %s", hardened.ErrReplay,
		st.Dest, st.Index, st.Train, v.Stops[st.Index].Time.UTC().Format(time.RFC3339))
}

// refuse records a refusal of these input bytes (not of the stop: a
// tampered copy must not cost the genuine train its stop) and tells the
// creator. Other classes pass through unrecorded.
func (s *Station) refuse(ctx context.Context, st *Stop, err error) error {
	if Classify(err) != ClassRefused {
		return err
	}
	st.State, st.Reason = Refused, err.Error()
	timed(st)
	if s.DB != nil {
		rec := *st
		rec.Key = inputKey(st.Input)
		if serr := s.DB.Save(&rec, ""); serr != nil {
			return errors.Join(err, serr)
		}
	}
	s.notify(ctx, st)
	return err
}

// end records how a begun stop ended with err.
func (s *Station) end(ctx context.Context, st *Stop, prev *Stop, err error) error {
	switch Classify(err) {
	case ClassWaiting:
		return err
	case ClassRefused:
		if s.DB != nil {
			if rerr := s.DB.Restore(st.Key, prev); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		return s.refuse(ctx, st, err)
	case ClassFailed:
		st.State, st.Reason = Failed, err.Error()
		s.notify(ctx, st)
	default:
		st.State, st.Reason = Interrupted, err.Error()
	}
	timed(st)
	if s.DB == nil {
		return err
	}
	if serr := s.DB.Save(st, ""); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// timed records the attempt's duration so far, once (a release after a
// review keeps the run's time, not the wait).
func timed(st *Stop) {
	if st.Seconds == 0 && !st.Time.IsZero() {
		st.Seconds = time.Since(st.Time).Seconds()
	}
}

// notTrain tells what other tools put in a repository (signatures,
// attestations, SBOMs, indexes, artifacts) from a train.
func notTrain(img v1.Image) error {
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	if mt.IsIndex() {
		return fmt.Errorf("%w: an image index (%s)", ErrNotTrain, mt)
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	if m.ArtifactType != "" {
		return fmt.Errorf("%w: an artifact (%s)", ErrNotTrain, m.ArtifactType)
	}
	switch m.Config.MediaType {
	case "", types.OCIConfigJSON, types.DockerConfigJSON:
	default:
		return fmt.Errorf("%w: an artifact (config %s)", ErrNotTrain, m.Config.MediaType)
	}
	return nil
}

// copyFile copies src to dst (created 0600).
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
