package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/ocistore"
	"github.com/trainyard/trainyard/tuf/repo"
)

func init() { register(newTUFCmd) }

// tufEnv is what every tuf command reads from flags and TRAINYARD_TUF_*.
type tufEnv struct {
	insecure bool
	root     string
	force    bool
	// noPassword allows an empty password for a role's first key.
	noPassword bool
}

func newTUFCmd() *cobra.Command {
	te := &tufEnv{}
	cmd := &cobra.Command{
		Use:   "tuf",
		Short: "TUF repositories stored in OCI registries (publisher and client; dtuf's commands)",
		Long: "Publish files with The Update Framework into any OCI registry and download them verified.\n" +
			"REPO is host/path, or a path with TRAINYARD_TUF_HOST set. State lives under TRAINYARD_TUF_REPOSITORIES_ROOT.\n" +
			"See docs/tuf.md for the registry layout and every TRAINYARD_TUF_* variable.",
	}
	cmd.PersistentFlags().BoolVar(&te.insecure, "insecure", envOr("TRAINYARD_TUF_INSECURE", envOr("TRAINYARD_INSECURE", "")) != "",
		"allow plain HTTP and unverified TLS (TRAINYARD_TUF_INSECURE=1)")
	cmd.PersistentFlags().StringVar(&te.root, "repositories-root", envOr("TRAINYARD_TUF_REPOSITORIES_ROOT", "trainyard_tuf_repos"),
		"local state directory (TRAINYARD_TUF_REPOSITORIES_ROOT)")
	cmd.PersistentFlags().BoolVar(&te.force, "force", false,
		"publish even over metadata this state did not publish (a foreign repository, a newer version): knowingly replace it")
	master := func(use, short string, args cobra.PositionalArgs, run func(cmd *cobra.Command, p *repo.Publisher, args []string) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Example: examples["tuf "+strings.Fields(use)[0]], Args: args, RunE: func(cmd *cobra.Command, args []string) error {
			p, err := te.publisher(cmd, args[0])
			if err != nil {
				return err
			}
			return tufExit(tufPublishHint(run(cmd, p, args[1:]), args[0]))
		}}
	}
	copyCmd := func(use, short string, args cobra.PositionalArgs, run func(cmd *cobra.Command, c *client.Client, args []string) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Example: examples["tuf "+strings.Fields(use)[0]], Args: args, RunE: func(cmd *cobra.Command, args []string) error {
			c, err := te.client(cmd, args[0])
			if err != nil {
				return err
			}
			return tufExit(run(cmd, c, args[1:]))
		}}
	}
	var format string // -o of the listing commands (one runs per process)
	var add bool
	crk := master("create-root-key REPO", "Create a root key (the previous ones are retired unless --add)", cobra.ExactArgs(1),
		func(cmd *cobra.Command, p *repo.Publisher, _ []string) error {
			id, pub, err := p.CreateKey(repo.Root, add)
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", id, pub)
			}
			return err
		})
	crk.Flags().BoolVar(&add, "add", false, "add a key to the role instead of replacing its keys (thresholds)")
	crk.Flags().BoolVar(&te.noPassword, "no-password", false, noPasswordUsage)
	var addM bool
	cmk := master("create-metadata-keys REPO [ROLE...]", "Create keys for targets, snapshot, timestamp (or the given roles, e.g. a delegated role)", cobra.MinimumNArgs(1),
		func(cmd *cobra.Command, p *repo.Publisher, roles []string) error {
			if len(roles) == 0 {
				roles = []string{repo.Targets, repo.Snapshot, repo.Timestamp}
			}
			for _, r := range roles {
				id, pub, err := p.CreateKey(r, addM)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", r, id, pub)
			}
			return nil
		})
	cmk.Flags().BoolVar(&addM, "add", false, "add keys instead of replacing the roles' keys")
	cmk.Flags().BoolVar(&te.noPassword, "no-password", false, noPasswordUsage)
	var thresholds []string
	cm := master("create-metadata REPO", "Create version 1 of the metadata from the key files (publish with push-metadata)", cobra.ExactArgs(1),
		func(cmd *cobra.Command, p *repo.Publisher, _ []string) error {
			th, err := parseThresholds(thresholds)
			if err != nil {
				return err
			}
			if err := p.CreateMetadata(cmd.Context(), th); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trusted root for clients: %s\n", p.RootPath())
			return nil
		})
	cm.Flags().StringArrayVar(&thresholds, "threshold", nil, "ROLE=K signatures required (repeatable)")
	var rthresholds []string
	rk := master("reset-keys REPO", "Write a new root from the current key files, cross-signed by the old root keys", cobra.ExactArgs(1),
		func(cmd *cobra.Command, p *repo.Publisher, _ []string) error {
			th, err := parseThresholds(rthresholds)
			if err != nil {
				return err
			}
			return p.ResetKeys(cmd.Context(), th)
		})
	rk.Flags().StringArrayVar(&rthresholds, "threshold", nil, "ROLE=K signatures required (repeatable)")
	var role string
	pt := master("push-target REPO TARGET FILE|@TARGET...", "Upload files (or reuse existing targets' parts with @TARGET) as TARGET, the parts in order", cobra.MinimumNArgs(3),
		func(cmd *cobra.Command, p *repo.Publisher, args []string) error {
			return p.AddTarget(cmd.Context(), args[0], targetSources(args[1:]), repo.InRole(role))
		})
	pt.Flags().StringVar(&role, "role", "", "delegated role that signs the target (default: targets)")
	var paths []string
	var dthreshold int
	var terminating bool
	ad := master("add-delegation REPO ROLE", "Delegate --path patterns to ROLE (keys from create-metadata-keys REPO ROLE)", cobra.ExactArgs(2),
		func(cmd *cobra.Command, p *repo.Publisher, args []string) error {
			return p.AddDelegation(cmd.Context(), args[0], paths, dthreshold, terminating)
		})
	ad.Flags().StringArrayVar(&paths, "path", nil, "target path pattern (repeatable), e.g. 'releases/*'")
	ad.Flags().IntVar(&dthreshold, "threshold", 1, "signatures required")
	ad.Flags().BoolVar(&terminating, "terminating", false, "do not search other roles for these paths")
	cmd.AddCommand(crk, cmk, cm, rk, pt, ad,
		master("del-target REPO TARGET...", "Remove targets (blobs other targets use stay referenced)", cobra.MinimumNArgs(2),
			func(cmd *cobra.Command, p *repo.Publisher, args []string) error {
				return p.DelTarget(cmd.Context(), args...)
			}),
		master("push-metadata REPO", "Sign and publish targets, snapshot, then timestamp", cobra.ExactArgs(1),
			func(cmd *cobra.Command, p *repo.Publisher, _ []string) error { return p.PushMetadata(cmd.Context()) }),
		master("refresh-timestamp REPO", "Re-sign and publish only the timestamp (cron job; needs the timestamp key only)", cobra.ExactArgs(1),
			func(cmd *cobra.Command, p *repo.Publisher, _ []string) error {
				return p.RefreshTimestamp(cmd.Context())
			}),
		master("pull-master REPO [ROOT.json]", "Replace the publisher state's metadata with the registry's verified repository (after another publisher pushed); ROOT.json the first time", cobra.RangeArgs(1, 2),
			func(cmd *cobra.Command, p *repo.Publisher, args []string) error {
				var root []byte
				if len(args) == 1 {
					var err error
					if root, err = os.ReadFile(args[0]); err != nil {
						return err
					}
				}
				return p.Pull(cmd.Context(), root)
			}),
		withJSON(&format, master("list-master-targets REPO", "List the publisher's targets", cobra.ExactArgs(1),
			func(cmd *cobra.Command, p *repo.Publisher, _ []string) error {
				return tufList(cmd, format, p.ListTargets, writeTUFTargets)
			})),
		withJSON(&format, master("get-master-expirations REPO", "Print each role's expiry", cobra.ExactArgs(1),
			func(cmd *cobra.Command, p *repo.Publisher, _ []string) error {
				return tufList(cmd, format, p.Expirations, writeTUFExpirations)
			})),
	)
	// client side
	var out string
	ptg := copyCmd("pull-target REPO TARGET...", "Download verified targets to stdout (or -o FILE); nothing unverified is written", cobra.MinimumNArgs(2),
		func(cmd *cobra.Command, c *client.Client, names []string) error {
			if out != "" {
				if len(names) != 1 {
					return &ExitError{Code: 2, Err: errors.New("-o takes exactly one target")}
				}
				_, err := c.Download(cmd.Context(), names[0], out)
				return err
			}
			var info io.Writer
			if envOr("TRAINYARD_TUF_BLOB_INFO", "") == "1" {
				info = cmd.OutOrStdout()
			}
			return c.WriteTo(cmd.Context(), cmd.OutOrStdout(), info, names...)
		})
	ptg.Flags().StringVarP(&out, "output", "o", "", "write the target to FILE (temp file, verify, rename)")
	cmd.AddCommand(ptg,
		copyCmd("pull-metadata REPO [ROOT.json|ROOT-KEY.pub|-]", "Update trusted metadata (first time: give the root.json or root public key, - for stdin); prints changed targets", cobra.RangeArgs(1, 2),
			func(cmd *cobra.Command, c *client.Client, args []string) error {
				var changed []string
				var err error
				if len(args) == 1 {
					var trust []byte
					if args[0] == "-" {
						trust, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
					} else {
						trust, err = os.ReadFile(args[0])
					}
					if err != nil {
						return err
					}
					changed, err = c.Bootstrap(cmd.Context(), trust)
				} else {
					changed, err = c.PullMetadata(cmd.Context())
				}
				for _, n := range changed {
					fmt.Fprintln(cmd.OutOrStdout(), n)
				}
				return err
			}),
		withJSON(&format, copyCmd("blob-sizes REPO TARGET...", "Print the signed size of each part of each target (one line per part)", cobra.MinimumNArgs(2),
			func(cmd *cobra.Command, c *client.Client, names []string) error {
				tfs, err := c.TargetInfo(cmd.Context(), names...)
				sizes := []TUFBlobSize{}
				for i, tf := range tfs {
					parts, perr := tuf.Parts(tf)
					if perr != nil {
						return perr
					}
					for j, p := range parts {
						sizes = append(sizes, TUFBlobSize{Target: names[i], Part: j, Length: p.Length})
					}
				}
				if format == "json" {
					if err != nil {
						return err
					}
					return writeJSON(cmd.OutOrStdout(), sizes)
				}
				for _, s := range sizes {
					fmt.Fprintln(cmd.OutOrStdout(), s.Length)
				}
				return err
			})),
		copyCmd("check-target REPO TARGET FILE...", "Exit 0 if the FILEs are the target's parts, in order (one FILE for a single-part target)", cobra.MinimumNArgs(3),
			func(cmd *cobra.Command, c *client.Client, args []string) error {
				return c.CheckTarget(cmd.Context(), args[0], args[1:]...)
			}),
		withJSON(&format, copyCmd("list-copy-targets REPO", "List targets of the trusted local copy", cobra.ExactArgs(1),
			func(cmd *cobra.Command, c *client.Client, _ []string) error {
				return tufList(cmd, format, c.TargetNames, writeTUFTargets)
			})),
		withJSON(&format, copyCmd("get-copy-expirations REPO", "Print each trusted role's expiry", cobra.ExactArgs(1),
			func(cmd *cobra.Command, c *client.Client, _ []string) error {
				return tufList(cmd, format, c.Expirations, writeTUFExpirations)
			})),
		withJSON(&format, &cobra.Command{Use: "list-repos [HOST]", Example: examples["tuf list-repos"], Short: "List the registry's repositories (_catalog)", Args: cobra.MaximumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				host := envOr("TRAINYARD_TUF_HOST", "")
				if len(args) == 1 {
					host = args[0]
				}
				if host == "" {
					return &ExitError{Code: 2, Err: errors.New("give HOST or set TRAINYARD_TUF_HOST")}
				}
				repos, err := ocistore.ListRepos(cmd.Context(), te.registryClient(cmd), host)
				if err != nil {
					return tufExit(err)
				}
				if format == "json" {
					js := []TUFRepo{}
					for _, r := range repos {
						js = append(js, TUFRepo{Name: r})
					}
					return writeJSON(cmd.OutOrStdout(), js)
				}
				for _, r := range repos {
					fmt.Fprintln(cmd.OutOrStdout(), r)
				}
				return nil
			}}),
		&cobra.Command{Use: "auth REPO ACTION...", Example: examples["tuf auth"], Short: "Authenticate (pull, push, *) and print the bearer token, if any", Args: cobra.MinimumNArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				rc := te.registryClient(cmd)
				s, err := ocistore.New(rc, te.repoName(args[0]))
				if err != nil {
					return err
				}
				// The registry client's transport: --insecure and the network timeouts.
				tok, err := s.Token(cmd.Context(), tufKeychain(), rc.HTTPClient(), args[1:]...)
				if tok != "" {
					fmt.Fprintln(cmd.OutOrStdout(), tok)
				}
				return tufExit(err)
			}},
		newTUFConformanceCmd(),
	)
	return cmd
}

