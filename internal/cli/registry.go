package cli

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/registry/server"
)

func init() { register(newRegistryCmd) }

func newRegistryCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "The embedded OCI registry"}
	var addr, data string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve an OCI registry (distribution/v3, filesystem storage) until SIGINT/SIGTERM",
		Example: `  trainyard registry serve
  trainyard registry serve --addr 127.0.0.1:5000 --data ./trainyard-registry
  TRAINYARD_REGISTRY_ADDR=0.0.0.0:5000 trainyard registry serve --data /var/lib/trainyard-registry`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return server.Serve(cmd.Context(), addr, data, func(a net.Addr) {
				fmt.Fprintf(cmd.OutOrStdout(), "registry listening on %s, data in %s\n", a, data)
			})
		},
	}
	serve.Flags().StringVar(&addr, "addr", envOr("TRAINYARD_REGISTRY_ADDR", "127.0.0.1:5000"), "listen address (TRAINYARD_REGISTRY_ADDR)")
	serve.Flags().StringVar(&data, "data", envOr("TRAINYARD_REGISTRY_DATA", "trainyard-registry"), "data directory (TRAINYARD_REGISTRY_DATA)")
	cmd.AddCommand(serve)
	return cmd
}

// registryFlags adds the client flags every registry-facing command shares.
func registryFlags(cmd *cobra.Command, insecure *bool) {
	cmd.Flags().BoolVar(insecure, "insecure", envOr("TRAINYARD_INSECURE", "") != "", "allow plain HTTP and unverified TLS registries (TRAINYARD_INSECURE=1)")
}

// newClient builds a registry client for a command.
func newClient(cmd *cobra.Command, insecure bool) *registry.Client {
	return registry.NewClient(registry.WithInsecure(insecure), registry.WithProgress(progressWriter(cmd)))
}
