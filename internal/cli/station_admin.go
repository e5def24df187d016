package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/station"
)

// stopOutcome prints one stop's outcome and maps its class to the exit
// code `station run` documents.
func stopOutcome(cmd *cobra.Command, st *station.Stop, err error) error {
	w := cmd.OutOrStdout()
	if err == nil {
		fmt.Fprintf(w, "train %s stop %d done (exit %d, %s); pushed to %s\n",
			st.Train, st.Index, st.ExitCode, (time.Duration(st.Seconds * float64(time.Second))).Round(time.Millisecond), st.Pushed)
		return nil
	}
	class := station.Classify(err)
	var re *station.RunError
	if errors.As(err, &re) {
		class = re.Class
	}
	switch class {
	case station.ClassWaiting:
		next := "release %[1]s --id %[2]s` or `trainyard station withhold %[1]s --id %[2]s --reason ...`"
		if st.State == station.Held {
			next = "accept %[1]s --id %[2]s` or `trainyard station reject %[1]s --id %[2]s --reason ...`"
		}
		fmt.Fprintf(w, "train %s stop %d is %s: `trainyard station "+fmt.Sprintf(next, st.Train, st.Station)+"\n", st.Train, st.Index, st.State)
		return &ExitError{Code: 3, Err: err}
	case station.ClassRefused:
		return &ExitError{Code: 4, Err: err}
	case station.ClassFailed:
		return &ExitError{Code: 5, Err: err}
	}
	return err
}

// operator names who runs an admin command, for the station's history
// (the admin socket records the kernel's view of the caller beside it).
func operator() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// admin returns the station's admin API: the running serve's through its
// socket, else the database itself. With pushes (release, reject,
// withhold: they push the train or a notice to the creator) the station's
// key and network are then required.
func (f *stationFlags) admin(cmd *cobra.Command, pushes bool) (station.Admin, func(), error) {
	if f.id == "" && f.stateDir == "" {
		return nil, nil, &ExitError{Code: 2, Err: fmt.Errorf("--id or --state-dir is required")}
	}
	if ac, err := station.DialAdmin(f.adminSocket()); err == nil {
		return ac, func() {}, nil
	}
	if _, err := os.Stat(f.dbPath()); err != nil {
		return nil, nil, fmt.Errorf("no station state at %s (is --id or --state-dir right?)", f.state())
	}
	d, err := station.OpenDB(f.dbPath())
	if err != nil {
		return nil, nil, err
	}
	// Records only: a decision that pushes (below) needs the key.
	s := &station.Station{ID: f.id, DB: d, ReviewDir: f.reviewDir(), TrainLogDir: f.logDir(), Protocol: station.V1{}}
	if f.protocol == station.ProtocolPHTv2 {
		s.Protocol = station.PHTv2{}
	}
	if pushes {
		if f.key == "" || f.network == "" {
			d.Close()
			return nil, nil, &ExitError{Code: 2, Err: fmt.Errorf("with station serve stopped, %s pushes to the registry itself: --key and --network are required", cmd.Name())}
		}
		s.Client, s.Network = newClient(cmd, f.trust.insecure), station.Network{Prefix: f.network}
		if f.protocol == station.ProtocolV1 {
			key, err := loadPrivateKey(cmd, f.key)
			if err != nil {
				d.Close()
				return nil, nil, err
			}
			s.Protocol = station.V1{Key: key}
		}
	}
	return s, func() { d.Close() }, nil
}

