package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/protocol/phtv2"
	"github.com/trainyard/trainyard/train"
)

func init() { register(newTrainCmd) }

func newTrainCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "train", Short: "Create trains (trainyard/v1: create, digest, open; legacy PHT: build, keygen, show, results, check-base)"}
	cmd.AddCommand(newTrainBuildCmd(), newTrainKeygenCmd(), newTrainShowCmd(), newTrainResultsCmd(), newTrainCheckBaseCmd())
	cmd.AddCommand(trainV1Cmds()...)
	cmd.AddCommand(newTrainStatusCmd())
	return cmd
}

func newTrainBuildCmd() *cobra.Command {
	var dir, base, creatorKey, creatorID, trainID, proposalID, entry, command, queryPath, out, tmpDir string
	var routes []string
	var insecure bool
	c := &cobra.Command{
		Use:   "build --dir CODE --base IMAGE --route ID=PUBKEY.pem,... --creator-key KEY.pem --out IMAGE",
		Short: "Build a PHT-format train (pht-train-container-library compatible)",
		Example: `  trainyard train keygen s1 && trainyard train keygen user
  trainyard train build --dir ./code --base scratch --route s1=s1.pub.pem,s2=s2.pub.pem \
    --creator-key user.pem --train-id t1 --out localhost:5000/station/t1:latest
  trainyard train build --dir ./code --base python:3.12-slim --cmd python --entrypoint main.py \
    --route s1=s1.pub.pem --creator-key user.pem --out oci:./t1:latest`,
		Long: `Build a PHT-format train like the PHT central builder: the code under --dir is
encrypted into /opt/pht_train, train_config.json carries the route, the
creator's signature over the immutable hash and a one-off builder signature;
the symmetric key is wrapped for the first station. --base is a registry
reference, oci:DIR, a docker tarball or "scratch".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || creatorKey == "" || out == "" || len(routes) == 0 {
				return &ExitError{Code: 2, Err: fmt.Errorf("--dir, --route, --creator-key and --out are required")}
			}
			key, err := phtv2.LoadPrivateKeyFile(creatorKey, []byte(os.Getenv("PRIVATE_KEY_PASSWORD")))
			if err != nil {
				return err
			}
			spec := phtv2.BuildSpec{Dir: dir, Entrypoint: entry, CreatorID: creatorID, CreatorKey: key, ProposalID: proposalID, TrainID: trainID}
			if command != "" {
				spec.Command = strings.Fields(command)
			}
			if queryPath != "" {
				if spec.Query, err = os.ReadFile(queryPath); err != nil {
					return err
				}
			}
			for _, r := range routes {
				id, p, ok := strings.Cut(r, "=")
				if !ok || id == "" || p == "" {
					return &ExitError{Code: 2, Err: fmt.Errorf("--route %q: want STATION_ID=PUBLIC_KEY.pem", r)}
				}
				pub, err := phtv2.LoadPublicKeyFile(p)
				if err != nil {
					return err
				}
				spec.Route = append(spec.Route, phtv2.RouteStop{Station: id, PublicKey: pub})
			}
			spec.Source = baseSource(base)
			client := newClient(cmd, insecure)
			baseImg, err := train.Load(cmd.Context(), train.ResolveLocal(cmd.Context(), base), client)
			if err != nil {
				return err
			}
			res, err := phtv2.Build(cmd.Context(), baseImg, spec, phtv2.WithTempDir(tmpDir))
			if err != nil {
				return fmt.Errorf("build: %w", err)
			}
			defer res.Close()
			if err := train.Save(cmd.Context(), res.Image, out, client); err != nil {
				return err
			}
			d, _ := res.Image.Digest()
			fmt.Fprintf(cmd.OutOrStdout(), "built train %s (%d files, %d stops) -> %s@%s\n", res.Config.ID, len(res.Config.FileList), len(res.Config.Route), out, d)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&dir, "dir", "", "directory with the train code")
	f.StringVar(&base, "base", "scratch", "base image: registry ref, oci:DIR, docker tarball or scratch")
	f.StringSliceVar(&routes, "route", nil, "route in order, STATION_ID=PUBLIC_KEY.pem (repeat or comma-separate)")
	f.StringVar(&creatorKey, "creator-key", "", "creator RSA private key PEM (signs the hash, receives the results)")
	f.StringVar(&creatorID, "creator-id", "creator", "creator.id")
	f.StringVar(&trainID, "train-id", "train", "train id (@id)")
	f.StringVar(&proposalID, "proposal-id", "1", "proposal id")
	f.StringVar(&entry, "entrypoint", "", "file under --dir that CMD runs (default entrypoint.py or main.py)")
	f.StringVar(&command, "cmd", "python", "command (and args) that runs the entrypoint")
	f.StringVar(&queryPath, "query", "", "query.json to ship encrypted with the train")
	f.StringVar(&out, "out", "", "where the train goes: registry ref, oci:DIR or docker tarball")
	f.StringVar(&tmpDir, "tmp-dir", envOr("TRAINYARD_TMPDIR", ""), "directory for temporary files")
	registryFlags(c, &insecure)
	return c
}

// baseSource is config.source for a train built on base, the way the PHT
// builder names its master image: repository address and tag.
func baseSource(base string) *train.Source {
	src := &train.Source{Type: "docker_repository", Address: base}
	kind, p := train.ParseLocation(base)
	if kind == "scratch" {
		src.Address = train.Scratch
		return src
	}
	if kind != "registry" && kind != "daemon" {
		return src
	}
	ref, err := name.ParseReference(p)
	if err != nil {
		return src
	}
	src.Address = ref.Context().Name()
	id := ref.Identifier()
	src.Tag = &id
	return src
}

func newTrainKeygenCmd() *cobra.Command {
	var bits int
	c := &cobra.Command{
		Use:   "keygen PREFIX",
		Short: "Make an RSA key pair for a station or creator: PREFIX.pem (PKCS#8) and PREFIX.pub.pem (SPKI)",
		Example: `  trainyard train keygen s1
  trainyard train keygen --bits 4096 creator`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			priv, pub, err := phtv2.GenerateKeyPEM(bits)
			if err != nil {
				return err
			}
			if err := fsutil.WriteFileAtomic(args[0]+".pem", priv, 0o600); err != nil {
				return err
			}
			if err := fsutil.WriteFileAtomic(args[0]+".pub.pem", pub, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s.pem and %s.pub.pem\n", args[0], args[0])
			return nil
		},
	}
	c.Flags().IntVar(&bits, "bits", 2048, "RSA key size")
	return c
}

func newTrainCheckBaseCmd() *cobra.Command {
	var master string
	var insecure bool
	c := &cobra.Command{
		Use:   "check-base IMAGE --master REF",
		Short: "Check that a PHT train is its master image plus train files only (validate_master_image, daemonless)",
		Example: `  trainyard train check-base localhost:5000/station/t1:latest --master localhost:5000/master/python:3.12
  trainyard train check-base oci:./t1 --master docker-archive:master.tar`,
		Long: `Check that IMAGE is MASTER's layers, unchanged and in order, plus layers
that only touch /opt/pht_train, /opt/pht_results, /opt/train_config.json and
/opt/user_sym_key.key (exact path boundaries; no whiteouts of master files,
no symlinked /opt), and that its config equals the master's except CMD.
Both are registry refs, oci:DIR, docker tarballs or engine images. Exit 0
when it holds, 1 with the first violation otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if master == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--master is required")}
			}
			client := newClient(cmd, insecure)
			img, err := train.Load(cmd.Context(), train.ResolveLocal(cmd.Context(), args[0]), client)
			if err != nil {
				return err
			}
			m, err := train.Load(cmd.Context(), train.ResolveLocal(cmd.Context(), master), client)
			if err != nil {
				return fmt.Errorf("master %s: %w", master, err)
			}
			if err := train.CheckBase(cmd.Context(), img, m); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is built on %s\n", args[0], master)
			return nil
		},
	}
	c.Flags().StringVar(&master, "master", "", "the master image the train must be built on")
	registryFlags(c, &insecure)
	return c
}