func (te *tufEnv) repoName(r string) string {
	if host := envOr("TRAINYARD_TUF_HOST", ""); host != "" && !strings.HasPrefix(r, host+"/") {
		return host + "/" + r
	}
	return r
}

func (te *tufEnv) stateDir(r, side string) string {
	return filepath.Join(te.root, url.PathEscape(te.repoName(r)), side)
}

func tufKeychain() authn.Keychain {
	return ocistore.Keychain(os.Getenv("TRAINYARD_TUF_USERNAME"), os.Getenv("TRAINYARD_TUF_PASSWORD"), os.Getenv("TRAINYARD_TUF_TOKEN"))
}

func (te *tufEnv) registryClient(cmd *cobra.Command) *registry.Client {
	opts := []registry.Option{registry.WithInsecure(te.insecure),
		registry.WithKeychain(tufKeychain())}
	if progressOn() && progressEnabled(cmd) {
		opts = append(opts, registry.WithProgress(cmd.ErrOrStderr()))
	}
	return registry.NewClient(opts...)
}

// progressOn follows TRAINYARD_TUF_PROGRESS: 1 on, 0 off, unset = on a terminal.
func progressOn() bool { return envOr("TRAINYARD_TUF_PROGRESS", "1") != "0" }

func (te *tufEnv) publisher(cmd *cobra.Command, r string) (*repo.Publisher, error) {
	s, err := ocistore.New(te.registryClient(cmd), te.repoName(r))
	if err != nil {
		return nil, err
	}
	opts := []repo.Option{repo.WithPasswords(passwordFromEnvOrPrompt(cmd)),
		repo.WithNewPasswords(newPasswordFromEnvOrPrompt(cmd, te.noPassword)), repo.WithKeyType(envOr("TRAINYARD_TUF_KEY_TYPE", keys.Ed25519)),
		repo.WithForce(te.force)}
	if progressOn() && progressEnabled(cmd) {
		opts = append(opts, repo.WithProgress(cmd.ErrOrStderr()))
	}
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		if v := os.Getenv("TRAINYARD_TUF_" + strings.ToUpper(role) + "_LIFETIME"); v != "" {
			d, err := parseLifetime(v)
			if err != nil {
				return nil, &ExitError{Code: 2, Err: fmt.Errorf("TRAINYARD_TUF_%s_LIFETIME: %w", strings.ToUpper(role), err)}
			}
			opts = append(opts, repo.WithLifetime(role, d))
		}
	}
	return repo.New(s, te.stateDir(r, "master"), opts...), nil
}