func stationAdminCmds(f *stationFlags) []*cobra.Command {
	decide := func(use, short, example string, needReason, pushes bool, do func(cmd *cobra.Command, a station.Admin, name, reason string) (*station.Stop, error)) *cobra.Command {
		var reason, output string
		c := &cobra.Command{Use: use + " TRAIN", Short: short, Example: example, Args: cobra.ExactArgs(1)}
		checkOut := outputFlag(c, &output)
		if needReason {
			c.Flags().StringVar(&reason, "reason", "", "why (required: the train's creator is told)")
		}
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if err := checkOut(); err != nil {
				return err
			}
			if needReason && strings.TrimSpace(reason) == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--reason is required: the train's creator is told it")}
			}
			a, closeAdmin, err := f.admin(cmd, pushes)
			if err != nil {
				return err
			}
			defer closeAdmin()
			st, err := do(cmd, a, args[0], reason)
			if err != nil {
				if errors.Is(err, station.ErrNoStop) || errors.Is(err, station.ErrState) {
					return &ExitError{Code: 4, Err: err}
				}
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "train %s stop %d: %s%s\n", st.Train, st.Index, st.State, reasonText(st.Reason))
			return nil
		}
		return c
	}
	accept := decide("accept", "Let a held train run (serve --hold)", examples["station accept"], false, false,
		func(cmd *cobra.Command, a station.Admin, name, _ string) (*station.Stop, error) {
			return a.Accept(cmd.Context(), name, operator())
		})
	reject := decide("reject", "Refuse a held train for good; its creator gets the reason", examples["station reject"], true, true,
		func(cmd *cobra.Command, a station.Admin, name, reason string) (*station.Stop, error) {
			return a.Reject(cmd.Context(), name, reason, operator())
		})
	release := decide("release", "Let the results of a stop under review leave: push the sealed train on", examples["station release"], false, true,
		func(cmd *cobra.Command, a station.Admin, name, _ string) (*station.Stop, error) {
			return a.Release(cmd.Context(), name, operator())
		})
	withhold := decide("withhold", "Keep the results of a stop under review from leaving; they are deleted and the creator gets the reason", examples["station withhold"], true, true,
		func(cmd *cobra.Command, a station.Admin, name, reason string) (*station.Stop, error) {
			return a.Withhold(cmd.Context(), name, reason, operator())
		})
	retry := decide("retry", "Run a failed or interrupted stop again (on serve's next poll, or with station run)", examples["station retry"], false, false,
		func(cmd *cobra.Command, a station.Admin, name, _ string) (*station.Stop, error) {
			return a.Retry(cmd.Context(), name, operator())
		})

	var hOut string
	var hStates []string
	var hLimit int
	history := &cobra.Command{Use: "history [TRAIN]", Short: "Past and waiting stops at this station, newest first",
		Example: examples["station history"], Args: cobra.MaximumNArgs(1)}
	checkH := outputFlag(history, &hOut)
	history.Flags().StringSliceVar(&hStates, "state", nil, "only stops in these states (held, accepted, running, review, interrupted, retry, done, failed, refused, rejected, withheld)")
	history.Flags().IntVar(&hLimit, "limit", 100, "at most this many stops")
	history.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkH(); err != nil {
			return err
		}
		flt := station.Filter{Limit: hLimit}
		for _, s := range hStates {
			flt.States = append(flt.States, station.State(s))
		}
		if len(args) == 1 {
			flt.Train = args[0]
		}
		a, closeAdmin, err := f.admin(cmd, false)
		if err != nil {
			return err
		}
		defer closeAdmin()
		h, err := a.History(cmd.Context(), flt)
		if err != nil {
			return err
		}
		if hOut == "json" {
			if h == nil {
				h = []station.Stop{}
			}
			return writeJSON(cmd.OutOrStdout(), h)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "UPDATED\tTRAIN\tSTOP\tSTATE\tSECONDS\tBY\tREASON")
		for _, st := range h {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.1f\t%s\t%s\n", st.Updated.Local().Format(time.DateTime), st.Train, st.Index, st.State, st.Seconds, st.By, oneLine(st.Reason))
		}
		return tw.Flush()
	}

	var sOut string
	show := &cobra.Command{Use: "stop TRAIN", Short: "One stop's record and its history of decisions", Example: examples["station stop"], Args: cobra.ExactArgs(1)}
	checkS := outputFlag(show, &sOut)
	show.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkS(); err != nil {
			return err
		}
		a, closeAdmin, err := f.admin(cmd, false)
		if err != nil {
			return err
		}
		defer closeAdmin()
		st, ev, err := a.Stop(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if sOut == "json" {
			return writeJSON(cmd.OutOrStdout(), map[string]any{"stop": st, "events": ev})
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "train %s stop %d at %s: %s%s\n", st.Train, st.Index, st.Station, st.State, reasonText(st.Reason))
		fmt.Fprintf(w, "  key %s\n  input %s\n  creator %s, route %s\n", st.Key, st.Input, st.Creator, strings.Join(st.Route, " → "))
		if st.Pushed != "" {
			fmt.Fprintf(w, "  pushed %s\n", st.Pushed)
		}
		for _, e := range ev {
			fmt.Fprintf(w, "  %s  %s%s%s\n", e.Time.Local().Format(time.DateTime), e.State, byText(e.By), reasonText(e.Reason))
		}
		return nil
	}

	var rOut string
	results := &cobra.Command{Use: "results TRAIN", Short: "What would leave the station for a stop under review: the results tree with sizes", Example: examples["station results"], Args: cobra.ExactArgs(1)}
	checkR := outputFlag(results, &rOut)
	results.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkR(); err != nil {
			return err
		}
		a, closeAdmin, err := f.admin(cmd, false)
		if err != nil {
			return err
		}
		defer closeAdmin()
		fs, err := a.Results(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if rOut == "json" {
			if fs == nil {
				fs = []station.ResultFile{}
			}
			return writeJSON(cmd.OutOrStdout(), fs)
		}
		var total int64
		for _, e := range fs {
			if e.Dir {
				fmt.Fprintf(cmd.OutOrStdout(), "%12s  %s/\n", "", e.Path)
				continue
			}
			total += e.Size
			fmt.Fprintf(cmd.OutOrStdout(), "%12d  %s\n", e.Size, e.Path)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%12d  total\n", total)
		return nil
	}

	var stOut string
	status := &cobra.Command{Use: "status", Short: "The station at a glance: running, queued, retrying, last poll, counts", Example: examples["station status"], Args: cobra.NoArgs}
	checkSt := outputFlag(status, &stOut)
	status.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkSt(); err != nil {
			return err
		}
		a, closeAdmin, err := f.admin(cmd, false)
		if err != nil {
			return err
		}
		defer closeAdmin()
		st, err := a.Status(cmd.Context())
		if err != nil {
			return err
		}
		if stOut == "json" {
			return writeJSON(cmd.OutOrStdout(), st)
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "station %s (inbox %s)\n", st.Station, st.Inbox)
		if !st.Started.IsZero() {
			fmt.Fprintf(w, "  serving since %s, version %s, last poll %s%s\n", st.Started.Local().Format(time.DateTime), st.Version,
				st.LastPoll.Local().Format(time.DateTime), reasonText(st.LastError))
		} else {
			fmt.Fprintln(w, "  serve is not running")
		}
		if st.Running != nil {
			fmt.Fprintf(w, "  running %s since %s\n", st.Running.Source, st.Running.Time.Local().Format(time.DateTime))
		}
		fmt.Fprintf(w, "  queued %d", st.Queued)
		for _, s := range []station.State{station.Held, station.Review, station.Done, station.Failed, station.Refused, station.Rejected, station.Withheld, station.Interrupted} {
			if n := st.Counts[s]; n > 0 {
				fmt.Fprintf(w, ", %s %d", s, n)
			}
		}
		fmt.Fprintln(w)
		for _, r := range st.Retrying {
			fmt.Fprintf(w, "  retrying %s (attempt %d, next %s): %s\n", r.Tag, r.Attempts, r.Next.Local().Format(time.TimeOnly), oneLine(r.Error))
		}
		return nil
	}
	backup := &cobra.Command{Use: "backup FILE", Short: "Write a consistent copy of the station's database to FILE, while serve runs or not",
		Example: examples["station backup"], Args: cobra.ExactArgs(1)}
	var force bool
	backup.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	backup.RunE = func(cmd *cobra.Command, args []string) error {
		if _, err := os.Stat(args[0]); err == nil && !force {
			return &ExitError{Code: 2, Err: fmt.Errorf("%s exists: --force replaces it", args[0])}
		}
		a, closeAdmin, err := f.admin(cmd, false)
		if err != nil {
			return err
		}
		defer closeAdmin()
		b, ok := a.(interface {
			Backup(context.Context, io.Writer) error
		})
		if !ok {
			return fmt.Errorf("this station cannot back up its database")
		}
		var buf bytes.Buffer
		if err := b.Backup(cmd.Context(), &buf); err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(args[0], buf.Bytes(), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "station database copied to %s (%d bytes)\n", args[0], buf.Len())
		return nil
	}
	return []*cobra.Command{accept, reject, release, withhold, retry, history, show, results, status, backup}
}

func reasonText(r string) string {
	if r == "" {
		return ""
	}
	return ": " + oneLine(r)
}

func byText(by string) string {
	if by == "" {
		return ""
	}
	return " by " + by
}
