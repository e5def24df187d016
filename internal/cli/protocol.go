package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/protocol/phtv2"
	"github.com/trainyard/trainyard/train"
)

func init() { register(newProtocolCmd) }

// newProtocolCmd is the PHT protocol container's contract:
// `pre-run|post-run IMAGE` with STATION_ID, PRIVATE_KEY_PATH and
// PRIVATE_KEY_PASSWORD from the environment.
func newProtocolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "protocol",
		Short: "Legacy PHT train protocol (pht-v2): pre-run and post-run on a train image, no Docker engine needed",
	}
	cmd.AddCommand(
		protocolStep("pre-run", "Verify a train and decrypt its files and previous results for this station", phtv2.PreRun),
		protocolStep("post-run", "Hash, sign and re-encrypt a train's results after a run at this station", phtv2.PostRun),
	)
	return cmd
}

func protocolStep(use, short string, step phtv2.Step) *cobra.Command {
	var stationID, keyPath, keyPassword, out, tmpDir string
	var insecure, rebase bool
	c := &cobra.Command{
		Use:   use + " IMAGE",
		Short: short,
		Long: short + `.

IMAGE and --out are a registry reference, oci:DIR (OCI image layout) or a
docker save tarball (docker-archive:FILE or FILE.tar). The result replaces
the train's state layer and goes to --out (default: IMAGE itself; pre-run
of a registry image needs an explicit --out because its output is
decrypted). On any refusal nothing is written.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if stationID == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("no station id: set STATION_ID or --station-id")}
			}
			if keyPath == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("no private key: set PRIVATE_KEY_PATH or --private-key")}
			}
			if kind, _ := train.ParseLocation(args[0]); use == "pre-run" && out == "" && kind == "registry" {
				// The pre-run image holds the decrypted train and results:
				// never push it back to a shared registry implicitly.
				return &ExitError{Code: 2, Err: fmt.Errorf("pre-run output is decrypted: choose where it goes with --out (oci:DIR, FILE.tar, or a registry ref you trust)")}
			}
			key, err := phtv2.LoadPrivateKeyFile(keyPath, []byte(keyPassword))
			if err != nil {
				return err
			}
			st := phtv2.Station{ID: stationID, Key: key}
			cfg, digest, err := phtv2.Run(cmd.Context(), step, args[0], out, st, newClient(cmd, insecure), phtv2.WithTempDir(tmpDir))
			if err != nil {
				return fmt.Errorf("%s %s: %w", use, args[0], err)
			}
			dst := out
			if dst == "" {
				dst = args[0]
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s ok: train %s at station %s -> %s@%s\n", use, cfg.ID, stationID, dst, digest)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&stationID, "station-id", envOr("STATION_ID", ""), "this station's id in the route (STATION_ID)")
	f.StringVar(&keyPath, "private-key", envOr("PRIVATE_KEY_PATH", ""), "station RSA private key PEM, PKCS#1 or PKCS#8, optionally encrypted (PRIVATE_KEY_PATH)")
	f.StringVar(&keyPassword, "private-key-password", envOr("PRIVATE_KEY_PASSWORD", ""), "password of an encrypted private key (PRIVATE_KEY_PASSWORD)")
	f.StringVar(&out, "out", envOr("TRAINYARD_OUT", ""), "where the result image goes: registry ref, oci:DIR or docker tarball (default: IMAGE)")
	f.StringVar(&tmpDir, "tmp-dir", envOr("TRAINYARD_TMPDIR", ""), "directory for spooled files and the new layer (default: system temp)")
	f.BoolVar(&rebase, "rebase", false, "accepted for compatibility with the PHT protocol container; trainyard always replaces the state layer")
	registryFlags(c, &insecure)
	return c
}
