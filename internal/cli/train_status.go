package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/station"
)

func newTrainStatusCmd() *cobra.Command {
	var f trustFlags
	var user, network, output string
	var checkOutput func() error
	c := &cobra.Command{
		Use:   "status ID --creator ID --network PREFIX",
		Short: "Show where a trainyard/v1 train is and every stop's outcome, from signed stop records and stop notices",
		Example: `  trainyard train status study42 --creator alice --network 127.0.0.1:5000/net
  TRAINYARD_NETWORK=127.0.0.1:5000/net TRAINYARD_USER=alice trainyard train status study42 -o json | jq -r '.stops[] | .station + " " + .state'`,
		Long: `Show where train ID of the creator is: home (in the creator's outbox, the
route complete), in the inbox of the station it waits for, or unknown. The
train is verified from its first stop against the trust directory; done
stops come from the stations' signed stop records, and a stop that ended
without one shows the outcome and reason its station signed in a notice
(failed, refused, rejected, withheld). Only the train's envelope is read,
not its code or results; no key is needed. See docs/train-status.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if user == "" || network == "" {
				return &ExitError{Code: 2, Err: errors.New("--creator (TRAINYARD_USER) and --network (TRAINYARD_NETWORK) are required")}
			}
			if err := checkOutput(); err != nil {
				return err
			}
			store, err := f.store(ctx, cmd)
			if err != nil {
				return err
			}
			// Every station of the directory is a place the train may wait:
			// before a copy verifies, its route is not known.
			if _, err := store.Client().PullMetadata(ctx); err != nil {
				return err
			}
			names, err := store.Client().TargetNames()
			if err != nil {
				return err
			}
			var stations []string
			for _, n := range names {
				if id, ok := strings.CutPrefix(n, "stations/"); ok {
					stations = append(stations, strings.TrimSuffix(id, ".pem"))
				}
			}
			id := args[0]
			s, err := creator.Status(ctx, station.Outbox{Client: newClient(cmd, f.insecure), Network: station.Network{Prefix: network}, User: user}, store, id, creator.WithStations(stations...))
			if err != nil {
				return err
			}
			if !s.Found() {
				if len(s.Warnings) > 0 {
					return fmt.Errorf("train %s: no copy found is a verified train of %s, and no station sent a notice: %s", escapeLine(id), escapeLine(user), escapeLine(s.Warnings[0]))
				}
				return fmt.Errorf("train %s not found: not in %s's outbox, in no inbox of the %d stations of the trust directory, and no notice about it",
					escapeLine(id), escapeLine(user), len(stations))
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			for _, w := range s.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", escapeLine(w))
			}
			printStatus(cmd.OutOrStdout(), s)
			return nil
		},
	}
	f.add(c)
	checkOutput = outputFlag(c, &output)
	c.Flags().StringVar(&user, "creator", envOr("TRAINYARD_USER", ""), "creator's user id, whose outbox holds finished trains and notices (TRAINYARD_USER)")
	c.Flags().StringVar(&network, "network", envOr("TRAINYARD_NETWORK", ""), "registry prefix of the inboxes and outboxes (TRAINYARD_NETWORK)")
	return c
}

// printStatus writes a first line saying where the train is, then one line
// per stop: station, position, state, then the time or the station's reason.
func printStatus(w io.Writer, s *creator.TrainStatus) {
	id := escapeLine(s.Train)
	switch {
	case s.Where == creator.Home:
		fmt.Fprintf(w, "train %s is home: route of %d stops complete, in %s\n", id, len(s.Route), s.Ref)
	case strings.HasPrefix(s.Where, "station:"):
		st := strings.TrimPrefix(s.Where, "station:")
		pos := 0
		for _, x := range s.Stops {
			if x.Station == st {
				pos = x.Index
			}
		}
		fmt.Fprintf(w, "train %s is in the inbox of station %s (stop %d of %d)\n", id, escapeLine(st), pos, len(s.Route))
	default:
		fmt.Fprintf(w, "train %s: where it is is unknown (no copy verifies); what stations said:\n", id)
	}
	width := 0
	for _, x := range s.Stops {
		width = max(width, len(x.Station))
	}
	for _, x := range s.Stops {
		pos := fmt.Sprint(x.Index)
		if x.Index < 0 {
			pos = "?"
		}
		line := fmt.Sprintf("%-*s  stop %s  %s", width, escapeLine(x.Station), pos, escapeLine(x.State))
		at := ""
		if !x.Time.IsZero() {
			at = x.Time.UTC().Format(time.RFC3339)
		}
		switch {
		case x.State == creator.StateDone || x.State == creator.StateWaiting || x.State == creator.StatePending:
			if at != "" {
				line += "  " + at
			}
		default:
			if x.Reason != "" {
				line += "  " + escapeLine(x.Reason)
			}
			if at != "" {
				line += " (" + at + ")"
			}
		}
		fmt.Fprintln(w, line)
	}
}

// escapeLine defuses what a signer wrote (a station's reason, a train id)
// for one terminal line: controls, format characters and newlines escaped.
func escapeLine(s string) string {
	var b strings.Builder
	station.EscapeLog(&b, strings.NewReader(s))
	return strings.NewReplacer("\n", `\x0a`, "\t", `\x09`).Replace(b.String())
}