func (te *tufEnv) client(cmd *cobra.Command, r string) (*client.Client, error) {
	s, err := ocistore.New(te.registryClient(cmd), te.repoName(r))
	if err != nil {
		return nil, err
	}
	opts := []client.Option{}
	if progressOn() && progressEnabled(cmd) {
		opts = append(opts, client.WithProgress(cmd.ErrOrStderr()))
	}
	if v := os.Getenv("TRAINYARD_TUF_TIME"); v != "" {
		t, err := parseTime(v)
		if err != nil {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("TRAINYARD_TUF_TIME: %w", err)}
		}
		opts = append(opts, client.WithClock(func() time.Time { return t }))
	}
	return client.New(s, te.stateDir(r, "copy"), opts...), nil
}

// passwordFromEnvOrPrompt reads TRAINYARD_TUF_<ROLE>_KEY_PASSWORD, else
// asks on the terminal.
func passwordFromEnvOrPrompt(cmd *cobra.Command) repo.PasswordFunc {
	return func(role string) ([]byte, error) {
		env := "TRAINYARD_TUF_" + envName(role) + "_KEY_PASSWORD"
		if v, ok := os.LookupEnv(env); ok {
			return []byte(v), nil
		}
		pw, err := promptPassword(cmd.ErrOrStderr(), fmt.Sprintf("Password for %s keys: ", role))
		if errors.Is(err, errNoTerminal) {
			return nil, fmt.Errorf("set %s (no terminal to prompt on)", env)
		}
		return pw, err
	}
}

