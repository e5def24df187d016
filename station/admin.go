package station

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Admin is what an operator does at a station: see its stops, decide on
// held trains and reviewed results, run a stop again. *Station implements
// it on its database; AdminClient does the same through a running serve's
// admin socket, so nothing needs the server stopped. Every decision is
// recorded with who made it (by).
type Admin interface {
	Status(ctx context.Context) (*Status, error)
	History(ctx context.Context, f Filter) ([]Stop, error)
	Stop(ctx context.Context, name string) (*Stop, []Event, error)
	Accept(ctx context.Context, name, by string) (*Stop, error)
	Reject(ctx context.Context, name, reason, by string) (*Stop, error)
	Release(ctx context.Context, name, by string) (*Stop, error)
	Withhold(ctx context.Context, name, reason, by string) (*Stop, error)
	Retry(ctx context.Context, name, by string) (*Stop, error)
	Results(ctx context.Context, name string) ([]ResultFile, error)
	OpenResult(ctx context.Context, name, path string) (io.ReadCloser, error)
	Log(ctx context.Context, name string, w io.Writer) error
}

// Status is a station's state at a glance (serve's /status and the admin
// API's).
type Status struct {
	Station string    `json:"station"`
	Version string    `json:"version,omitempty"`
	Inbox   string    `json:"inbox"`
	Started time.Time `json:"started,omitzero"`
	// UptimeSeconds is how long serve has run.
	UptimeSeconds float64 `json:"uptime_seconds"`
	Hold          bool    `json:"hold"`
	ReviewResults bool    `json:"review_results"`
	// Running is the stop running now, if any.
	Running *Stop `json:"running,omitempty"`
	// Queued counts stops waiting: held, accepted, under review, retry.
	Queued    int       `json:"queued"`
	LastPoll  time.Time `json:"last_poll,omitzero"`
	LastOK    time.Time `json:"last_ok_poll,omitzero"`
	LastError string    `json:"last_error"`
	// Retrying lists inbox entries waiting for a retry after a transient
	// failure, with the error.
	Retrying []Retrying     `json:"retrying,omitempty"`
	Trust    map[string]any `json:"trust,omitempty"`
	Recent   []Stop         `json:"recent"`
	Counts   map[State]int  `json:"counts"`
}

// Retrying is an inbox entry that failed transiently and waits for its next
// attempt.
type Retrying struct {
	Tag      string    `json:"tag"`
	Input    string    `json:"input"`
	Attempts int       `json:"attempts"`
	Next     time.Time `json:"next"`
	Error    string    `json:"error"`
}

var errNoDB = errors.New("the station has no database (state directory)")

func (s *Station) find(name string) (*Stop, error) {
	if s.DB == nil {
		return nil, errNoDB
	}
	return s.DB.Find(name)
}

// Status reports the database's view (serve adds its own).
func (s *Station) Status(context.Context) (*Status, error) {
	if s.DB == nil {
		return nil, errNoDB
	}
	st := &Status{Station: s.ID, Inbox: s.Network.Inbox(s.ID), Hold: s.Hold, ReviewResults: s.ReviewResults, Counts: map[State]int{}}
	var err error
	if st.Counts, err = s.DB.Counts(); err != nil {
		return nil, err
	}
	for _, q := range []State{Held, Accepted, Review, Retry} {
		st.Queued += st.Counts[q]
	}
	if st.Recent, err = s.DB.Recent(50); err != nil {
		return nil, err
	}
	return st, nil
}

// History lists stops, newest first.
func (s *Station) History(_ context.Context, f Filter) ([]Stop, error) {
	if s.DB == nil {
		return nil, errNoDB
	}
	return s.DB.History(f)
}

// Stop returns one stop and its audit trail.
func (s *Station) Stop(_ context.Context, name string) (*Stop, []Event, error) {
	st, err := s.find(name)
	if err != nil {
		return nil, nil, err
	}
	ev, err := s.DB.Events(st.Key, 1000)
	return st, ev, err
}

