package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/protocol/phtv2"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/station/console"
	"github.com/trainyard/trainyard/trainrun"
)

func init() { register(newStationCmd) }

// stationFlags configure a station for run and serve.
type stationFlags struct {
	trust                     trustFlags
	id, key, data, network    string
	work, runtime, dockerHost string
	trainLogs, stateDir       string
	noData                    bool
	protocol                  string
	memory                    byteSize
	pids                      int64
	cpus                      float64
	timeout                   nonNegativeDuration
	maxResults                byteSize
}

func (f *stationFlags) add(cmd *cobra.Command) {
	f.trust.add(cmd)
	p := cmd.PersistentFlags()
	p.StringVar(&f.id, "id", envOr("TRAINYARD_STATION_ID", envOr("STATION_ID", "")), "this station's id (TRAINYARD_STATION_ID or STATION_ID)")
	p.StringVar(&f.key, "key", envOr("TRAINYARD_STATION_KEY", envOr("PRIVATE_KEY_PATH", "")), "this station's private key file (TRAINYARD_STATION_KEY or PRIVATE_KEY_PATH; an encrypted pht-v2 key takes its password from PRIVATE_KEY_PASSWORD)")
	p.StringVar(&f.data, "data", envOr("TRAINYARD_STATION_DATA", ""), "data directory mounted read-only at /opt/pht_data; required unless --no-data (TRAINYARD_STATION_DATA)")
	p.BoolVar(&f.noData, "no-data", false, "run trains with no data directory (instead of --data)")
	p.StringVar(&f.stateDir, "state-dir", envOr("TRAINYARD_STATION_STATE", ""), "the station's state: database, train logs, work files, results under review, admin socket (TRAINYARD_STATION_STATE; default TRAINYARD_STATE_HOME/station-ID, else /var/lib/trainyard/station-ID as root, ~/.local/state/trainyard/station-ID otherwise)")
	p.StringVar(&f.network, "network", envOr("TRAINYARD_NETWORK", ""), "registry prefix of the network's inboxes, e.g. 127.0.0.1:5000/trainyard (TRAINYARD_NETWORK)")
	p.StringVar(&f.trainLogs, "train-logs", envOr("TRAINYARD_STATION_TRAIN_LOGS", ""), "where each stop's train output is kept, 0600, 1 MiB per stop (TRAINYARD_STATION_TRAIN_LOGS; default STATE-DIR/logs)")
	p.StringVar(&f.work, "work-dir", envOr("TRAINYARD_STATION_WORK", ""), "where bundles and blobs are staged (TRAINYARD_STATION_WORK; default STATE-DIR/work)")
	p.StringVar(&f.protocol, "protocol", envOr("TRAINYARD_PROTOCOL", station.ProtocolV1), "train protocol: v1 (trust directory) or pht-v2 (legacy PHT trains; --key is then the station's RSA PEM) (TRAINYARD_PROTOCOL)")
	p.StringVar(&f.runtime, "runtime", envOr("TRAINYARD_RUNTIME", "runc"), "execution backend: runc or docker (TRAINYARD_RUNTIME)")
	p.StringVar(&f.dockerHost, "docker-host", envOr("DOCKER_HOST", ""), "Docker Engine API address for --runtime docker (DOCKER_HOST)")
	p.Var(&f.memory, "memory", "memory limit per train, e.g. 512M or 2Gi (TRAINYARD_STATION_MEMORY; default 512 MiB)")
	p.Int64Var(&f.pids, "pids", 0, "process limit per train (TRAINYARD_STATION_PIDS; default 256)")
	p.Float64Var(&f.cpus, "cpus", 0, "CPU quota in cores (TRAINYARD_STATION_CPUS; default unlimited)")
	p.Var(&f.timeout, "timeout", "kill a train after this long, e.g. 90m; also bounds post-run (TRAINYARD_STATION_TIMEOUT; default 1h)")
	f.maxResults = byteSize(trainrun.DefaultMaxResults)
	p.Var(&f.maxResults, "max-results", "cap on a train's results, enforced while it runs (runc: a filesystem of that size) and when they are sealed, e.g. 512M or 2Gi (TRAINYARD_MAX_RESULTS)")
}