const noPasswordUsage = "allow an empty password for a role's first key (no prompt; an empty TRAINYARD_*_KEY_PASSWORD is refused without it)"

var errNoTerminal = errors.New("no terminal")

// promptPassword asks on the terminal (stdin) without echo; a variable so
// tests can answer it.
var promptPassword = func(w io.Writer, prompt string) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, errNoTerminal
	}
	fmt.Fprint(w, prompt)
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(w)
	return pw, err
}

// newPasswordFromEnvOrPrompt is the password of a role's first key: the
// first of envs (then TRAINYARD_TUF_<ROLE>_KEY_PASSWORD) that is set, else
// asked twice on the terminal. Empty needs noPassword, which also skips the
// prompt.
func newPasswordFromEnvOrPrompt(cmd *cobra.Command, noPassword bool, envs ...string) repo.PasswordFunc {
	return func(role string) ([]byte, error) {
		envs := append(envs[:len(envs):len(envs)], "TRAINYARD_TUF_"+envName(role)+"_KEY_PASSWORD")
		for _, env := range envs {
			if v, ok := os.LookupEnv(env); ok {
				if v == "" && !noPassword {
					return nil, fmt.Errorf("%s is empty: give --no-password to create keys without a password", env)
				}
				return []byte(v), nil
			}
		}
		if noPassword {
			return []byte{}, nil
		}
		pw, err := promptPassword(cmd.ErrOrStderr(), fmt.Sprintf("New password for %s keys: ", role))
		if errors.Is(err, errNoTerminal) {
			return nil, fmt.Errorf("set %s (no terminal to prompt on), or give --no-password", envs[len(envs)-1])
		}
		if err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, errors.New("empty password: give --no-password to create keys without a password")
		}
		again, err := promptPassword(cmd.ErrOrStderr(), fmt.Sprintf("Repeat the password for %s keys: ", role))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the two passwords differ")
		}
		return pw, nil
	}
}

