package station

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server watches a station's inbox repository and processes every train that
// arrives, once per manifest digest; it serves /status (recent stops, JSON),
// /healthz and /metrics (Prometheus).
type Server struct {
	Station  *Station
	DB       *DB
	Interval time.Duration // poll interval; default 5s

	once    sync.Once
	reg     *prometheus.Registry
	stops   *prometheus.CounterVec
	seconds prometheus.Histogram
	polls   prometheus.Counter
	mu      sync.Mutex
	lastErr string

	trustWarned time.Time // last "trust directory expires soon" warning
}

// trustExpiry is what a trust store can tell about its own freshness
// (trust.Store does): the role of its signed metadata that expires first,
// when, and that version's lifetime; Refresh updates it between trains.
type trustExpiry interface {
	Expiry() (role string, expires time.Time, lifetime time.Duration, err error)
	Refresh(ctx context.Context) error
}

// trustStatus is the trust part of /status (nil without a trust store
// that reports expiry).
func (s *Server) trustStatus() map[string]any {
	te, ok := s.Station.Trust.(trustExpiry)
	if !ok {
		return nil
	}
	role, exp, life, err := te.Expiry()
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	return map[string]any{"first_expiring_role": role, "expires": exp.UTC().Format(time.RFC3339),
		"seconds_left": int64(time.Until(exp).Seconds()), "lifetime_seconds": int64(life.Seconds())}
}

// checkTrust updates the trust directory between trains and warns (at
// most every ten minutes) when less than a fifth of its lifetime is left:
// the directory's admin has stopped running `trainyard trust refresh`.
func (s *Server) checkTrust(ctx context.Context) {
	te, ok := s.Station.Trust.(trustExpiry)
	if !ok {
		return
	}
	rerr := te.Refresh(ctx)
	role, exp, life, err := te.Expiry()
	if err != nil || ctx.Err() != nil {
		return
	}
	left := time.Until(exp)
	if left >= life/5 || time.Since(s.trustWarned) < 10*time.Minute {
		return
	}
	s.trustWarned = time.Now()
	args := []any{"role", role, "expires", exp.UTC().Format(time.RFC3339), "left", left.Round(time.Second).String()}
	if rerr != nil {
		args = append(args, "update_error", rerr.Error())
	}
	s.Station.logger().Warn("trust directory expires soon: its admin must run `trainyard trust refresh`", args...)
}

func (s *Server) init() {
	s.once.Do(func() {
		s.reg = prometheus.NewRegistry()
		s.stops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trainyard_station_stops_total",
			Help: "Train stops processed, by result (done or refused)."}, []string{"result"})
		s.seconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "trainyard_station_stop_seconds",
			Help: "Duration of a whole stop (pull to push).", Buckets: prometheus.ExponentialBuckets(0.25, 2, 12)})
		s.polls = prometheus.NewCounter(prometheus.CounterOpts{Name: "trainyard_station_polls_total",
			Help: "Inbox polls."})
		s.reg.MustRegister(s.stops, s.seconds, s.polls)
		if te, ok := s.Station.Trust.(trustExpiry); ok {
			s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trainyard_trust_expiry_seconds",
				Help: "Seconds until the first role of the trusted trust-directory metadata expires (negative: expired)."},
				func() float64 {
					_, exp, _, err := te.Expiry()
					if err != nil {
						return math.NaN()
					}
					return time.Until(exp).Seconds()
				}))
		}
	})
}

// PollOnce processes every new train in the inbox and returns the stops run.
func (s *Server) PollOnce(ctx context.Context) ([]*Stop, error) {
	s.init()
	s.polls.Inc()
	inbox := s.Station.Network.Inbox(s.Station.ID)
	tags, err := s.Station.Client.ListTags(ctx, inbox)
	if err != nil {
		if isNameUnknown(err) {
			return nil, nil // no train has ever arrived
		}
		s.setErr(err)
		return nil, err
	}
	sort.Strings(tags)
	var done []*Stop
	for _, tag := range tags {
		ref := inbox + ":" + tag
		// HEAD only: a poll never downloads a manifest, let alone a large one.
		_, desc, err := headManifest(ctx, s.Station.Client, ref)
		if err != nil {
			s.setErr(err)
			continue
		}
		digest := desc.Digest.String()
		if s.DB.Seen(tag, digest) {
			continue
		}
		st, err := s.Station.Process(ctx, inbox+"@"+digest)
		st.Tag = tag
		result := "done"
		if err != nil {
			result = "refused"
			if ctx.Err() != nil {
				return done, ctx.Err() // interrupted: try again next start
			}
		}
		s.stops.WithLabelValues(result).Inc()
		s.seconds.Observe(st.Duration.Seconds())
		if err := s.DB.Record(tag, digest, st); err != nil {
			return done, err
		}
		done = append(done, st)
	}
	s.setErr(nil)
	return done, nil
}

func (s *Server) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = ""
	if err != nil {
		s.lastErr = err.Error()
	}
}

// Handler serves /status, /healthz and /metrics.
func (s *Server) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		recent, err := s.DB.Recent(50)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.mu.Lock()
		lastErr := s.lastErr
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"station": s.Station.ID, "inbox": s.Station.Network.Inbox(s.Station.ID),
			"last_error": lastErr, "recent": recent, "trust": s.trustStatus(),
		})
	})
	return mux
}

// Serve polls until ctx ends, serving the status endpoint on addr ("" for
// none). ready, if set, receives the status listener's address.
func (s *Server) Serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	s.init()
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ln) //nolint:errcheck // closed below
		defer hs.Close()
		if ready != nil {
			ready(ln.Addr())
		}
	}
	interval := s.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.PollOnce(ctx); err != nil && ctx.Err() == nil {
			s.Station.logger().Warn("poll failed", "error", err.Error())
		}
		s.checkTrust(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// isNameUnknown reports a registry's "repository not known" answer.
func isNameUnknown(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}
