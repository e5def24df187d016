package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/repo"
)

func init() { register(newTrustCmd) }

// trustFlags locate the trust directory, for its admin and its readers.
type trustFlags struct {
	repo, adminDir, dir, root string
	insecure                  bool
	// admin side only
	force      bool
	lifetimes  map[string]*string
	noPassword bool // trust init: an empty key password is allowed
}

var tufRoles = []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp}

func (f *trustFlags) add(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.StringVar(&f.repo, "trust-repo", envOr("TRAINYARD_TRUST_REPO", ""), "registry repository of the trust directory, e.g. 127.0.0.1:5000/trainyard/trust (TRAINYARD_TRUST_REPO)")
	p.StringVar(&f.adminDir, "trust-admin-dir", envOr("TRAINYARD_TRUST_ADMIN_DIR", "trainyard-trust-admin"), "the directory admin's TUF keys and working metadata (TRAINYARD_TRUST_ADMIN_DIR)")
	p.StringVar(&f.dir, "trust-dir", envOr("TRAINYARD_TRUST_DIR", "trainyard-trust"), "trusted TUF metadata of this reader (TRAINYARD_TRUST_DIR)")
	p.StringVar(&f.root, "trust-root", envOr("TRAINYARD_TRUST_ROOT", ""), "root.json to bootstrap a reader the first time (TRAINYARD_TRUST_ROOT)")
	p.BoolVar(&f.insecure, "insecure", envOr("TRAINYARD_INSECURE", "") != "", "allow plain HTTP and unverified TLS registries (TRAINYARD_INSECURE=1)")
}

// addAdmin adds the flags of commands that publish.
func (f *trustFlags) addAdmin(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.BoolVar(&f.force, "force", false, "publish even over a directory this admin state did not publish (knowingly replace it)")
	f.lifetimes = map[string]*string{}
	for _, role := range tufRoles {
		env := "TRAINYARD_TUF_" + strings.ToUpper(role) + "_LIFETIME"
		f.lifetimes[role] = p.String(role+"-lifetime", envOr(env, ""),
			fmt.Sprintf("how long newly signed %s metadata is valid, e.g. 12h, 3d, 2w (%s; default %s)", role, env, humanDays(repo.DefaultLifetime(role))))
	}
}

func humanDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
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
	opts := []repo.Option{repo.WithForce(f.force), repo.WithPasswords(func(role string) ([]byte, error) {
		if v, ok := os.LookupEnv("TRAINYARD_TRUST_KEY_PASSWORD"); ok {
			return []byte(v), nil
		}
		return pw(role)
	}), repo.WithNewPasswords(newPasswordFromEnvOrPrompt(cmd, f.noPassword, "TRAINYARD_TRUST_KEY_PASSWORD"))}
	for role, v := range f.lifetimes {
		if *v == "" {
			continue
		}
		d, err := parseLifetime(*v)
		if err != nil {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("--%s-lifetime: %w", role, err)}
		}
		opts = append(opts, repo.WithLifetime(role, d))
	}
	return repo.Open(rc, f.repo, f.adminDir, opts...)
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

// publishHint turns a refused publish into one line that says what to do.
func publishHint(err error) error {
	if errors.Is(err, tuf.ErrConflict) {
		return fmt.Errorf("%w; run `trainyard trust pull` to start from the registry's directory (then redo the change), or --force to replace it", err)
	}
	return err
}