// envName turns a role name into the part of an env var name.
func envName(role string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, role)
}

func parseThresholds(ss []string) (repo.Thresholds, error) {
	th := repo.Thresholds{}
	for _, s := range ss {
		k, v, ok := strings.Cut(s, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 1 {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("bad --threshold %q (want ROLE=K)", s)}
		}
		th[k] = n
	}
	return th, nil
}

// parseLifetime accepts Go durations plus d (days) and w (weeks): 1s, 12h, 3d, 2w.
func parseLifetime(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f <= 0 {
				return 0, fmt.Errorf("bad lifetime %q", s)
			}
			return time.Duration(f * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("bad lifetime %q", s)
	}
	return d, nil
}

// parseTime accepts RFC 3339 or Unix seconds.
func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Parse(time.RFC3339, s)
}

// tufPublishHint says what to do when a publish was refused to protect
// what is in the registry.
func tufPublishHint(err error, repoArg string) error {
	if errors.Is(err, tuf.ErrConflict) {
		return fmt.Errorf("%w; run `trainyard tuf pull-master %s [ROOT.json]` to start from the registry's repository (then redo the change), or --force to replace it", err, repoArg)
	}
	return err
}

// tufExit maps an unauthorized registry answer to exit code 13 (EACCES), as dtuf did.
func tufExit(err error) error {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return &ExitError{Code: 13, Err: err}
	}
	return err
}

