package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf/repo"
)

func init() { register(newTrustCmd) }

// trustFlags locate the trust directory, for its admin and its readers.
type trustFlags struct {
	repo, adminDir, dir, root string
	insecure                  bool
}

func (f *trustFlags) add(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.StringVar(&f.repo, "trust-repo", envOr("TRAINYARD_TRUST_REPO", ""), "registry repository of the trust directory, e.g. 127.0.0.1:5000/trainyard/trust (TRAINYARD_TRUST_REPO)")
	p.StringVar(&f.adminDir, "trust-admin-dir", envOr("TRAINYARD_TRUST_ADMIN_DIR", "trainyard-trust-admin"), "the directory admin's TUF keys and working metadata (TRAINYARD_TRUST_ADMIN_DIR)")
	p.StringVar(&f.dir, "trust-dir", envOr("TRAINYARD_TRUST_DIR", "trainyard-trust"), "trusted TUF metadata of this reader (TRAINYARD_TRUST_DIR)")
	p.StringVar(&f.root, "trust-root", envOr("TRAINYARD_TRUST_ROOT", ""), "root.json to bootstrap a reader the first time (TRAINYARD_TRUST_ROOT)")
	p.BoolVar(&f.insecure, "insecure", envOr("TRAINYARD_INSECURE", "") != "", "allow plain HTTP and unverified TLS registries (TRAINYARD_INSECURE=1)")
}

func (f *trustFlags) client(cmd *cobra.Command) (*registry.Client, error) {
	if f.repo == "" {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("no trust directory: set --trust-repo or TRAINYARD_TRUST_REPO")}
	}
	return newClient(cmd, f.insecure), nil
}

// admin opens the publisher of the trust directory.
func (f *trustFlags) admin(cmd *cobra.Command) (*repo.Publisher, error) {
	rc, err := f.client(cmd)
	if err != nil {
		return nil, err
	}
	pw := passwordFromEnvOrPrompt(cmd)
	return repo.Open(rc, f.repo, f.adminDir, repo.WithPasswords(func(role string) ([]byte, error) {
		if v, ok := os.LookupEnv("TRAINYARD_TRUST_KEY_PASSWORD"); ok {
			return []byte(v), nil
		}
		return pw(role)
	}))
}

// store opens the verified reader of the trust directory.
func (f *trustFlags) store(ctx context.Context, cmd *cobra.Command) (*trust.Store, error) {
	rc, err := f.client(cmd)
	if err != nil {
		return nil, err
	}
	var root []byte
	if f.root != "" {
		if root, err = os.ReadFile(f.root); err != nil {
			return nil, err
		}
	}
	return trust.OpenStore(ctx, rc, f.repo, f.dir, root)
}

