package cli

import (
	"io"
	"strconv"

	"github.com/spf13/cobra"
)

// addProgressFlag registers the persistent --progress flag on the root.
// Bars go to stderr, only when it is a terminal and a transfer is at least
// registry.ProgressMin (4 MiB); --progress=false or TRAINYARD_PROGRESS=0
// silences them.
func addProgressFlag(root *cobra.Command) {
	root.PersistentFlags().Bool("progress", true, "progress bars on stderr for transfers of 4 MiB or more, when stderr is a terminal (TRAINYARD_PROGRESS=0 silences)")
}

// progressEnabled is false when --progress=false or TRAINYARD_PROGRESS is
// false (0, false, ...); an explicit --progress wins over the variable.
func progressEnabled(cmd *cobra.Command) bool {
	if f := cmd.Flag("progress"); f != nil && f.Changed {
		on, err := strconv.ParseBool(f.Value.String())
		return err == nil && on
	}
	if v := envOr("TRAINYARD_PROGRESS", ""); v != "" {
		on, err := strconv.ParseBool(v)
		return err != nil || on
	}
	return true
}

// progressWriter is where a command draws progress bars: its stderr, or nil
// when progress is off (the libraries draw only on a terminal anyway).
func progressWriter(cmd *cobra.Command) io.Writer {
	if !progressEnabled(cmd) {
		return nil
	}
	return cmd.ErrOrStderr()
}