func newTrustCmd() *cobra.Command {
	var f trustFlags
	cmd := &cobra.Command{Use: "trust", Short: "The trust directory: station and user keys and approved trains, published with TUF"}
	f.add(cmd)
	f.addAdmin(cmd)
	// edit runs change on the admin state and publishes it.
	edit := func(cmd *cobra.Command, change func(ctx context.Context, a *trust.Admin) error) error {
		p, err := f.admin(cmd)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		// Refuse before staging: a stale state learns it at once, not
		// after it has uploaded documents, and a missing or wrong key
		// password before the change waits staged for the next publish.
		if err := p.CheckRegistry(ctx); err != nil {
			return publishHint(err)
		}
		if err := p.Unlock(repo.Targets, repo.Snapshot, repo.Timestamp); err != nil {
			return err
		}
		a := trust.NewAdmin(p)
		if err := change(ctx, a); err != nil {
			return err
		}
		return publishHint(a.Publish(ctx))
	}

	var threshold int
	initCmd := &cobra.Command{
		Use: "init", Example: examples["trust init"],
		Short: "Create a trust directory (one ed25519 key per TUF role, encrypted at rest) and publish it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.admin(cmd)
			if err != nil {
				return err
			}
			if _, err := trust.Init(cmd.Context(), p, trust.WithInitApprovalThreshold(threshold)); err != nil {
				if errors.Is(err, tuf.ErrConflict) {
					return fmt.Errorf("%w; to administer it from here run `trainyard trust pull --trust-root ROOT.json` with its admin keys, or --force to replace it", err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trust directory %s created\nroot.json: %s\ngive readers this file: they pass it as --trust-root (TRAINYARD_TRUST_ROOT)\n", f.repo, p.RootPath())
			return nil
		},
	}
	initCmd.Flags().IntVar(&threshold, "approval-threshold", 1, "valid approver signatures a train approval needs (k of n users)")
	initCmd.Flags().BoolVar(&f.noPassword, "no-password", false, noPasswordUsage)

	addKey := func(use, what string, add, replace func(*trust.Admin, context.Context, string, hardened.PublicKey) error) *cobra.Command {
		var keyFile string
		var rotate bool
		c := &cobra.Command{
			Use: use + " ID --key FILE.pub [--replace]", Example: examples["trust "+use],
			Short: "Publish a " + what + "'s public keys (from `trainyard keys generate`); --replace rotates them",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				k, err := hardened.LoadPublicKey(keyFile)
				if err != nil {
					return err
				}
				op := add
				if rotate {
					op = replace
				}
				if err := edit(cmd, func(ctx context.Context, a *trust.Admin) error { return op(a, ctx, args[0], k) }); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s published (sign key %s)\n", what, args[0], k.SignKeyID())
				return nil
			},
		}
		c.Flags().StringVar(&keyFile, "key", "", "public key file (required)")
		c.Flags().BoolVar(&rotate, "replace", false, "replace the keys of a listed id (key rotation)")
		c.MarkFlagRequired("key")
		return c
	}
	removeCmd := func(use, what string, rm func(*trust.Admin, context.Context, string) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID", Example: examples["trust "+use],
			Short: "Remove a " + what + " from the directory and publish",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := edit(cmd, func(ctx context.Context, a *trust.Admin) error { return rm(a, ctx, args[0]) }); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s removed\n", what, args[0])
				return nil
			},
		}
	}

	var ap struct {
		digest, code, base, user, key, out, label, comment, expires string
		stations                                                    []string
		exec                                                        execFlags
	}
	approve := &cobra.Command{
		Use: "approve-train (--digest D | --code DIR [exec flags] [--base IMAGE]) --user ID --key FILE.key [--out approval.json]", Example: examples["trust approve-train"],
		Short: "Sign the approval of a train definition; publish it (admin) or write it to --out for the admin (approver)",
		Long: "Signs the approval of a train definition (code tree + exec config + base) with an approver's key.\n" +
			"With --out the approver needs only their key and read access to the directory: the signed approval\n" +
			"is written to the file (added to it when it already holds the same approval) and the admin publishes\n" +
			"it with `trainyard trust add-approval FILE`. Without --out the admin state signs and publishes at once.",
		Args: cobra.NoArgs,
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
				if d, err = creator.ApprovalDigest(ctx, ap.code, ap.exec.config(), base); err != nil {
					return err
				}
			}
			expires, err := parseExpiry(ap.expires, time.Now())
			if err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("--expires: %w", err)}
			}
			key, err := loadPrivateKey(cmd, ap.key)
			if err != nil {
				return err
			}
			doc := &trust.ApprovalDoc{Digest: d, Stations: ap.stations, Label: ap.label, Expires: expires}
			if ap.out == "" {
				doc.SignWithComment(ap.user, ap.comment, key)
				if err := edit(cmd, func(ctx context.Context, a *trust.Admin) error { return a.Approve(ctx, doc) }); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "train %s approved by %s\n", d, ap.user)
				return nil
			}
			// Approver side: check the key against the directory first,
			// so a wrong key fails here and not at the admin.
			s, err := f.store(ctx, cmd)
			if err != nil {
				return err
			}
			pk, err := s.UserKey(ctx, ap.user)
			if err != nil {
				return err
			}
			if !pk.Equal(key.Public()) {
				return fmt.Errorf("%w: %s is not the key of user %s in the trust directory", trust.ErrBadApproval, ap.key, ap.user)
			}
			if old, err := os.ReadFile(ap.out); err == nil {
				prev, err := trust.ParseApproval(old)
				if err != nil {
					return fmt.Errorf("%s: %w", ap.out, err)
				}
				if !prev.SameTerms(doc) {
					return fmt.Errorf("%s holds an approval on other terms (digest, stations, label or expiry); write to another file", ap.out)
				}
				doc = prev
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			doc.SignWithComment(ap.user, ap.comment, key)
			b, err := json.MarshalIndent(doc, "", "  ")
			if err != nil {
				return err
			}
			if err := fsutil.WriteFileAtomic(ap.out, append(b, '\n'), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approval of %s signed by %s written to %s; the admin publishes it with `trainyard trust add-approval %s`\n", d, ap.user, ap.out, filepath.Base(ap.out))
			return nil
		},
	}
	approve.Flags().StringVar(&ap.digest, "digest", "", "approval `digest` to sign, as printed by \"trainyard train digest\"")
	approve.Flags().StringVar(&ap.code, "code", "", "the reviewed code directory (computes the digest)")
	approve.Flags().StringVar(&ap.base, "base", train.Scratch, "base image: scratch, a registry reference, oci:DIR or a docker tarball")
	approve.Flags().StringVar(&ap.user, "user", "", "approving user id (required)")
	approve.Flags().StringVar(&ap.key, "key", "", "approving user's private key file (required)")
	approve.Flags().StringSliceVar(&ap.stations, "station", nil, "limit the approval to these stations (repeatable)")
	approve.Flags().StringVar(&ap.out, "out", "", "write the signed approval to this file instead of publishing (approver side)")
	approve.Flags().StringVar(&ap.label, "label", "", "short label shown with the approval, e.g. \"study 42 v3\"")
	approve.Flags().StringVar(&ap.comment, "comment", "", "this approver's comment (signed)")
	approve.Flags().StringVar(&ap.expires, "expires", "", "when the approval ends: RFC 3339 time or a lifetime such as 90d (default: no expiry)")
	ap.exec.add(approve)
	approve.MarkFlagRequired("user")
	approve.MarkFlagRequired("key")

	addApproval := &cobra.Command{
		Use: "add-approval APPROVAL.json...", Example: examples["trust add-approval"],
		Short: "Verify approvers' signed approvals (from approve-train --out) and publish them, merged",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var docs []*trust.ApprovalDoc
			for _, path := range args {
				b, err := readBounded(path, 1<<20)
				if err != nil {
					return err
				}
				d, err := trust.ParseApproval(b)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				docs = append(docs, d)
			}
			err := edit(cmd, func(ctx context.Context, a *trust.Admin) error {
				for i, d := range docs {
					if err := a.Approve(ctx, d); err != nil {
						return fmt.Errorf("%s: %w", args[i], err)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, d := range docs {
				var who []string
				for _, s := range d.Signatures {
					who = append(who, s.User)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "approval of %s by %s published\n", d.Digest, strings.Join(who, ","))
			}
			return nil
		},
	}
	revoke := &cobra.Command{
		Use: "revoke-approval DIGEST", Example: examples["trust revoke-approval"],
		Short: "Remove a train's approval and publish (stations refuse it from their next update)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := edit(cmd, func(ctx context.Context, a *trust.Admin) error { return a.RevokeApproval(ctx, args[0]) }); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approval of %s revoked\n", args[0])
			return nil
		},
	}
	setThreshold := &cobra.Command{
		Use: "set-approval-threshold K", Example: examples["trust set-approval-threshold"],
		Short: "Require K valid approver signatures on every train approval and publish",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var k int
			if _, err := fmt.Sscanf(args[0], "%d", &k); err != nil || k < 1 || fmt.Sprint(k) != args[0] {
				return &ExitError{Code: 2, Err: fmt.Errorf("approval threshold %q: want a number of 1 or more", args[0])}
			}
			if err := edit(cmd, func(ctx context.Context, a *trust.Admin) error { return a.SetApprovalThreshold(ctx, k) }); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approvals now need %d signature(s)\n", k)
			return nil
		},
	}

	var watch bool
	var interval time.Duration
	refresh := &cobra.Command{
		Use: "refresh [--watch]", Example: examples["trust refresh"],
		Short: "Re-sign what is due (timestamp; snapshot and targets; root) and publish; exit 0 when nothing was due",
		Long: "A role is due when less than half of its lifetime is left. Run it from cron or a systemd timer\n" +
			"(hourly is plenty with the default one-day timestamp), or keep it running with --watch.\n" +
			"Key passwords come from TRAINYARD_TRUST_KEY_PASSWORD (or TRAINYARD_TUF_<ROLE>_KEY_PASSWORD).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.admin(cmd)
			if err != nil {
				return err
			}
			if !watch {
				return refreshOnce(cmd.Context(), cmd.OutOrStdout(), p)
			}
			return refreshWatch(cmd.Context(), cmd.OutOrStdout(), p, interval)
		},
	}
	refresh.Flags().BoolVar(&watch, "watch", false, "keep running: refresh whenever something becomes due")
	refresh.Flags().DurationVar(&interval, "interval", time.Hour, "with --watch, the longest sleep between checks")

	pull := &cobra.Command{
		Use: "pull", Example: examples["trust pull"],
		Short: "Replace the admin state's metadata with the registry's verified directory (after another admin published)",
		Long: "Verifies the registry's directory with the admin state's root (or --trust-root the first time) and\n" +
			"makes it the admin state's starting point. Unpublished local changes are dropped: redo them after.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.admin(cmd)
			if err != nil {
				return err
			}
			var root []byte
			if f.root != "" && !p.HasMetadata() {
				if root, err = os.ReadFile(f.root); err != nil {
					return err
				}
			}
			if err := p.Pull(cmd.Context(), root); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "admin state %s now starts from the registry's directory %s\n", f.adminDir, f.repo)
			return nil
		},
	}

	var output string
	show := &cobra.Command{
		Use: "show [-o json]", Example: examples["trust show"],
		Short: "Update the trusted copy of the directory and list its stations, users, approvals and expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "text" {
				return &ExitError{Code: 2, Err: fmt.Errorf("-o %q: want text or json", output)}
			}
			ctx := cmd.Context()
			s, err := f.store(ctx, cmd)
			if err != nil {
				return err
			}
			v, err := describe(ctx, s)
			if err != nil {
				return err
			}
			v.Repository = f.repo
			w := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			for _, id := range v.Stations {
				fmt.Fprintf(w, "%-8s %s\n", "station", id)
			}
			for _, id := range v.Users {
				fmt.Fprintf(w, "%-8s %s\n", "user", id)
			}
			for _, a := range v.Approvals {
				if !a.Valid {
					fmt.Fprintf(w, "approval %s INVALID: %s\n", a.Digest, a.Problem)
					continue
				}
				extra := stationsNote(a.Stations)
				if a.Label != "" {
					extra += fmt.Sprintf(" label %q", a.Label)
				}
				if a.Expires != "" {
					extra += " expires " + a.Expires
				}
				fmt.Fprintf(w, "approval %s by %s (%d of %d needed)%s\n", a.Digest, strings.Join(a.Approvers, ","), len(a.Approvers), a.Needed, extra)
			}
			fmt.Fprintf(w, "approvals need %d signature(s)\n", v.ApprovalThreshold)
			for _, e := range v.Expires {
				fmt.Fprintf(w, "expires  %-9s %s (in %s)\n", e.Role, e.Expires, e.In)
			}
			return nil
		},
	}
	show.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")

	cmd.AddCommand(initCmd,
		addKey("add-station", "station", (*trust.Admin).AddStation, (*trust.Admin).ReplaceStation),
		addKey("add-user", "user", (*trust.Admin).AddUser, (*trust.Admin).ReplaceUser),
		removeCmd("remove-station", "station", (*trust.Admin).RemoveStation),
		removeCmd("remove-user", "user", (*trust.Admin).RemoveUser),
		approve, addApproval, revoke, setThreshold, refresh, pull, show)
	return cmd
}

