package cli

import (
	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/demo"
)

func init() { register(newDemoCmd) }

func newDemoCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole trainyard story on embedded defaults, printing each step",
		Example: `  trainyard demo
  trainyard demo --dir ./demo-state`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo.Run(cmd.Context(), demo.Options{Dir: dir, Out: cmd.OutOrStdout()})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", envOr("TRAINYARD_DEMO_DIR", ""), "keep demo state here instead of a temp dir (TRAINYARD_DEMO_DIR)")
	return cmd
}