func newTrustCmd() *cobra.Command {
	var f trustFlags
	cmd := &cobra.Command{Use: "trust", Short: "The trust directory: station and user keys and approved trains, published with TUF"}
	f.add(cmd)

	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a trust directory (one ed25519 key per TUF role, encrypted at rest) and publish it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.admin(cmd)
			if err != nil {
				return err
			}
			if _, err := trust.Init(cmd.Context(), p); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trust directory %s created; give readers %s\n", f.repo, p.RootPath())
			return nil
		},
	}
	addKey := func(use, what string, add func(*trust.Admin, context.Context, string, hardened.PublicKey) error) *cobra.Command {
		var keyFile string
		c := &cobra.Command{
			Use:   use + " ID --key FILE.pub",
			Short: "Publish a " + what + "'s public keys (from `trainyard keys generate`)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				k, err := hardened.LoadPublicKey(keyFile)
				if err != nil {
					return err
				}
				p, err := f.admin(cmd)
				if err != nil {
					return err
				}
				a := trust.NewAdmin(p)
				if err := add(a, cmd.Context(), args[0], k); err != nil {
					return err
				}
				if err := a.Publish(cmd.Context()); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s published (sign key %s)\n", what, args[0], k.SignKeyID())
				return nil
			},
		}
		c.Flags().StringVar(&keyFile, "key", "", "public key file (required)")
		c.MarkFlagRequired("key")
		return c
	}

	var ap struct {
		digest, code, base, user, key string
		stations                      []string
		exec                          execFlags
	}
	approve := &cobra.Command{
		Use:   "approve-train (--digest D | --code DIR [exec flags] [--base IMAGE]) --user ID --key FILE.key",
		Short: "Sign and publish the approval of a train definition (code tree + exec config + base)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			d := ap.digest
			if d == "" {
				if ap.code == "" {
					return &ExitError{Code: 2, Err: fmt.Errorf("give --digest or --code")}
				}
				base, err := train.Load(ctx, ap.base, newClient(cmd, f.insecure))
				if err != nil {
					return err
				}
				if d, err = station.ApprovalDigest(ctx, ap.code, ap.exec.config(), base); err != nil {
					return err
				}
			}
			key, err := hardened.LoadPrivateKey(ap.key)
			if err != nil {
				return err
			}
			doc := &trust.ApprovalDoc{Digest: d, Stations: ap.stations}
			doc.Sign(ap.user, key)
			p, err := f.admin(cmd)
			if err != nil {
				return err
			}
			a := trust.NewAdmin(p)
			if err := a.Approve(ctx, doc); err != nil {
				return err
			}
			if err := a.Publish(ctx); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "train %s approved by %s\n", d, ap.user)
			return nil
		},
	}
	approve.Flags().StringVar(&ap.digest, "digest", "", "approval digest (from `trainyard train digest`)")
	approve.Flags().StringVar(&ap.code, "code", "", "the reviewed code directory (computes the digest)")
	approve.Flags().StringVar(&ap.base, "base", train.Scratch, "base image: scratch, a registry reference, oci:DIR or a docker tarball")
	approve.Flags().StringVar(&ap.user, "user", "", "approving user id (required)")
	approve.Flags().StringVar(&ap.key, "key", "", "approving user's private key file (required)")
	approve.Flags().StringSliceVar(&ap.stations, "station", nil, "limit the approval to these stations (repeatable)")
	ap.exec.add(approve)
	approve.MarkFlagRequired("user")
	approve.MarkFlagRequired("key")

	show := &cobra.Command{
		Use:   "show",
		Short: "Update the trusted copy of the directory and list its stations, users and approvals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.store(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			if _, err := s.Client().PullMetadata(cmd.Context()); err != nil {
				return err
			}
			names, err := s.Client().TargetNames()
			if err != nil {
				return err
			}
			for _, n := range names {
				kind, id, _ := strings.Cut(n, "/")
				id = strings.TrimSuffix(strings.TrimSuffix(id, ".pem"), ".json")
				switch kind {
				case "stations", "users":
					fmt.Fprintf(cmd.OutOrStdout(), "%-8s %s\n", strings.TrimSuffix(kind, "s"), id)
				case "approvals":
					a, err := s.TrainApproval(cmd.Context(), "sha256:"+id)
					if err != nil {
						fmt.Fprintf(cmd.OutOrStdout(), "approval sha256:%s INVALID: %v\n", id, err)
						continue
					}
					fmt.Fprintf(cmd.OutOrStdout(), "approval %s by %s%s\n", a.Digest, strings.Join(a.Approvers, ","), stationsNote(a.Stations))
				}
			}
			return nil
		},
	}
	cmd.AddCommand(initCmd,
		addKey("add-station", "station", (*trust.Admin).AddStation),
		addKey("add-user", "user", (*trust.Admin).AddUser),
		approve, show)
	return cmd
}

func stationsNote(st []string) string {
	if len(st) == 0 {
		return ""
	}
	return " (stations " + strings.Join(st, ",") + ")"
}

// execFlags set the exec part of a train (what runs, signed and approved).
type execFlags struct {
	entrypoint, cmd, env []string
	workdir, user        string
}

func (e *execFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&e.entrypoint, "entrypoint", nil, "entrypoint, comma separated (e.g. /opt/pht_train/aggregate)")
	cmd.Flags().StringSliceVar(&e.cmd, "cmd", nil, "cmd arguments, comma separated")
	cmd.Flags().StringArrayVar(&e.env, "env", nil, "K=V environment (repeatable)")
	cmd.Flags().StringVar(&e.workdir, "workdir", "/opt/pht_train", "working directory")
	cmd.Flags().StringVar(&e.user, "user-id", "", "uid[:gid] the train runs as")
}

func (e *execFlags) config() hardened.ExecConfig {
	return hardened.ExecConfig{Entrypoint: e.entrypoint, Cmd: e.cmd, Env: e.env, WorkingDir: e.workdir, User: e.user}
}