// directoryView is what trust show prints (-o json: this structure).
type directoryView struct {
	Repository        string               `json:"repository"`
	Stations          []string             `json:"stations"`
	Users             []string             `json:"users"`
	Approvals         []trust.ApprovalInfo `json:"approvals"`
	ApprovalThreshold int                  `json:"approval_threshold"`
	Expires           []roleExpiry         `json:"expires"`
}

type roleExpiry struct {
	Role    string `json:"role"`
	Expires string `json:"expires"` // RFC 3339
	In      string `json:"in"`      // time left, e.g. 23h59m
}

func describe(ctx context.Context, s *trust.Store) (*directoryView, error) {
	l, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	v := &directoryView{Stations: l.Stations, Users: l.Users, Approvals: l.Approvals, ApprovalThreshold: l.ApprovalThreshold}
	exps, err := s.Client().Expirations()
	if err != nil {
		return nil, err
	}
	for _, e := range exps {
		v.Expires = append(v.Expires, roleExpiry{Role: e.Role, Expires: e.Expires.UTC().Format(time.RFC3339),
			In: time.Until(e.Expires).Truncate(time.Minute).String()})
	}
	return v, nil
}

// refreshOnce re-signs what is due and says what it did.
func refreshOnce(ctx context.Context, w io.Writer, p *repo.Publisher) error {
	roles, err := p.Refresh(ctx)
	if err != nil {
		return publishHint(err)
	}
	next, nerr := p.NextDue()
	if len(roles) == 0 {
		fmt.Fprintf(w, "nothing due")
	} else {
		fmt.Fprintf(w, "re-signed and published %s", strings.Join(roles, ", "))
	}
	if nerr == nil {
		fmt.Fprintf(w, "; next due %s", next.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	return nil
}

// refreshWatch refreshes until ctx ends: at every due time, at most
// interval apart. A failed refresh is logged and retried in a minute (a
// registry outage must not end the watch); a conflict ends it, because
// only a person can decide between two admins' directories.
func refreshWatch(ctx context.Context, w io.Writer, p *repo.Publisher, interval time.Duration) error {
	if interval <= 0 {
		return &ExitError{Code: 2, Err: errors.New("--interval must be positive")}
	}
	for {
		wait := interval
		if err := refreshOnce(ctx, w, p); err != nil {
			if ctx.Err() != nil {
				// Stopped (a signal) in the middle of a refresh: a clean
				// stop, like one between refreshes. A publish cut short is
				// finished by the next one.
				slog.Warn("trust refresh stopped while it ran; the next refresh completes it", "error", err.Error())
				return nil
			}
			if errors.Is(err, tuf.ErrConflict) {
				return err
			}
			slog.Warn("trust refresh failed; retrying", "error", err.Error())
			wait = min(wait, time.Minute)
		} else if next, err := p.NextDue(); err == nil {
			wait = min(wait, max(time.Until(next), time.Second))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// parseExpiry accepts "", an RFC 3339 time or a lifetime from now (90d).
func parseExpiry(s string, now time.Time) (string, error) {
	if s == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Format(time.RFC3339), nil
	}
	d, err := parseLifetime(s)
	if err != nil {
		return "", fmt.Errorf("%q is neither an RFC 3339 time nor a lifetime like 90d", s)
	}
	return now.Add(d).UTC().Truncate(time.Second).Format(time.RFC3339), nil
}

// readBounded reads a small file, refusing one larger than max.
func readBounded(path string, max int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b, nil
}

func stationsNote(st []string) string {
	if len(st) == 0 {
		return ""
	}
	return " (stations " + strings.Join(slices.Clone(st), ",") + ")"
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