func newTrainShowCmd() *cobra.Command {
	var insecure bool
	var output string
	var checkOutput func() error
	c := &cobra.Command{
		Use:   "show IMAGE",
		Short: "Print a train's public facts (trainyard/v1: id, creator, route, stops; pht-v2: train_config.json), no keys needed",
		Long: `Print what a train's config says about it, for either protocol, without any key.
A trainyard/v1 train shows its id, creator, route, finished stops and approval
digest from the signed envelope, but show checks no signature: "train open"
and the stations verify. A pht-v2 train prints its train_config.json.
IMAGE is ` + imageLocationHelp + `.`,
		Example: `  trainyard train show 127.0.0.1:5000/net/users/alice:t1
  trainyard train show oci:./t1 -o json | jq -r '.stops[].station'
  trainyard train show localhost:5000/station/t1:latest   # a pht-v2 train`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(); err != nil {
				return err
			}
			img, err := train.Load(cmd.Context(), train.ResolveLocal(cmd.Context(), args[0]), newClient(cmd, insecure))
			if err != nil {
				return err
			}
			raw, err := train.ReadFile(cmd.Context(), img, train.ConfigPath, train.MaxConfigSize)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if hardened.IsEnvelope(raw) {
				return showV1(w, raw, output)
			}
			cfg, err := train.ParseConfig(raw)
			if err != nil {
				return err
			}
			out, err := cfg.Marshal()
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(w, struct {
					Protocol string          `json:"protocol"`
					ID       string          `json:"id"`
					Config   json.RawMessage `json:"config"`
				}{"pht-v2", cfg.ID, out})
			}
			fmt.Fprintln(w, string(out))
			return nil
		},
	}
	checkOutput = outputFlag(c, &output)
	registryFlags(c, &insecure)
	return c
}