// decide moves the stop name from one of the states from to the state to,
// with reason and who decided, then runs after (outside the transaction).
func (s *Station) decide(name, by string, to State, reason string, from ...State) (*Stop, error) {
	st, err := s.find(name)
	if err != nil {
		return nil, err
	}
	return s.DB.Update(st.Key, by, func(st *Stop) error {
		ok := false
		for _, f := range from {
			ok = ok || st.State == f
		}
		if !ok {
			names := make([]string, len(from))
			for i, f := range from {
				names[i] = string(f)
			}
			return fmt.Errorf("%w: stop %s of train %s is %s, not %s", ErrState, st.Key, st.Train, st.State, strings.Join(names, " or "))
		}
		st.State, st.Reason, st.By = to, reason, by
		return nil
	})
}

func needReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return errors.New("a reason is required: the creator is told it")
	}
	return nil
}

// Accept lets a held train run on the next poll (or `station run`).
func (s *Station) Accept(_ context.Context, name, by string) (*Stop, error) {
	st, err := s.decide(name, by, Accepted, "", Held)
	if err != nil {
		return nil, err
	}
	return st, s.DB.Forget(st.Input)
}

// Reject refuses a held train for good and tells its creator why.
func (s *Station) Reject(ctx context.Context, name, reason, by string) (*Stop, error) {
	if err := needReason(reason); err != nil {
		return nil, err
	}
	st, err := s.decide(name, by, Rejected, reason, Held, Accepted)
	if err != nil {
		return nil, err
	}
	s.notify(ctx, st)
	return st, s.DB.Save(st, "") // the notice's reference; the decision is recorded
}

// Retry runs a failed or interrupted stop again.
func (s *Station) Retry(_ context.Context, name, by string) (*Stop, error) {
	st, err := s.decide(name, by, Retry, "", Failed, Interrupted)
	if err != nil {
		return nil, err
	}
	return st, s.DB.Forget(st.Input)
}

// Release pushes the sealed train of a stop under review on to its next
// hop; the plaintext kept for the review is removed.
func (s *Station) Release(ctx context.Context, name, by string) (*Stop, error) {
	st, err := s.find(name)
	if err != nil {
		return nil, err
	}
	if st.State != Review {
		return nil, fmt.Errorf("%w: stop %s of train %s is %s, not under review", ErrState, st.Key, st.Train, st.State)
	}
	if s.Client == nil {
		return nil, fmt.Errorf("release pushes the train: it needs the station's --key and --network (or a running station serve)")
	}
	ps, err := s.reviewPushes(st)
	if err != nil {
		return nil, err
	}
	st.By = by
	if err := s.deliver(ctx, st, ps, by); err != nil {
		return nil, err
	}
	return st, s.dropReview(st)
}

// Withhold keeps the results of a stop under review from leaving: they
// are deleted, the stop ends withheld and the creator is told why.
func (s *Station) Withhold(ctx context.Context, name, reason, by string) (*Stop, error) {
	if err := needReason(reason); err != nil {
		return nil, err
	}
	st, err := s.decide(name, by, Withheld, reason, Review)
	if err != nil {
		return nil, err
	}
	if err := s.dropReview(st); err != nil {
		return nil, err
	}
	s.notify(ctx, st)
	return st, s.DB.Save(st, "")
}

func (s *Station) dropReview(st *Stop) error {
	dir, err := s.ReviewPath(st)
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// Backup writes a consistent copy of the station's database to w.
func (s *Station) Backup(_ context.Context, w io.Writer) error {
	if s.DB == nil {
		return errNoDB
	}
	return s.DB.Backup(w)
}

// Log writes the kept train output of the stop name, escaped (EscapeLog).
func (s *Station) Log(_ context.Context, name string, w io.Writer) error {
	st, err := s.find(name)
	if err != nil {
		return err
	}
	if st.Log == "" {
		return fmt.Errorf("%w: no train output kept for %s", ErrNoStop, name)
	}
	// The record names the file; it must be one of the kept logs.
	if s.TrainLogDir != "" && filepath.Dir(st.Log) != filepath.Clean(s.TrainLogDir) {
		return fmt.Errorf("train log %s is outside the log directory", st.Log)
	}
	f, err := os.Open(st.Log)
	if err != nil {
		return fmt.Errorf("train log: %w", err)
	}
	defer f.Close()
	return EscapeLog(w, f)
}

var _ Admin = (*Station)(nil)