// newTUFConformanceCmd is the tuf-conformance client CLI contract over
// plain HTTP: init, refresh, download.
func newTUFConformanceCmd() *cobra.Command {
	var h client.HTTPConfig
	var names []string
	var at string
	cmd := &cobra.Command{
		Use:   "client",
		Short: "TUF client over plain HTTP with the tuf-conformance CLI contract (init, refresh, download)",
	}
	cmd.PersistentFlags().StringVar(&h.MetadataDir, "metadata-dir", "", "trusted metadata directory")
	cmd.PersistentFlags().StringVar(&h.MetadataURL, "metadata-url", "", "repository metadata base URL")
	cmd.PersistentFlags().StringVar(&h.TargetBaseURL, "target-base-url", "", "targets base URL")
	cmd.PersistentFlags().StringVar(&h.TargetDir, "target-dir", "", "where downloaded targets go")
	cmd.PersistentFlags().StringArrayVar(&names, "target-name", nil, "target to download (repeatable)")
	cmd.PersistentFlags().StringVar(&at, "time", envOr("TRAINYARD_TUF_TIME", ""), "reference time, RFC 3339 or Unix seconds (TRAINYARD_TUF_TIME; default: FAKETIME as libfaketime reads it, else now)")
	prep := func() error {
		if h.MetadataDir == "" {
			return &ExitError{Code: 2, Err: errors.New("--metadata-dir is required")}
		}
		if at == "" {
			// tuf-conformance runs clients under faketime, whose preload
			// library a Go binary never loads: read its FAKETIME instead
			if ft := os.Getenv("FAKETIME"); ft != "" {
				t, err := client.FakeTime(ft, time.Now())
				if err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("FAKETIME: %w", err)}
				}
				h.Now = t
			}
		}
		if at != "" {
			t, err := parseTime(at)
			if err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("--time: %w", err)}
			}
			h.Now = t
		}
		return nil
	}
	cmd.AddCommand(
		&cobra.Command{Use: "init ROOT.json", Example: examples["tuf client init"], Short: "Trust ROOT.json (no network)", Args: cobra.ExactArgs(1),
			RunE: func(_ *cobra.Command, args []string) error {
				if err := prep(); err != nil {
					return err
				}
				data, err := os.ReadFile(args[0])
				if err != nil {
					return err
				}
				return client.HTTPInit(h.MetadataDir, data)
			}},
		&cobra.Command{Use: "refresh", Example: examples["tuf client refresh"], Short: "Update the top-level metadata", Args: cobra.NoArgs,
			RunE: func(_ *cobra.Command, _ []string) error {
				if err := prep(); err != nil {
					return err
				}
				return client.HTTPRefresh(h)
			}},
		&cobra.Command{Use: "download", Example: examples["tuf client download"], Short: "Refresh, then download each --target-name into --target-dir", Args: cobra.NoArgs,
			RunE: func(_ *cobra.Command, _ []string) error {
				if err := prep(); err != nil {
					return err
				}
				return client.HTTPDownload(h, names...)
			}},
	)
	return cmd
}

// TUFTarget is one element of `tuf list-master-targets -o json` and
// `tuf list-copy-targets -o json`.
type TUFTarget struct {
	Name string `json:"name"`
}

// TUFExpiration is one element of `tuf get-master-expirations -o json` and
// `tuf get-copy-expirations -o json`.
type TUFExpiration struct {
	Role    string    `json:"role"`
	Expires time.Time `json:"expires"`
}

// TUFRepo is one element of `tuf list-repos -o json`.
type TUFRepo struct {
	Name string `json:"name"`
}

// TUFBlobSize is one element of `tuf blob-sizes -o json`: one part of one
// target, in the order of the text output.
type TUFBlobSize struct {
	Target string `json:"target"`
	Part   int    `json:"part"` // 0-based index of the part in the target
	Length int64  `json:"length"`
}

// withJSON adds -o text|json to c and checks it before c's work.
func withJSON(format *string, c *cobra.Command) *cobra.Command {
	check := outputFlag(c, format)
	run := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := check(); err != nil {
			return err
		}
		return run(cmd, args)
	}
	return c
}

// tufList prints what list returns with write (-o text or json): the
// listings of both sides, the publisher's working metadata and the
// client's trusted copy.
func tufList[T any](cmd *cobra.Command, format string, list func() (T, error), write func(io.Writer, string, T) error) error {
	v, err := list()
	if err != nil {
		return err
	}
	return write(cmd.OutOrStdout(), format, v)
}

func writeTUFTargets(w io.Writer, format string, names []string) error {
	if format == "json" {
		js := []TUFTarget{}
		for _, n := range names {
			js = append(js, TUFTarget{Name: n})
		}
		return writeJSON(w, js)
	}
	for _, n := range names {
		fmt.Fprintln(w, n)
	}
	return nil
}

func writeTUFExpirations(w io.Writer, format string, exps []tuf.Expiration) error {
	if format == "json" {
		js := []TUFExpiration{}
		for _, e := range exps {
			js = append(js, TUFExpiration{Role: e.Role, Expires: e.Expires.UTC()})
		}
		return writeJSON(w, js)
	}
	for _, e := range exps {
		fmt.Fprintf(w, "%s: %s\n", e.Role, e.Expires.Format(time.RFC3339))
	}
	return nil
}

// targetSources maps push-target's arguments (dtuf's syntax: a file, or
// @TARGET for an existing target's parts) to the parts of one target.
func targetSources(args []string) repo.Source {
	srcs := make([]repo.Source, len(args))
	for i, a := range args {
		if name, ok := strings.CutPrefix(a, "@"); ok {
			srcs[i] = repo.FromTarget(name)
		} else {
			srcs[i] = repo.FromFile(a)
		}
	}
	return repo.Concat(srcs...)
}