// state is the station's state directory: --state-dir, else one per
// station id under /var/lib/trainyard (root) or the user's state home.
func (f *stationFlags) state() string {
	if f.stateDir != "" {
		return f.stateDir
	}
	base := "/var/lib/trainyard"
	if h := os.Getenv("TRAINYARD_STATE_HOME"); h != "" {
		base = h
	} else if os.Geteuid() != 0 {
		base = os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".local", "state")
		}
		base = filepath.Join(base, "trainyard")
	}
	return filepath.Join(base, "station-"+f.id)
}

// workDir is --work-dir or STATE/work.
func (f *stationFlags) workDir() string {
	if f.work != "" {
		return f.work
	}
	return filepath.Join(f.state(), "work")
}

// logDir is where train output is kept: --train-logs or STATE/logs.
func (f *stationFlags) logDir() string {
	if f.trainLogs != "" {
		return f.trainLogs
	}
	return filepath.Join(f.state(), "logs")
}

func (f *stationFlags) dbPath() string      { return filepath.Join(f.state(), "station.db") }
func (f *stationFlags) reviewDir() string   { return filepath.Join(f.state(), "review") }
func (f *stationFlags) adminSocket() string { return filepath.Join(f.state(), "admin.sock") }

// makeState creates the state directory and its parts, private to the
// station's user.
func (f *stationFlags) makeState() error {
	for _, d := range []string{f.state(), f.workDir(), f.logDir(), f.reviewDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
	}
	return os.Chmod(f.state(), 0o700)
}

// station builds the station from the flags. private names further files
// of the station (its database) that the data directory must not hold.
func (f *stationFlags) station(cmd *cobra.Command, private ...string) (*station.Station, error) {
	for name, v := range map[string]string{"--id": f.id, "--key": f.key, "--network": f.network} {
		if v == "" {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("%s is required", name)}
		}
	}
	if err := applyEnv(cmd, [][2]string{{"max-results", "TRAINYARD_MAX_RESULTS"}, {"memory", "TRAINYARD_STATION_MEMORY"},
		{"pids", "TRAINYARD_STATION_PIDS"}, {"cpus", "TRAINYARD_STATION_CPUS"}, {"timeout", "TRAINYARD_STATION_TIMEOUT"}}); err != nil {
		return nil, err
	}
	if f.pids < 0 || f.cpus < 0 {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("--pids and --cpus must not be negative")}
	}
	if f.maxResults < byteSize(trainrun.MinMaxResults) {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("--max-results %d is below the minimum of 1 MiB", int64(f.maxResults))}
	}
	// A forgotten --data would run the train on nothing and use up its
	// stop: no data must be said.
	switch {
	case f.data == "" && !f.noData:
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("--data is required (or --no-data to run trains without data)")}
	case f.data != "" && f.noData:
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("--data and --no-data exclude each other")}
	}
	// Before the key is read: a key others can read, or anything of the
	// station's inside the directory every train reads, is refused.
	if err := station.CheckSetup(f.data, f.key, append([]string{f.state(), f.workDir(), f.logDir()}, private...)...); err != nil {
		return nil, err
	}
	if err := f.makeState(); err != nil {
		return nil, err
	}
	s := &station.Station{ID: f.id, Client: newClient(cmd, f.trust.insecure),
		Network: station.Network{Prefix: f.network}, DataDir: f.data, WorkDir: f.workDir(), ReviewDir: f.reviewDir(),
		Memory: int64(f.memory), PIDs: f.pids, CPUs: f.cpus, Timeout: time.Duration(f.timeout), MaxResults: int64(f.maxResults),
		TrainLogDir: f.logDir(), Logger: slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))}
	switch f.protocol {
	case station.ProtocolV1:
		key, err := loadPrivateKey(cmd, f.key)
		if err != nil {
			return nil, err
		}
		if s.Trust, err = f.trust.store(cmd.Context(), cmd); err != nil {
			return nil, err
		}
		s.Protocol = station.V1{Key: key}
	case station.ProtocolPHTv2:
		key, err := phtv2.LoadPrivateKeyFile(f.key, []byte(os.Getenv("PRIVATE_KEY_PASSWORD")))
		if err != nil {
			return nil, err
		}
		s.Protocol = station.PHTv2{Key: key}
	default:
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("unknown --protocol %q (v1 or pht-v2)", f.protocol)}
	}
	switch f.runtime {
	case "runc":
		r := trainrun.NewRunc(trainrun.WithBundleDir(f.workDir()))
		if err := r.Available(); err != nil {
			return nil, err
		}
		s.Runner = r
	case "docker":
		var opts []trainrun.DockerOption
		if f.dockerHost != "" {
			opts = append(opts, trainrun.WithDockerHost(f.dockerHost))
		}
		d, err := trainrun.NewDocker(opts...)
		if err != nil {
			return nil, err
		}
		s.Runner = d
	default:
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("unknown --runtime %q (runc or docker)", f.runtime)}
	}
	// A predecessor killed mid-stop may have left a running train, its
	// bundle and plaintext in the work dir: removed before the first stop.
	if err := s.Recover(cmd.Context()); err != nil {
		return nil, err
	}
	return s, nil
}

