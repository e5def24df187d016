package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
)

// trainV1Cmds are the creator's commands for trainyard/v1 trains (the
// default protocol); `train build` and `train results` serve legacy pht-v2.
func trainV1Cmds() []*cobra.Command {
	return []*cobra.Command{newTrainCreateCmd(), newTrainOpenCmd(), newTrainDigestCmd()}
}

func newTrainCreateCmd() *cobra.Command {
	var f trustFlags
	var exec execFlags
	var code, base, creatorID, key, id, to, network, tmp string
	var route []string
	var force bool
	c := &cobra.Command{
		Use:   "create --code DIR --route ST1,ST2,... --creator ID --key FILE.key [--to REF | --network PREFIX]",
		Short: "Create a trainyard/v1 train: seal the code to the route, sign route, code and exec config, push it",
		Example: `  trainyard train create --code ./code --entrypoint /opt/pht_train/aggregate --route hospital-a,hospital-b \
    --creator alice --key alice.key --network 127.0.0.1:5000/net
  TRAINYARD_NETWORK=127.0.0.1:5000/net TRAINYARD_USER=alice TRAINYARD_USER_KEY=alice.key \
    trainyard train create --code ./code --entrypoint /opt/pht_train/aggregate --route hospital-a --id study42`,
		Long: `Create a trainyard/v1 train. Station keys come from the trust directory only;
the train can run only where its approval digest (see "train digest") has
been approved. Without --to, the train goes to the first station's inbox
under --network (TRAINYARD_NETWORK).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if code == "" || creatorID == "" || key == "" || len(route) == 0 {
				return &ExitError{Code: 2, Err: fmt.Errorf("--code, --route, --creator and --key are required")}
			}
			if err := checkTrainDef(code, exec); err != nil {
				return err
			}
			if to == "" {
				if network == "" {
					return &ExitError{Code: 2, Err: fmt.Errorf("give --to or --network")}
				}
				to = station.Network{Prefix: network}.Inbox(route[0])
			}
			k, err := loadPrivateKey(cmd, key)
			if err != nil {
				return err
			}
			store, err := f.store(ctx, cmd)
			if err != nil {
				return err
			}
			rc := newClient(cmd, f.insecure)
			b, err := train.Load(ctx, base, rc)
			if err != nil {
				return err
			}
			built, err := creator.Create(ctx, creator.Options{
				Creator: hardened.Party{ID: creatorID, Key: k, Trust: store},
				Spec:    hardened.Spec{ID: id, Route: route, Exec: exec.config()},
				CodeDir: code, Base: b, TempDir: tmp,
			})
			if err != nil {
				return err
			}
			defer built.Release()
			st := built.Verified.Statement
			if !strings.Contains(to, "@") && !strings.Contains(to[strings.LastIndex(to, "/")+1:], ":") {
				to += ":" + st.ID
			}
			push := rc.PushIfAbsent
			if force {
				push = rc.Push
			}
			dgst, err := push(ctx, built.Image, to)
			if errors.Is(err, registry.ErrExists) {
				return fmt.Errorf("%w: pick another --id, or --force to replace that train", err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "train %s for route %s pushed to %s@%s\n", st.ID, strings.Join(route, ","), to, dgst)
			return nil
		},
	}
	f.add(c)
	exec.add(c)
	c.Flags().StringVar(&code, "code", "", "directory of the train's code, placed at /opt/pht_train")
	c.Flags().StringVar(&base, "base", train.Scratch, "base image: scratch, a registry reference, oci:DIR or a docker tarball")
	c.Flags().StringVar(&creatorID, "creator", envOr("TRAINYARD_USER", ""), "creator's user id in the trust directory (TRAINYARD_USER)")
	c.Flags().StringVar(&key, "key", envOr("TRAINYARD_USER_KEY", ""), "creator's private key file (TRAINYARD_USER_KEY)")
	c.Flags().StringSliceVar(&route, "route", nil, "station ids in order, comma separated")
	c.Flags().StringVar(&id, "id", "", "train id (default random)")
	c.Flags().StringVar(&to, "to", "", "where to push the train (default the first station's inbox)")
	c.Flags().StringVar(&network, "network", envOr("TRAINYARD_NETWORK", ""), "registry prefix of the inboxes (TRAINYARD_NETWORK)")
	c.Flags().StringVar(&tmp, "tmp", "", "directory for temporary files")
	c.Flags().BoolVar(&force, "force", false, "replace a train already pushed under the same tag")
	return c
}

// checkTrainDef catches the two mistakes that would otherwise surface late
// or not at all: a code directory that is not there, and a train without an
// entrypoint (nothing would run, yet the digest would be approvable).
func checkTrainDef(code string, exec execFlags) error {
	if st, err := os.Stat(code); err != nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("--code %s: no such directory", code)}
	} else if !st.IsDir() {
		return &ExitError{Code: 2, Err: fmt.Errorf("--code %s: not a directory", code)}
	}
	if len(exec.entrypoint) == 0 && len(exec.cmd) == 0 {
		return &ExitError{Code: 2, Err: fmt.Errorf("--entrypoint is required (what the train runs, e.g. /opt/pht_train/main); approvals cover it")}
	}
	return nil
}

func newTrainOpenCmd() *cobra.Command {
	var f trustFlags
	var user, key, out, tmp, output string
	var checkOutput func() error
	c := &cobra.Command{
		Use:   "open IMAGE --creator ID --key FILE.key --out DIR",
		Short: "Verify a finished trainyard/v1 train from its first stop and decrypt its results into DIR",
		Example: `  trainyard train open 127.0.0.1:5000/net/users/alice:study42 --creator alice --key alice.key --out ./results
  trainyard train open oci:./study42 --creator alice --key alice.key --out ./results -o json | jq .stops`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if user == "" || key == "" || out == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--creator, --key and --out are required")}
			}
			if err := checkOutput(); err != nil {
				return err
			}
			k, err := loadPrivateKey(cmd, key)
			if err != nil {
				return err
			}
			store, err := f.store(ctx, cmd)
			if err != nil {
				return err
			}
			client := newClient(cmd, f.insecure)
			img, err := train.Load(ctx, args[0], client)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			v, err := creator.OpenResults(ctx, hardened.Party{ID: user, Key: k, Trust: store}, img, out, creator.WithOpenTempDir(tmp), creator.WithOpenProgress(client.Progress()))
			if err != nil {
				return err
			}
			if output == "json" {
				f := trainFacts(v.Statement, v.Stops)
				return writeJSON(cmd.OutOrStdout(), OpenedTrain{ID: f.ID, TrainDigest: v.TrainDigest, Creator: f.Creator,
					Route: f.Route, Stops: f.Stops, Complete: v.Complete(), Approval: v.Approval.Digest, ResultsDir: out})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "train %s verified over %d stops; results in %s\n", v.Statement.ID, len(v.Stops), out)
			return nil
		},
	}
	f.add(c)
	checkOutput = outputFlag(c, &output)
	c.Flags().StringVar(&user, "creator", envOr("TRAINYARD_USER", ""), "creator's user id (TRAINYARD_USER)")
	c.Flags().StringVar(&key, "key", envOr("TRAINYARD_USER_KEY", ""), "creator's private key file (TRAINYARD_USER_KEY)")
	c.Flags().StringVar(&out, "out", "", "directory for the decrypted results (must be empty)")
	c.Flags().StringVar(&tmp, "tmp", "", "directory for temporary files")
	return c
}

func newTrainDigestCmd() *cobra.Command {
	var exec execFlags
	var code, base, output string
	var insecure bool
	var checkOutput func() error
	c := &cobra.Command{
		Use:   "digest --code DIR --entrypoint PATH [exec flags] [--base IMAGE]",
		Short: "Print the approval digest of a train definition (code tree, exec config, base), what approvers sign",
		Example: `  trainyard train digest --code ./code --entrypoint /opt/pht_train/aggregate
  trainyard train digest --code ./code --entrypoint /opt/pht_train/aggregate --base oci:./base:3.19 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if code == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--code is required")}
			}
			if err := checkTrainDef(code, exec); err != nil {
				return err
			}
			if err := checkOutput(); err != nil {
				return err
			}
			b, err := train.Load(cmd.Context(), base, newClient(cmd, insecure))
			if err != nil {
				return err
			}
			d, err := creator.ApprovalDigest(cmd.Context(), code, exec.config(), b)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), TrainDigest{Digest: d, Code: code, Base: base, Entrypoint: exec.entrypoint, Cmd: exec.cmd})
			}
			fmt.Fprintln(cmd.OutOrStdout(), d)
			return nil
		},
	}
	exec.add(c)
	checkOutput = outputFlag(c, &output)
	registryFlags(c, &insecure)
	c.Flags().StringVar(&code, "code", "", "directory of the train's code")
	c.Flags().StringVar(&base, "base", train.Scratch, "base image: scratch, a registry reference, oci:DIR or a docker tarball")
	return c
}
