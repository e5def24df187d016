package cli

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainrun"
)

func init() { register(newStationCmd) }

// stationFlags configure a station for run and serve.
type stationFlags struct {
	trust                     trustFlags
	id, key, data, network    string
	work, runtime, dockerHost string
	trainLogs                 string
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
	p.StringVar(&f.key, "key", envOr("TRAINYARD_STATION_KEY", envOr("PRIVATE_KEY_PATH", "")), "this station's private key file (TRAINYARD_STATION_KEY or PRIVATE_KEY_PATH)")
	p.StringVar(&f.data, "data", envOr("TRAINYARD_STATION_DATA", ""), "data directory mounted read-only at /opt/pht_data (TRAINYARD_STATION_DATA)")
	p.StringVar(&f.network, "network", envOr("TRAINYARD_NETWORK", ""), "registry prefix of the network's inboxes, e.g. 127.0.0.1:5000/trainyard (TRAINYARD_NETWORK)")
	p.StringVar(&f.trainLogs, "train-logs", envOr("TRAINYARD_STATION_TRAIN_LOGS", ""), "where each stop's train output is kept, 0600, 1 MiB per stop (TRAINYARD_STATION_TRAIN_LOGS; default WORK-DIR/trainyard-station-ID-logs)")
	p.StringVar(&f.work, "work-dir", envOr("TRAINYARD_STATION_WORK", ""), "where bundles and blobs are staged (TRAINYARD_STATION_WORK; default the system temp dir)")
	p.StringVar(&f.protocol, "protocol", envOr("TRAINYARD_PROTOCOL", station.ProtocolV1), "train protocol: v1 (trust directory) or pht-v2 (legacy PHT trains; --key is then the station's RSA PEM) (TRAINYARD_PROTOCOL)")
	p.StringVar(&f.runtime, "runtime", envOr("TRAINYARD_RUNTIME", "runc"), "execution backend: runc or docker (TRAINYARD_RUNTIME)")
	p.StringVar(&f.dockerHost, "docker-host", envOr("DOCKER_HOST", ""), "Docker Engine API address for --runtime docker (DOCKER_HOST)")
	p.Var(&f.memory, "memory", "memory limit per train, e.g. 512M or 2Gi (default 512 MiB)")
	p.Int64Var(&f.pids, "pids", 0, "process limit per train (default 256)")
	p.Float64Var(&f.cpus, "cpus", 0, "CPU quota in cores (default unlimited)")
	p.Var(&f.timeout, "timeout", "kill a train after this long, e.g. 90m; also bounds post-run (default 1h)")
	f.maxResults = byteSize(trainrun.DefaultMaxResults)
	p.Var(&f.maxResults, "max-results", "cap on a train's results, enforced while it runs (runc: a filesystem of that size) and when they are sealed, e.g. 512M or 2Gi (TRAINYARD_MAX_RESULTS)")
}

// workDir is --work-dir or the system temp dir it defaults to.
func (f *stationFlags) workDir() string {
	if f.work != "" {
		return f.work
	}
	return os.TempDir()
}

// logDir is where train output is kept: --train-logs, by default beside the
// stop directories in the work dir (Recover removes only those).
func (f *stationFlags) logDir() string {
	if f.trainLogs != "" {
		return f.trainLogs
	}
	return filepath.Join(f.workDir(), "trainyard-station-"+f.id+"-logs")
}

// station builds the station from the flags. private names further files
// of the station (its database) that the data directory must not hold.
func (f *stationFlags) station(cmd *cobra.Command, private ...string) (*station.Station, error) {
	for name, v := range map[string]string{"--id": f.id, "--key": f.key, "--network": f.network} {
		if v == "" {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("%s is required", name)}
		}
	}
	if v := os.Getenv("TRAINYARD_MAX_RESULTS"); v != "" && !cmd.Flags().Changed("max-results") {
		if err := f.maxResults.Set(v); err != nil {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("TRAINYARD_MAX_RESULTS: %w", err)}
		}
	}
	if f.pids < 0 || f.cpus < 0 {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("--pids and --cpus must not be negative")}
	}
	if f.maxResults < byteSize(trainrun.MinMaxResults) {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("--max-results %d is below the minimum of 1 MiB", int64(f.maxResults))}
	}
	// Before the key is read: a key others can read, or anything of the
	// station's inside the directory every train reads, is refused.
	if err := station.CheckSetup(f.data, f.key, append([]string{f.workDir(), f.logDir()}, private...)...); err != nil {
		return nil, err
	}
	s := &station.Station{ID: f.id, Protocol: f.protocol, Client: newClient(cmd, f.trust.insecure),
		Network: station.Network{Prefix: f.network}, DataDir: f.data, WorkDir: f.work,
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
		s.Key = key
	case station.ProtocolPHTv2:
		key, err := station.LoadLegacyKey(f.key)
		if err != nil {
			return nil, err
		}
		s.LegacyKey = key
	default:
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("unknown --protocol %q (v1 or pht-v2)", f.protocol)}
	}
	switch f.runtime {
	case "runc":
		r := trainrun.NewRunc(trainrun.WithBundleDir(f.work))
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
	run := &cobra.Command{
		Use: "run IMAGE", Example: examples["station run"],
		Short: "One stop: pull IMAGE, pre-run, run it, post-run, push it to the next hop's inbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := f.station(cmd)
			if err != nil {
				return err
			}
			// One stop, one line: the outcome is printed below, the
			// structured record only with -v.
			s.Logger = slog.New(slog.DiscardHandler)
			if slog.Default().Enabled(cmd.Context(), slog.LevelDebug) {
				s.Logger = slog.Default()
			}
			st, err := s.Process(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "train %s stop %d done (exit %d, %s); pushed to %s\n",
				st.Train, st.Index, st.ExitCode, st.Duration.Round(time.Millisecond), st.Pushed)
			return nil
		},
	}
	var statusAddr, db string
	var interval time.Duration
	serve := &cobra.Command{
		Use: "serve", Example: examples["station serve"],
		Short: "Watch this station's inbox and process every train addressed to it; /status, /healthz, /metrics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if db == "" {
				db = filepath.Join(".", "trainyard-station-"+f.id+".db")
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
			s.Guard = d
			srv := &station.Server{Station: s, DB: d, Interval: interval}
			return srv.Serve(cmd.Context(), statusAddr, func(a net.Addr) {
				fmt.Fprintf(cmd.OutOrStdout(), "station %s watching %s; status on http://%s/status\n", f.id, s.Network.Inbox(f.id), a)
			})
		},
	}
	serve.Flags().StringVar(&statusAddr, "status-addr", envOr("TRAINYARD_STATION_STATUS_ADDR", "127.0.0.1:9090"), "status and metrics listener (TRAINYARD_STATION_STATUS_ADDR)")
	serve.Flags().StringVar(&db, "db", envOr("TRAINYARD_STATION_DB", ""), "station database: replay guard and stop history (TRAINYARD_STATION_DB; default ./trainyard-station-ID.db)")
	serve.Flags().DurationVar(&interval, "interval", envDuration("TRAINYARD_STATION_INTERVAL", 5*time.Second), "inbox poll interval (TRAINYARD_STATION_INTERVAL)")
	logs := &cobra.Command{
		Use: "logs [TRAIN]", Example: examples["station logs"],
		Short: "Print the train output kept per stop (all trains, or TRAIN's), control characters escaped",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.trainLogs == "" && f.id == "" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--train-logs or --id is required")}
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
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
	return cmd
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		if n, err := strconv.Atoi(v); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return def
}
