package cli

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
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

var protocolExamples = map[string]string{
	"pre-run": `  STATION_ID=s1 PRIVATE_KEY_PATH=s1.pem trainyard protocol pre-run localhost:5000/station/t1:latest --out oci:./t1
  trainyard protocol pre-run docker-archive:t1.tar --station-id s1 --private-key s1.pem --out ./t1-pre.tar
  STATION_ID=s1 PRIVATE_KEY_PATH=s1.pem trainyard protocol pre-run docker-daemon:t1:latest`,
	"post-run": `  STATION_ID=s1 PRIVATE_KEY_PATH=s1.pem trainyard protocol post-run oci:./t1 --out localhost:5000/station/t1:latest
  STATION_ID=s1 PRIVATE_KEY_PATH=s1.pem trainyard protocol post-run docker-daemon:t1:latest --rebase`,
}

func protocolStep(use, short string, step phtv2.Step) *cobra.Command {
	var stationID, keyPath, keyPassword, out, tmpDir, baseLoc string
	var insecure, rebase bool
	c := &cobra.Command{
		Use:   use + " IMAGE",
		Short: short,
		Long: short + `.

IMAGE and --out are a registry reference, oci:DIR (OCI image layout), a
docker save tarball (docker-archive:FILE or FILE.tar) or an image of the
local Docker Engine (docker-daemon:REPO:TAG, or a plain REPO:TAG the engine
holds when DOCKER_HOST is set or /var/run/docker.sock exists: then the
image is modified in place, as the PHT protocol container does). The
result goes to --out (default: IMAGE itself). pre-run output is decrypted
and never goes to a registry: use the engine, oci:DIR or a tarball. On any
refusal nothing is written.

post-run never leaves plaintext in any layer: layers a run committed on top
of the state layer are folded into the new state, and layers with train
files below it (a PHT image post-run without --rebase) are dropped, keeping
the base layers under them. --rebase puts the new state on the train's
base image instead (--base, default REPO:base of IMAGE) and, like the PHT
container, writes REPO:latest unless --out is given.`,
		Example: protocolExamples[use],
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if stationID == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("no station id: set STATION_ID or --station-id")}
			}
			if keyPath == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("no private key: set PRIVATE_KEY_PATH or --private-key")}
			}
			in := train.ResolveLocal(cmd.Context(), args[0])
			dst := out
			if dst == "" {
				dst = in
			}
			for _, loc := range []string{in, dst} {
				if _, err := train.ParseImageLocation(loc); err != nil {
					return &ExitError{Code: 2, Err: err}
				}
			}
			if kind, _ := train.ParseLocation(dst); use == "pre-run" && kind == "registry" {
				// The pre-run image holds the decrypted train and results:
				// it never goes to a registry (phtv2.Run refuses it too).
				return &ExitError{Code: 2, Err: fmt.Errorf("pre-run output is decrypted: write it with --out to oci:DIR, FILE.tar or docker-daemon:REF, not to registry %s (an image the local Docker Engine holds is used in place: is DOCKER_HOST set?)", dst)}
			}
			key, err := phtv2.LoadPrivateKeyFile(keyPath, []byte(keyPassword))
			if err != nil {
				return err
			}
			st := phtv2.Station{ID: stationID, Key: key}
			client := newClient(cmd, insecure)
			opts := []phtv2.Option{phtv2.WithTempDir(tmpDir)}
			if use == "post-run" && (rebase || baseLoc != "") {
				b, latest, err := rebaseLocations(in, baseLoc)
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				if out == "" && latest != "" {
					dst = latest
				}
				b = train.ResolveLocal(cmd.Context(), b)
				baseImg, err := train.Load(cmd.Context(), b, client)
				if err != nil {
					return fmt.Errorf("rebase: base image %s: %w", b, err)
				}
				opts = append(opts, phtv2.WithBase(baseImg))
			}
			cfg, digest, err := phtv2.Run(cmd.Context(), step, in, dst, st, client, opts...)
			if err != nil {
				return fmt.Errorf("%s %s: %w", use, args[0], err)
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
	if use == "post-run" {
		f.BoolVar(&rebase, "rebase", false, "put the sealed state on the train's base image (--base) and write REPO:latest, like the PHT protocol container")
		f.StringVar(&baseLoc, "base", envOr("TRAINYARD_BASE", ""), "base image for --rebase (default: REPO:base of IMAGE; required for oci:DIR and tarballs)")
	}
	registryFlags(c, &insecure)
	return c
}

// rebaseLocations picks the base image of a --rebase and the REPO:latest
// the PHT container writes, from IMAGE's repository when it is a reference.
func rebaseLocations(image, base string) (baseLoc, latest string, err error) {
	kind, p := train.ParseLocation(image)
	prefix := ""
	if kind == "daemon" {
		// In the engine, as the PHT container: REPO:latest from REPO:base.
		prefix, kind = train.DaemonPrefix, "registry"
	}
	if kind != "registry" {
		if base == "" {
			return "", "", fmt.Errorf("--rebase of %s needs --base (no repository to find REPO:base in)", image)
		}
		return base, "", nil
	}
	if _, err := name.ParseReference(p); err != nil {
		return "", "", fmt.Errorf("--rebase: %w", err)
	}
	// Keep the user's spelling of the repository (a local engine knows
	// "train:x", not "index.docker.io/library/train:x").
	repo := p
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	} else if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	if base == "" {
		base = prefix + repo + ":base"
	}
	return base, prefix + repo + ":latest", nil
}
