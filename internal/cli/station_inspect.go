package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

// newStationInspectCmd is a placeholder until `station inspect` lands.
func newStationInspectCmd(_ *stationFlags) *cobra.Command {
	return &cobra.Command{Use: "inspect IMAGE", Short: "Verify a train at this station without running it", Hidden: true,
		RunE: func(*cobra.Command, []string) error { return errors.New("station inspect: not built yet") }}
}