func newStationCmd() *cobra.Command {
	var f stationFlags
	cmd := &cobra.Command{Use: "station", Short: "Run trains at this station: verify, execute with no network, seal results, pass on"}
	f.add(cmd)
	var review bool
	run := &cobra.Command{
		Use: "run IMAGE", Example: examples["station run"],
		Short: "One stop: pull IMAGE, pre-run, run it, post-run, push it to the next hop's inbox",
		Long: `One stop: pull IMAGE, pre-run, run it, post-run, push it to the next hop's inbox.

The stop is recorded in the station's state directory, as serve records it,
so a stop that is done is never run again. While serve runs on the same state
directory, the stop runs inside serve (through its admin socket).

Exit codes: 0 done; 3 waiting for the operator (results under review);
4 refused (verification, approval, route, replay); 5 failed (the train's
exit code, out of memory, timeout, results over the cap); 1 anything else
(registry, network, runtime: try again).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.id == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--id is required")}
			}
			if ac, err := station.DialAdmin(f.adminSocket()); err == nil {
				st, err := ac.Run(cmd.Context(), args[0])
				return stopOutcome(cmd, st, err)
			}
			s, err := f.station(cmd, f.dbPath())
			if err != nil {
				return err
			}
			d, err := station.OpenDB(f.dbPath())
			if err != nil {
				return err
			}
			defer d.Close()
			s.DB, s.ReviewResults = d, review
			// One stop, one line: the outcome is printed below, the
			// structured record only with -v.
			s.Logger = slog.New(slog.DiscardHandler)
			if slog.Default().Enabled(cmd.Context(), slog.LevelDebug) {
				s.Logger = slog.Default()
			}
			st, err := s.Process(cmd.Context(), args[0])
			return stopOutcome(cmd, st, err)
		},
	}
	run.Flags().BoolVar(&review, "review-results", false, "keep the results in the state dir until station release or station withhold")
	var statusAddr, db string
	var interval, grace, healthAfter time.Duration
	var hold, withConsole bool
	var tlsCert, tlsKey string
	serve := &cobra.Command{
		Use: "serve", Example: examples["station serve"],
		Short: "Watch this station's inbox and process every train addressed to it; /status, /healthz, /metrics, admin socket",
		Long: `Watch this station's inbox and process every train addressed to it.

Failures are classed once: transient ones (registry, network, trust update,
runtime) are retried with backoff and never recorded as a verdict; refused
trains (verification, approval, route, replay) and failed ones (exit code,
out of memory, timeout) are final and recorded, and the creator gets a signed
notice. Tags that are not trains (sha256-* referrers, .sig, .att, .sbom,
indexes, artifacts) are skipped.

On SIGTERM a running train has --grace to finish; then it is stopped and its
stop recorded as interrupted, to run again (from the same input) on the next
start. The admin socket STATE-DIR/admin.sock serves the station's commands
(history, logs, accept, reject, release, withhold, retry, results) while
serve runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.id == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--id is required")}
			}
			if err := applyEnv(cmd, [][2]string{{"interval", "TRAINYARD_STATION_INTERVAL"}, {"grace", "TRAINYARD_STATION_GRACE"},
				{"health-after", "TRAINYARD_STATION_HEALTH_AFTER"}}); err != nil {
				return err
			}
			if db == "" {
				db = f.dbPath()
			}
			s, err := f.station(cmd, db)
			if err != nil {
				return err
			}
			d, err := station.OpenDB(db)
			if err != nil {
				return err
			}
			defer d.Close()
			s.DB, s.Hold, s.ReviewResults = d, hold, review
			srv := &station.Server{Station: s, Interval: interval, Grace: grace, HealthAfter: healthAfter,
				Version: buildVersion().Version, AdminSocket: f.adminSocket(), TLSCert: tlsCert, TLSKey: tlsKey}
			if (tlsCert == "") != (tlsKey == "") {
				return &ExitError{Code: 2, Err: fmt.Errorf("--tls-cert and --tls-key go together")}
			}
			if withConsole && statusAddr != "" {
				c, err := console.New(console.Options{Admin: srv.Admin(), TokenFile: f.consoleTokenFile(), Version: buildVersion().Version,
					Inspect: func(ctx context.Context, st *station.Stop) (*station.Inspection, error) {
						return s.Inspect(ctx, st.Source)
					}})
				if err != nil {
					return err
				}
				srv.Console = c
			}
			return srv.Serve(cmd.Context(), statusAddr, func(a net.Addr) {
				where := ""
				if a != nil {
					scheme := "http"
					if tlsCert != "" {
						scheme = "https"
					}
					where = "; status on " + scheme + "://" + a.String() + "/status"
					if srv.Console != nil {
						where = "; console on " + scheme + "://" + a.String() + "/ (log in with the token of `trainyard station console-token`)"
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "station %s watching %s%s; admin socket %s\n", f.id, s.Network.Inbox(f.id), where, f.adminSocket())
			})
		},
	}
	serve.Flags().StringVar(&statusAddr, "status-addr", envOr("TRAINYARD_STATION_STATUS_ADDR", "127.0.0.1:9090"), "status and metrics listener, \"\" for none (TRAINYARD_STATION_STATUS_ADDR)")
	serve.Flags().StringVar(&db, "db", envOr("TRAINYARD_STATION_DB", ""), "station database (TRAINYARD_STATION_DB; default STATE-DIR/station.db)")
	serve.Flags().DurationVar(&interval, "interval", 5*time.Second, "inbox poll interval (TRAINYARD_STATION_INTERVAL)")
	serve.Flags().DurationVar(&grace, "grace", 30*time.Second, "on SIGTERM, how long a running train may finish before it is stopped and its stop marked interrupted (TRAINYARD_STATION_GRACE)")
	serve.Flags().DurationVar(&healthAfter, "health-after", 5*time.Minute, "/healthz fails once inbox polls have failed for this long (TRAINYARD_STATION_HEALTH_AFTER)")
	serve.Flags().BoolVar(&withConsole, "console", envOr("TRAINYARD_STATION_CONSOLE", "1") != "0", "serve the web console on the status listener, behind a login (TRAINYARD_STATION_CONSOLE=0 turns it off); /healthz and /metrics stay open")
	serve.Flags().StringVar(&tlsCert, "tls-cert", envOr("TRAINYARD_STATION_TLS_CERT", ""), "certificate (PEM) for HTTPS on the status listener (TRAINYARD_STATION_TLS_CERT)")
	serve.Flags().StringVar(&tlsKey, "tls-key", envOr("TRAINYARD_STATION_TLS_KEY", ""), "its private key (PEM) (TRAINYARD_STATION_TLS_KEY)")
	serve.Flags().BoolVar(&hold, "hold", envOr("TRAINYARD_STATION_HOLD", "") == "1", "verified trains wait for station accept or station reject (TRAINYARD_STATION_HOLD=1)")
	serve.Flags().BoolVar(&review, "review-results", envOr("TRAINYARD_STATION_REVIEW", "") == "1", "results wait in the state dir for station release or station withhold (TRAINYARD_STATION_REVIEW=1)")
	logs := &cobra.Command{
		Use: "logs [TRAIN]", Example: examples["station logs"],
		Short: "Print the train output kept per stop (all trains, or TRAIN's), control characters escaped",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.trainLogs == "" && f.id == "" && f.stateDir == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--id, --state-dir or --train-logs is required")}
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
				// A stop the station knows: its own log, through serve
				// when it runs.
				if a, closeAdmin, err := f.admin(cmd, false); err == nil {
					defer closeAdmin()
					if _, _, err := a.Stop(cmd.Context(), name); err == nil {
						return a.Log(cmd.Context(), name, cmd.OutOrStdout())
					}
				}
			}
			ls, err := station.TrainLogs(f.logDir(), name)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, l := range ls {
				fmt.Fprintf(w, "== %s ==\n", l.Name)
				fl, err := os.Open(l.Path)
				if err != nil {
					return err
				}
				err = station.EscapeLog(w, fl)
				fl.Close()
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.AddCommand(run, serve, logs, newStationInspectCmd(&f))
	cmd.AddCommand(stationAdminCmds(&f)...)
	cmd.AddCommand(newStationConsoleTokenCmd(&f))
	return cmd
}
