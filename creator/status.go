package creator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainimage"
)

// Where a train is (TrainStatus.Where), besides "station:ID": the inbox of
// the station it waits for.
const (
	Home    = "home"    // in the creator's outbox, the route complete
	Unknown = "unknown" // no verified copy found
)

// States of a stop (StopStatus.State). A stop that ended without a record
// has the outcome its station signed in a notice instead: "failed",
// "refused", "rejected", "withheld" or another word a station used.
const (
	StateDone    = "done"    // the station signed its stop record
	StateWaiting = "waiting" // the train is in this station's inbox
	StatePending = "pending" // a later stop, not reached yet
)

// StopStatus is one stop of the route.
type StopStatus struct {
	Station  string    `json:"station"`
	Index    int       `json:"index"` // position on the route; a notice's own index when the route is unknown (-1: unknown)
	State    string    `json:"state"`
	Reason   string    `json:"reason,omitempty"`    // from the station's notice
	ExitCode int       `json:"exit_code,omitempty"` // the train's exit code, from a "failed" notice
	Time     time.Time `json:"time,omitzero"`       // stop record time, notice time, or when the train reached a waiting stop
}

// TrainStatus is where a train is and what happened at every stop.
type TrainStatus struct {
	Train       string       `json:"train"`
	TrainDigest string       `json:"train_digest,omitempty"` // digest of the verified statement
	Creator     string       `json:"creator"`
	Where       string       `json:"where"`         // "station:ID", "home" or "unknown"
	Ref         string       `json:"ref,omitempty"` // the tag the verified copy was found under
	Route       []string     `json:"route"`         // station ids; empty when no copy verified
	Stops       []StopStatus `json:"stops"`
	Complete    bool         `json:"complete"`
	// Warnings name copies and notices that were found but ignored: they
	// did not verify, belong to another train, or contradict the route.
	Warnings []string `json:"warnings,omitempty"`
}

// Found reports whether anything about the train was found.
func (s *TrainStatus) Found() bool { return s.Where != Unknown || len(s.Stops) > 0 }

// Option tunes Status.
type Option func(*options)

type options struct{ stations []string }

// WithStations names stations whose inboxes (and notices) to look in
// before the train's route is known: without a finished copy in the outbox
// or a plain-form notice tag, Status cannot know where the train started.
// The CLI passes every station of the trust directory.
func WithStations(ids ...string) Option {
	return func(o *options) { o.stations = append(o.stations, ids...) }
}

