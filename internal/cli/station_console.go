package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/station/console"
)

// consoleTokenFile is where the web console's login token is kept.
func (f *stationFlags) consoleTokenFile() string { return filepath.Join(f.state(), "console.token") }

// newStationConsoleTokenCmd prints the console's login token, making one
// on first use; --rotate replaces it, which ends every console session.
func newStationConsoleTokenCmd(f *stationFlags) *cobra.Command {
	var rotate bool
	c := &cobra.Command{
		Use:   "console-token",
		Short: "Print the token that logs in to the station's web console (made on first use)",
		Long: `Print the token that logs in to the station's web console, served by
station serve on its status listener. The token is kept in
STATE-DIR/console.token (0600, readable by the station's user only) and made
on first use; --rotate makes a new one, and every console session logged in
with the old one ends at its next request.`,
		Example: `  trainyard station console-token --id hospital-a
  trainyard station console-token --state-dir /var/lib/trainyard/station-hospital-a --rotate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.id == "" && f.stateDir == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--id or --state-dir is required")}
			}
			if fi, err := os.Stat(f.state()); err != nil || !fi.IsDir() {
				return fmt.Errorf("no station state at %s (is --id or --state-dir right? station serve makes it)", f.state())
			}
			tok, err := console.Token(f.consoleTokenFile(), rotate)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			if rotate {
				fmt.Fprintln(cmd.ErrOrStderr(), "the old console token no longer works: its sessions end at their next request")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&rotate, "rotate", false, "replace the token with a new one (logs every console session out)")
	return c
}