// showV1 prints a trainyard/v1 envelope's public facts; nothing is verified.
func showV1(w io.Writer, raw []byte, output string) error {
	env, err := hardened.ParseEnvelope(raw)
	if err != nil {
		return err
	}
	st, stops, err := env.Unverified()
	if err != nil {
		return err
	}
	f := trainFacts(st, stops)
	if output == "json" {
		return writeJSON(w, f)
	}
	fmt.Fprintf(w, "train      %s (%s; signatures not checked: train open verifies)\n", f.ID, f.Protocol)
	fmt.Fprintf(w, "creator    %s\ncreated    %s\n", f.Creator, f.Created.Format(time.RFC3339))
	fmt.Fprintf(w, "route      %s\n", strings.Join(f.Route, " -> "))
	fmt.Fprintf(w, "stops      %d of %d\n", len(f.Stops), len(f.Route))
	for _, s := range f.Stops {
		fmt.Fprintf(w, "  %d %s %s\n", s.Index, s.Station, s.Time.Format(time.RFC3339))
	}
	if f.Next != "" {
		fmt.Fprintf(w, "next       %s\n", f.Next)
	}
	fmt.Fprintf(w, "approval   %s\nentrypoint %s\n", f.Approval, strings.Join(f.Entrypoint, " "))
	if f.Base != "" {
		fmt.Fprintf(w, "base       %s\n", f.Base)
	}
	return nil
}

func newTrainResultsCmd() *cobra.Command {
	var keyPath, keyPassword, dir, tmpDir, paillierPath string
	var insecure bool
	c := &cobra.Command{
		Use:   "results IMAGE --key CREATOR.pem --dir OUT [--paillier-key KEY.json]",
		Short: "Decrypt a finished train's results with the creator's key and check them",
		Example: `  trainyard train results localhost:5000/station/t1:latest --key user.pem --dir ./results
  PRIVATE_KEY_PATH=user.pem trainyard train results oci:./t1 --dir ./results --paillier-key paillier.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" || dir == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--key and --dir are required")}
			}
			key, err := phtv2.LoadPrivateKeyFile(keyPath, []byte(keyPassword))
			if err != nil {
				return err
			}
			var pk *phtv2.PaillierKey
			if paillierPath != "" {
				// Read before any result is written: a bad key fails first.
				if pk, err = phtv2.LoadPaillierKeyFile(paillierPath); err != nil {
					return fmt.Errorf("--paillier-key %s: %w", paillierPath, err)
				}
			}
			img, err := train.Load(cmd.Context(), train.ResolveLocal(cmd.Context(), args[0]), newClient(cmd, insecure))
			if err != nil {
				return err
			}
			cfg, err := phtv2.DecryptResults(cmd.Context(), img, key, dir, phtv2.WithTempDir(tmpDir))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "results of train %s decrypted into %s (result hash verified)\n", cfg.ID, dir)
			if pk != nil {
				n, err := phtv2.DecryptHEFiles(dir, pk)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d *.he.json file(s) Paillier-decrypted into *.json beside them\n", n)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&keyPath, "key", envOr("PRIVATE_KEY_PATH", ""), "creator RSA private key PEM (PRIVATE_KEY_PATH)")
	f.StringVar(&keyPassword, "key-password", envOr("PRIVATE_KEY_PASSWORD", ""), "password of an encrypted key (PRIVATE_KEY_PASSWORD)")
	f.StringVar(&dir, "dir", "", "directory to write the decrypted results to")
	f.StringVar(&tmpDir, "tmp-dir", envOr("TRAINYARD_TMPDIR", ""), "directory for temporary files")
	f.StringVar(&paillierPath, "paillier-key", envOr("PAILLIER_KEY_PATH", ""), `Paillier private key JSON ({"n","lambda","mu"} or {"p","q"}): decrypt every number of *.he.json results into NAME.json (PAILLIER_KEY_PATH)`)
	registryFlags(c, &insecure)
	return c
}