// located is a verified copy of the train and where it was found.
type located struct {
	v     *hardened.Verified
	where string
	ref   string
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.Is(err, registry.ErrNotFound) || errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// contentErr: what a copy holds is wrong (a warning), as opposed to the
// registry failing (an error).
func contentErr(err error) bool {
	for _, e := range []error{trainimage.ErrImage, trainimage.ErrLimit, station.ErrNotNotice, hardened.ErrMalformed, hardened.ErrTampered} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Status finds train trainID of box.User: under the tag trainID in the
// creator's outbox (route complete) or in a station's inbox, reads only its
// envelope, and verifies it from the first stop against trust, so done
// stops come from signed stop records and the route from the signed
// statement. Signed notices in the outbox (hardened.VerifyNotice) give the
// outcome of a stop that ended without a record; a notice counts when it
// names this train's statement digest, or, from a station that could not
// read the train that far, when it is newer than the train's arrival at
// that station. Where the train is
// not found, Where is Unknown and Stops lists what notices say.
// Registry failures are errors; copies and notices that do not verify are
// skipped with a warning.
func Status(ctx context.Context, box station.Outbox, trust hardened.TrustStore, trainID string, opts ...Option) (*TrainStatus, error) {
	c, n, creatorID := box.Client, box.Network, box.User
	if creatorID == "" || trainID == "" {
		return nil, errors.New("creator: Status needs a creator id and a train id")
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	s := &TrainStatus{Train: trainID, Creator: creatorID, Where: Unknown, Route: []string{}, Stops: []StopStatus{}}
	warn := func(format string, args ...any) { s.Warnings = append(s.Warnings, fmt.Sprintf(format, args...)) }

	var best *located
	tried := map[string]bool{}
	look := func(where, repo string) error {
		ref := repo + ":" + trainID
		if tried[ref] {
			return nil
		}
		tried[ref] = true
		env, err := trainimage.PeekEnvelope(ctx, c, ref)
		switch {
		case err != nil && isNotFound(err):
			return nil
		case err != nil && contentErr(err):
			warn("%s: %v", ref, err)
			return nil
		case err != nil:
			return err
		}
		v, err := hardened.Verify(ctx, trust, env)
		if err != nil {
			warn("%s does not verify: %v", ref, err)
			return nil
		}
		switch st := v.Statement; {
		case st.ID != trainID:
			warn("%s holds train %q", ref, st.ID)
		case st.Creator.ID != creatorID:
			warn("%s is a train of creator %q", ref, st.Creator.ID)
		case where == Home && !v.Complete():
			warn("%s is in the outbox after %d of %d stops", ref, len(v.Stops), len(st.Route))
		case where != Home && where != "station:"+v.Next():
			warn("%s is in the inbox of %s but due at %q", ref, strings.TrimPrefix(where, "station:"), v.Next())
		default:
			if best == nil || len(v.Stops) > len(best.v.Stops) {
				best = &located{v: v, where: where, ref: ref}
			}
		}
		return nil
	}
	if err := look(Home, n.Outbox(creatorID)); err != nil {
		return nil, err
	}
	candidates := slices.Clone(o.stations)
	tags, err := c.ListTags(ctx, n.Outbox(creatorID))
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	for _, t := range tags {
		if st, ok := strings.CutPrefix(t, trainID+".notice."); ok && station.NoticeTag(trainID, st) == t {
			candidates = append(candidates, st)
		}
	}
	if best == nil || !best.v.Complete() {
		for _, st := range candidates {
			if err := look("station:"+st, n.Inbox(st)); err != nil {
				return nil, err
			}
		}
		// Once the route is known, every station on it is looked at: the
		// furthest copy is where the train is.
		if best != nil {
			for _, p := range best.v.Statement.Route {
				if err := look("station:"+p.ID, n.Inbox(p.ID)); err != nil {
					return nil, err
				}
			}
		}
	}

	noticeFrom := candidates
	if best != nil {
		noticeFrom = nil
		for _, p := range best.v.Statement.Route {
			noticeFrom = append(noticeFrom, p.ID)
		}
	}
	notices := map[string]*hardened.Notice{}
	for _, st := range noticeFrom {
		if notices[st] != nil {
			continue
		}
		envs, err := box.FetchNotices(ctx, trainID, st)
		if err != nil {
			if !contentErr(err) {
				return nil, err
			}
			warn("%v", err)
			continue
		}
		for _, e := range envs {
			nt, err := hardened.VerifyNotice(ctx, trust, e)
			switch {
			case err != nil:
				warn("notice of station %q does not verify: %v", st, err)
			case nt.Train != trainID || nt.Station != st:
				warn("notice under station %q's tag is from %q about train %q", st, nt.Station, nt.Train)
			default:
				notices[st] = nt
			}
		}
	}

	if best == nil {
		for _, nt := range notices {
			s.Stops = append(s.Stops, StopStatus{Station: nt.Station, Index: nt.Index, State: nt.Outcome,
				Reason: nt.Reason, ExitCode: nt.ExitCode, Time: nt.Time})
		}
		slices.SortFunc(s.Stops, func(a, b StopStatus) int {
			if a.Index != b.Index {
				return a.Index - b.Index
			}
			return strings.Compare(a.Station, b.Station)
		})
		return s, nil
	}

	v := best.v
	s.Where, s.Ref, s.TrainDigest, s.Complete = best.where, best.ref, v.TrainDigest, v.Complete()
	for i, p := range v.Statement.Route {
		s.Route = append(s.Route, p.ID)
		ss := StopStatus{Station: p.ID, Index: i, State: StatePending}
		var arrived time.Time
		switch {
		case i < len(v.Stops):
			ss.State, ss.Time = StateDone, v.Stops[i].Time
		case i == len(v.Stops):
			arrived = v.Statement.Created
			if i > 0 {
				arrived = v.Stops[i-1].Time
			}
			ss.State, ss.Time = StateWaiting, arrived
		}
		// A signed record beats any notice: a notice about a done stop is a
		// refused re-delivery, not this train's outcome.
		if nt := notices[p.ID]; nt != nil && i >= len(v.Stops) {
			switch {
			case nt.TrainDigest != "" && nt.TrainDigest != v.TrainDigest:
				// an earlier train under the same id
			case nt.Index != -1 && nt.Index != i:
				warn("notice of station %q is about stop %d, the route has it at %d", p.ID, nt.Index, i)
			case nt.TrainDigest == "" && !arrived.IsZero() && !nt.Time.After(arrived):
				// Older than this train's arrival there: an earlier train's.
				// (A notice naming this train's digest is about this train
				// whatever the station's clock says.)
			default:
				ss.State, ss.Reason, ss.ExitCode, ss.Time = nt.Outcome, nt.Reason, nt.ExitCode, nt.Time
			}
		}
		s.Stops = append(s.Stops, ss)
	}
	return s, nil
}
