package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/keyserver"
)

func init() { register(newKeyserverCmd) }

func newKeyserverCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keyserver", Short: "The key server that holds sealed archives' key fragments"}
	var data string
	cmd.PersistentFlags().StringVar(&data, "data", envOr("TRAINYARD_KEYSERVER_DATA", "trainyard-keyserver"), "data directory holding keyserver.db (TRAINYARD_KEYSERVER_DATA)")
	// withStore opens an existing store; only the commands that create state
	// (serve, token create, fragment add) use withNewStore, so a mistyped
	// --data is refused instead of answered from a fresh empty database.
	// While a server runs on --data it holds the bbolt lock; the commands
	// then go through its admin API (the data dir's admin.sock and
	// admin.token), which answers the same calls.
	openWith := func(open func(string) (*keyserver.Store, error), fn func(cmd *cobra.Command, args []string, st keyStore) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			ac, dialErr := keyserver.DialAdmin(data)
			if dialErr == nil {
				defer ac.Close()
				return fn(cmd, args, ac)
			}
			st, err := open(data)
			if errors.Is(err, keyserver.ErrLocked) {
				return fmt.Errorf("%w, and %v", err, dialErr)
			}
			if errors.Is(err, keyserver.ErrNoStore) {
				return fmt.Errorf("%w; create one with 'trainyard keyserver serve', 'token create' or 'fragment add', or pass the right --data", err)
			}
			if err != nil {
				return err
			}
			defer st.Close()
			return fn(cmd, args, st)
		}
	}
	withStore := func(fn func(cmd *cobra.Command, args []string, st keyStore) error) func(*cobra.Command, []string) error {
		return openWith(keyserver.OpenExisting, fn)
	}
	withNewStore := func(fn func(cmd *cobra.Command, args []string, st keyStore) error) func(*cobra.Command, []string) error {
		return openWith(keyserver.Open, fn)
	}

	var addr, cert, key string
	var tokOut, fragOut, auditOut string
	var checkTokOut, checkFragOut, checkAuditOut func() error
	var ipRate, tokRate, failRate float64
	var ipBurst, tokBurst, failBurst, v4Bits, v6Bits, auditRows int
	var auditAge time.Duration
	serve := &cobra.Command{
		Use: "serve", Example: examples["keyserver serve"],
		Short: "Serve fragments over HTTP(S) until SIGINT/SIGTERM (GET /binary-split/key-fragment, GET /v1/fragments/{archive})",
		Long: "Serve fragments over HTTP(S) until SIGINT/SIGTERM (GET /binary-split/key-fragment, GET /v1/fragments/{archive}).\n" +
			"While it serves, the token, fragment and audit commands on the same --data use its admin API:\n" +
			"the unix socket DATA/admin.sock and the bearer token in DATA/admin.token (both 0600, removed at exit).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Audit events go to stderr at info level whatever --verbose says.
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			return keyserver.Serve(cmd.Context(), keyserver.Listen{Addr: addr, DataDir: data, TLSCert: cert, TLSKey: key, Ready: func(a net.Addr) {
				scheme := "http"
				if cert != "" {
					scheme = "https"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "key server listening on %s://%s, data in %s\n", scheme, a, data)
			}}, keyserver.WithLogger(logger), keyserver.WithIPRateLimit(ipRate, ipBurst), keyserver.WithTokenRateLimit(tokRate, tokBurst),
				keyserver.WithFailureLimit(failRate, failBurst), keyserver.WithPrefixBits(v4Bits, v6Bits), keyserver.WithRetention(auditAge, auditRows))
		},
	}
	serve.Flags().StringVar(&addr, "addr", envOr("TRAINYARD_KEYSERVER_ADDR", "127.0.0.1:8443"), "listen address (TRAINYARD_KEYSERVER_ADDR)")
	serve.Flags().StringVar(&cert, "tls-cert", envOr("TRAINYARD_KEYSERVER_TLS_CERT", ""), "TLS certificate PEM (TRAINYARD_KEYSERVER_TLS_CERT)")
	serve.Flags().StringVar(&key, "tls-key", envOr("TRAINYARD_KEYSERVER_TLS_KEY", ""), "TLS private key PEM (TRAINYARD_KEYSERVER_TLS_KEY)")
	serve.Flags().Float64Var(&ipRate, "rate-ip", 5, "requests per second per client address prefix (see --prefix-v4/--prefix-v6)")
	serve.Flags().IntVar(&ipBurst, "burst-ip", 20, "burst per client address prefix")
	serve.Flags().IntVar(&v4Bits, "prefix-v4", keyserver.DefaultPrefixBitsV4, "IPv4 prefix length that rate limits are keyed by")
	serve.Flags().IntVar(&v6Bits, "prefix-v6", keyserver.DefaultPrefixBitsV6, "IPv6 prefix length that rate limits are keyed by")
	serve.Flags().Float64Var(&tokRate, "rate-token", 1, "requests per second per token")
	serve.Flags().IntVar(&tokBurst, "burst-token", 10, "burst per token")
	serve.Flags().Float64Var(&failRate, "rate-fail", 10, "failed token checks per second across all clients; past it requests get 429 unchecked")
	serve.Flags().IntVar(&failBurst, "burst-fail", 50, "burst of failed token checks across all clients")
	serve.Flags().DurationVar(&auditAge, "audit-max-age", keyserver.DefaultAuditMaxAge, "delete audit rows and refusal counts older than this")
	serve.Flags().IntVar(&auditRows, "audit-max-rows", keyserver.DefaultAuditMaxRows, "keep at most this many audit rows (and refusal-count rows), oldest deleted first")

	token := &cobra.Command{Use: "token", Short: "Bearer tokens (stored as SHA-256 hashes; the secret is shown once)"}
	var device, archive, label string
	var ttl time.Duration
	create := &cobra.Command{
		Use: "create --device NAME [--archive ID]", Example: examples["keyserver token create"],
		Short: "Create a token for a device (optionally only for one archive); prints the secret once",
		Args:  cobra.NoArgs,
		RunE: withNewStore(func(cmd *cobra.Command, _ []string, st keyStore) error {
			secret, t, err := st.CreateTokenTTL(device, archive, label, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s for device %s created; the secret below is not stored and cannot be shown again\n", t.ID, t.Device)
			fmt.Fprintln(cmd.OutOrStdout(), secret)
			return nil
		}),
	}
	create.Flags().StringVar(&device, "device", "", "device the token belongs to (required)")
	create.Flags().StringVar(&archive, "archive", "", "limit the token to one archive")
	create.Flags().StringVar(&label, "name", "", "free-form label")
	create.Flags().DurationVar(&ttl, "ttl", keyserver.DefaultTokenTTL, "expire the token after this long (e.g. 720h); 0 for a token that never expires")
	_ = create.MarkFlagRequired("device")
	revoke := &cobra.Command{
		Use: "revoke TOKEN-ID|SECRET", Example: examples["keyserver token revoke"],
		Short: "Revoke a token, named by its id (token list) or by its secret",
		Args:  cobra.ExactArgs(1),
		RunE: withStore(func(cmd *cobra.Command, args []string, st keyStore) error {
			if err := st.RevokeToken(args[0]); err != nil {
				return err
			}
			if strings.HasPrefix(args[0], keyserver.TokenPrefix) {
				fmt.Fprintln(cmd.OutOrStdout(), "token revoked (named by its secret)") // never echo a secret
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked\n", args[0])
			return nil
		}),
	}
	list := &cobra.Command{
		Use: "list", Example: examples["keyserver token list"],
		Short: "List tokens",
		Args:  cobra.NoArgs,
		RunE: withStore(func(cmd *cobra.Command, _ []string, st keyStore) error {
			if err := checkTokOut(); err != nil {
				return err
			}
			ts, err := st.ListTokens()
			if err != nil {
				return err
			}
			if tokOut == "json" {
				out := make([]TokenInfo, 0, len(ts))
				for _, t := range ts {
					out = append(out, TokenInfo{ID: t.ID, Device: t.Device, Archive: t.Archive, Name: t.Name, Created: t.Created, Expires: t.Expires, Revoked: t.Revoked})
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tDEVICE\tARCHIVE\tCREATED\tEXPIRES\tREVOKED\tNAME")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Device, dash(t.Archive), t.Created.Format(time.RFC3339), when(t.Expires), when(t.Revoked), t.Name)
			}
			return tw.Flush()
		}),
	}
	checkTokOut = outputFlag(list, &tokOut)
	token.AddCommand(create, revoke, list)

	fragment := &cobra.Command{Use: "fragment", Short: "Key fragments per archive and device"}
	var file string
	add := &cobra.Command{
		Use: "add --archive ID --device NAME --file FRAGMENT", Example: examples["keyserver fragment add"],
		Short: "Store a fragment written by 'trainyard seal' (or a legacy azaion fragment)",
		Args:  cobra.NoArgs,
		RunE: withNewStore(func(cmd *cobra.Command, _ []string, st keyStore) error {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			if err := st.AddFragment(archive, device, b); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fragment for archive %s, device %s stored; delete %s now\n", archive, device, file)
			return nil
		}),
	}
	add.Flags().StringVar(&archive, "archive", "", "archive id (required)")
	add.Flags().StringVar(&device, "device", "", "device name (required)")
	add.Flags().StringVar(&file, "file", "", "fragment file (required)")
	for _, n := range []string{"archive", "device", "file"} {
		_ = add.MarkFlagRequired(n)
	}
	flist := &cobra.Command{
		Use: "list [--archive ID]", Example: examples["keyserver fragment list"],
		Short: "List fragments (never their bytes)",
		Args:  cobra.NoArgs,
		RunE: withStore(func(cmd *cobra.Command, _ []string, st keyStore) error {
			if err := checkFragOut(); err != nil {
				return err
			}
			fs, err := st.ListFragments(archive)
			if err != nil {
				return err
			}
			if fragOut == "json" {
				out := make([]FragmentInfo, 0, len(fs))
				for _, f := range fs {
					out = append(out, FragmentInfo{Archive: f.Archive, Device: f.Device, Created: f.Created, Revoked: f.Revoked})
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ARCHIVE\tDEVICE\tCREATED\tREVOKED")
			for _, f := range fs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Archive, f.Device, f.Created.Format(time.RFC3339), when(f.Revoked))
			}
			return tw.Flush()
		}),
	}
	flist.Flags().StringVar(&archive, "archive", "", "only this archive")
	checkFragOut = outputFlag(flist, &fragOut)
	frevoke := &cobra.Command{
		Use: "revoke --archive ID [--device NAME]", Example: examples["keyserver fragment revoke"],
		Short: "Revoke (and erase) an archive's fragment for one device, or for all devices",
		Args:  cobra.NoArgs,
		RunE: withStore(func(cmd *cobra.Command, _ []string, st keyStore) error {
			if archive == "" {
				return &ExitError{Code: 2, Err: errors.New("fragment revoke: --archive is required")}
			}
			n, err := st.RevokeFragment(archive, device)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d fragment(s) of archive %s revoked\n", n, archive)
			return nil
		}),
	}
	frevoke.Flags().StringVar(&archive, "archive", "", "archive id (required)")
	frevoke.Flags().StringVar(&device, "device", "", "only this device")
	fragment.AddCommand(add, flist, frevoke)

	var last int
	var refusals bool
	audit := &cobra.Command{
		Use: "audit [-n N] [--refusals]", Example: examples["keyserver audit"],
		Short: "Print the audit log (JSON lines, oldest first), or with --refusals the refusal counts per minute, prefix and reason",
		Args:  cobra.NoArgs,
		RunE: withStore(func(cmd *cobra.Command, _ []string, st keyStore) error {
			if err := checkAuditOut(); err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			if refusals {
				rc, err := st.Refusals()
				if err != nil {
					return err
				}
				if auditOut == "json" {
					if rc == nil {
						rc = []keyserver.RefusalCount{}
					}
					return writeJSON(cmd.OutOrStdout(), rc)
				}
				for _, c := range rc {
					if err := enc.Encode(c); err != nil {
						return err
					}
				}
				return nil
			}
			evs, err := st.AuditLog(last)
			if err != nil {
				return err
			}
			if auditOut == "json" {
				if evs == nil {
					evs = []keyserver.Event{}
				}
				return writeJSON(cmd.OutOrStdout(), evs)
			}
			for _, e := range evs {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	audit.Flags().IntVarP(&last, "last", "n", 100, "number of most recent events (0: all)")
	audit.Flags().BoolVar(&refusals, "refusals", false, "print the refusal counts instead of the audit rows")
	checkAuditOut = outputFlag(audit, &auditOut)

	cmd.AddCommand(serve, token, fragment, audit)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// keyStore is what the admin commands need: the store itself, or a running
// server's admin API (keyserver.AdminClient) when the server holds the lock.
type keyStore interface {
	CreateTokenTTL(device, archive, label string, ttl time.Duration) (string, *keyserver.Token, error)
	RevokeToken(idOrSecret string) error
	ListTokens() ([]keyserver.Token, error)
	AddFragment(archive, device string, data []byte) error
	RevokeFragment(archive, device string) (int, error)
	ListFragments(archive string) ([]keyserver.Fragment, error)
	AuditLog(n int) ([]keyserver.Event, error)
	Refusals() ([]keyserver.RefusalCount, error)
}

// TokenInfo is one element of `keyserver token list -o json` (never the
// secret or its hash).
type TokenInfo struct {
	ID      string     `json:"id"`
	Device  string     `json:"device"`
	Archive string     `json:"archive,omitempty"`
	Name    string     `json:"name,omitempty"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// FragmentInfo is one element of `keyserver fragment list -o json` (never
// the fragment's bytes).
type FragmentInfo struct {
	Archive string     `json:"archive"`
	Device  string     `json:"device"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
}
