package station

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/trainyard/trainyard/trainimage"
	"github.com/trainyard/trainyard/trainrun"
)

// Server watches a station's inbox repository and processes every train that
// arrives, once per stop (Station.DB records them); it serves /status (JSON),
// /healthz and /metrics (Prometheus) on its status listener, and the admin
// API on a unix socket.
type Server struct {
	Station  *Station
	Interval time.Duration // poll interval; default 5s
	// Grace is how long a running train may go on after Serve's context
	// ends (SIGTERM) before it is stopped and its stop marked interrupted;
	// default 30s.
	Grace time.Duration
	// HealthAfter: /healthz fails once polls have failed for this long;
	// default 5 minutes.
	HealthAfter time.Duration
	// MaxBackoff bounds the wait before a transiently failed train is tried
	// again (doubling from Interval); default 10 minutes.
	MaxBackoff time.Duration
	// Version is reported in /status and trainyard_station_info.
	Version string
	// AdminSocket, if set, is where Serve listens for the admin API (a unix
	// socket, 0600, in the station's state directory).
	AdminSocket string
	// Console, if set, is served on the status listener for every path but
	// /healthz and /metrics, which stay open for probes and Prometheus; it
	// does its own login (station/console), and /status is then behind it
	// too (the admin socket answers `station status` either way).
	Console http.Handler
	// TLSCert and TLSKey, if set, make the status listener HTTPS.
	TLSCert, TLSKey string

	once      sync.Once
	reg       *prometheus.Registry
	stops     *prometheus.CounterVec
	seconds   prometheus.Histogram
	polls     prometheus.Counter
	pollFails prometheus.Counter
	started   time.Time

	work sync.Mutex // one stop at a time, polls and admin runs alike

	mu        sync.Mutex
	lastErr   string
	lastPoll  time.Time
	lastOK    time.Time
	failSince time.Time // first failed poll since the last good one
	running   *Stop
	retry     map[string]*Retrying // tag@digest -> backoff

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

// stopBuckets span a stop from half a second to past the run timeout.
func stopBuckets(timeout time.Duration) []float64 {
	if timeout <= 0 {
		timeout = trainrun.DefaultTimeout
	}
	var b []float64
	for v := 0.5; ; v *= 2 {
		b = append(b, v)
		if v > 2*timeout.Seconds() {
			return b
		}
	}
}

func (s *Server) init() {
	s.once.Do(func() {
		s.started = time.Now()
		s.retry = map[string]*Retrying{}
		s.reg = prometheus.NewRegistry()
		s.stops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trainyard_station_stops_total",
			Help: "Stop attempts by result: done, failed, refused, held, review, transient, interrupted, skipped (not a train)."}, []string{"result"})
		s.seconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "trainyard_station_stop_seconds",
			Help: "Duration of a stop attempt (pull to push) in seconds.", Buckets: stopBuckets(s.Station.Timeout)})
		s.polls = prometheus.NewCounter(prometheus.CounterOpts{Name: "trainyard_station_polls_total", Help: "Inbox polls."})
		s.pollFails = prometheus.NewCounter(prometheus.CounterOpts{Name: "trainyard_station_poll_failures_total",
			Help: "Inbox polls that failed (registry unreachable, listing refused)."})
		running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trainyard_station_running",
			Help: "Trains running now (0 or 1)."}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.running != nil {
				return 1
			}
			return 0
		})
		queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trainyard_station_queued",
			Help: "Stops waiting: held, accepted, under review, to retry."}, func() float64 {
			st, err := s.Station.Status(context.Background())
			if err != nil {
				return math.NaN()
			}
			return float64(st.Queued)
		})
		info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "trainyard_station_info", Help: "Station id and version (value 1).",
			ConstLabels: prometheus.Labels{"station": s.Station.ID, "version": s.Version}})
		info.Set(1)
		uptime := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trainyard_station_uptime_seconds", Help: "Seconds since serve started."},
			func() float64 { return time.Since(s.started).Seconds() })
		s.reg.MustRegister(s.stops, s.seconds, s.polls, s.pollFails, running, info, uptime)
		if s.Station.DB != nil {
			s.reg.MustRegister(queued)
		}
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

// referrersTag matches the tags the OCI referrers fallback, cosign and
// other signers write beside images: never trains.
var referrersTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\..*)?$`)

// skipTag reports a tag that names what other tools store beside trains.
func skipTag(tag string) bool {
	if referrersTag.MatchString(tag) {
		return true
	}
	for _, suf := range []string{".sig", ".att", ".sbom"} {
		if strings.HasSuffix(tag, suf) {
			return true
		}
	}
	return false
}

// PollOnce processes every new train in the inbox and returns the stop
// attempts made. Trains that failed transiently wait their backoff; the
// error is the poll's own (listing the inbox), not a stop's.
func (s *Server) PollOnce(ctx context.Context) ([]*Stop, error) {
	return s.poll(ctx, ctx)
}

// poll lists with ctx and runs stops with runCtx, which outlives ctx by
// the grace period.
func (s *Server) poll(ctx, runCtx context.Context) ([]*Stop, error) {
	s.init()
	s.polls.Inc()
	db := s.Station.DB
	if db == nil {
		return nil, errNoDB
	}
	inbox := s.Station.Network.Inbox(s.Station.ID)
	tags, err := s.Station.Client.ListTags(ctx, inbox)
	if err != nil && isNameUnknown(err) {
		err, tags = nil, nil // no train has ever arrived
	}
	s.pollDone(err)
	if err != nil {
		return nil, err
	}
	sort.Strings(tags)
	var done []*Stop
	for _, tag := range tags {
		if ctx.Err() != nil {
			return done, ctx.Err()
		}
		if skipTag(tag) {
			continue
		}
		ref := inbox + ":" + tag
		// HEAD only: a poll never downloads a manifest, let alone a large one.
		_, desc, err := trainimage.Head(ctx, s.Station.Client, ref)
		if err != nil {
			s.Station.logger().Warn("inbox entry unreadable", "tag", tag, "error", err.Error())
			continue
		}
		digest := desc.Digest.String()
		if db.Seen(tag, digest) || desc.MediaType.IsIndex() {
			continue
		}
		key := tag + "@" + digest
		if r := s.backoff(key); r != nil && time.Now().Before(r.Next) {
			continue
		}
		st, err := s.runOne(runCtx, inbox+"@"+digest, tag)
		done = append(done, st)
		if err := s.settle(key, tag, digest, st, err); err != nil {
			return done, err
		}
		if ctx.Err() != nil {
			return done, ctx.Err() // interrupted: the stop runs again on the next start
		}
	}
	return done, nil
}

// runOne runs one stop, one at a time.
func (s *Server) runOne(ctx context.Context, ref, tag string) (*Stop, error) {
	s.work.Lock()
	defer s.work.Unlock()
	s.mu.Lock()
	s.running = &Stop{Station: s.Station.ID, Source: ref, Tag: tag, State: Running, Time: time.Now().UTC()}
	s.mu.Unlock()
	st, err := s.Station.Process(ctx, ref)
	st.Tag = tag
	s.mu.Lock()
	s.running = nil
	s.mu.Unlock()
	return st, err
}

// settle counts a stop attempt and decides whether the inbox entry is
// handled (any verdict, waiting for the operator, not a train) or waits for
// a retry (transient, interrupted).
func (s *Server) settle(key, tag, digest string, st *Stop, err error) error {
	result := string(st.State)
	class := Classify(err)
	switch {
	case errors.Is(err, ErrNotTrain):
		result = "skipped"
	case class == Transient || class == ClassInterrupted:
		result = string(class)
	case err == nil:
		result = string(Done)
	}
	if result == "" {
		result = string(class)
	}
	s.stops.WithLabelValues(result).Inc()
	if !errors.Is(err, ErrNotTrain) {
		s.seconds.Observe(st.Seconds)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if class == Transient || class == ClassInterrupted {
		r := s.retry[key]
		if r == nil {
			r = &Retrying{Tag: tag, Input: digest}
			s.retry[key] = r
		}
		r.Attempts++
		r.Error = err.Error()
		r.Next = time.Now().Add(s.backoffFor(r.Attempts))
		return nil
	}
	delete(s.retry, key)
	if tag != "" && st.Key != "" {
		// The tag is recorded on the stop for the operator's commands.
		_, _ = s.Station.DB.Update(st.Key, "", func(r *Stop) error {
			if r.Tag == "" {
				r.Tag = tag
			}
			return nil
		})
	}
	return s.Station.DB.MarkSeen(tag, digest)
}

func (s *Server) backoff(key string) *Retrying {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retry[key]
}

// backoffFor doubles from the poll interval up to MaxBackoff.
func (s *Server) backoffFor(attempts int) time.Duration {
	d, max := s.interval(), s.MaxBackoff
	if max <= 0 {
		max = 10 * time.Minute
	}
	for i := 1; i < attempts && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

func (s *Server) interval() time.Duration {
	if s.Interval <= 0 {
		return 5 * time.Second
	}
	return s.Interval
}

func (s *Server) pollDone(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.lastPoll = now
	if err != nil {
		s.pollFails.Inc()
		s.lastErr = err.Error()
		if s.failSince.IsZero() {
			s.failSince = now
		}
		return
	}
	s.lastErr, s.lastOK, s.failSince = "", now, time.Time{}
}

// healthy: polls have not failed for longer than HealthAfter and the trust
// directory has not expired.
func (s *Server) healthy() (bool, string) {
	s.mu.Lock()
	fail, lastErr := s.failSince, s.lastErr
	s.mu.Unlock()
	after := s.HealthAfter
	if after <= 0 {
		after = 5 * time.Minute
	}
	if !fail.IsZero() && time.Since(fail) > after {
		return false, "polls failing since " + fail.UTC().Format(time.RFC3339) + ": " + lastErr
	}
	if te, ok := s.Station.Trust.(trustExpiry); ok {
		if _, exp, _, err := te.Expiry(); err == nil && time.Now().After(exp) {
			return false, "trust directory expired at " + exp.UTC().Format(time.RFC3339)
		}
	}
	return true, "ok"
}

// Status is the station's state as serve sees it.
func (s *Server) Status(ctx context.Context) (*Status, error) {
	s.init()
	st, err := s.Station.Status(ctx)
	if err != nil {
		return nil, err
	}
	st.Version, st.Started, st.UptimeSeconds = s.Version, s.started.UTC(), time.Since(s.started).Seconds()
	st.Trust = s.trustStatus()
	s.mu.Lock()
	defer s.mu.Unlock()
	st.LastPoll, st.LastOK, st.LastError = s.lastPoll.UTC(), s.lastOK.UTC(), s.lastErr
	if s.running != nil {
		r := *s.running
		st.Running = &r
	}
	for _, r := range s.retry {
		st.Retrying = append(st.Retrying, *r)
	}
	sort.Slice(st.Retrying, func(i, j int) bool { return st.Retrying[i].Tag < st.Retrying[j].Tag })
	st.Queued += len(st.Retrying)
	return st, nil
}

// Handler serves /status, /healthz and /metrics.
func (s *Server) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := s.healthy()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	return mux
}

// Serve polls until ctx ends, serving the status endpoint on addr ("" for
// none) and the admin API on AdminSocket. ready, if set, receives the
// status listener's address. When ctx ends, a running train has Grace to
// finish; then it is stopped and its stop recorded as interrupted, to run
// again on the next start.
func (s *Server) Serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	s.init()
	var lnAddr net.Addr
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: s.listenerHandler(), ReadHeaderTimeout: 10 * time.Second}
		if s.TLSCert != "" {
			// Load now, so a bad certificate fails serve at start.
			if _, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey); err != nil {
				ln.Close()
				return fmt.Errorf("status listener certificate: %w", err)
			}
			go hs.ServeTLS(ln, s.TLSCert, s.TLSKey) //nolint:errcheck // closed below
		} else {
			if !isLoopback(ln.Addr()) {
				s.Station.logger().Warn("status listener is plain HTTP on a non-loopback address: console logins and pages cross the network unencrypted; give --tls-cert and --tls-key", "addr", ln.Addr().String())
			}
			go hs.Serve(ln) //nolint:errcheck // closed below
		}
		defer hs.Close()
		lnAddr = ln.Addr()
	}
	if s.AdminSocket != "" {
		closeAdmin, err := ServeAdmin(s.AdminSocket, s.Admin())
		if err != nil {
			return err
		}
		defer closeAdmin()
	}
	if ready != nil {
		ready(lnAddr)
	}
	runCtx, cancelRun := graceContext(ctx, s.grace())
	defer cancelRun()
	t := time.NewTicker(s.interval())
	defer t.Stop()
	for {
		if _, err := s.poll(ctx, runCtx); err != nil && ctx.Err() == nil {
			s.Station.logger().Warn("poll failed", "error", err.Error())
		}
		if ctx.Err() == nil {
			s.checkTrust(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// listenerHandler is the status listener's: Handler alone, or with a
// console in front of everything but the probes.
func (s *Server) listenerHandler() http.Handler {
	base := s.Handler()
	if s.Console == nil {
		return base
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", base)
	mux.Handle("/metrics", base)
	mux.Handle("/", s.Console)
	return mux
}

// Admin is the admin API of this serve (the station's, with serve's own
// status), for a console in the same process.
func (s *Server) Admin() Admin { return serverAdmin{Station: s.Station, srv: s} }

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func (s *Server) grace() time.Duration {
	if s.Grace <= 0 {
		return 30 * time.Second
	}
	return s.Grace
}

// graceContext is ctx's values with a cancel that comes grace after ctx
// ends.
func graceContext(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	run, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-run.Done():
		}
	})
	return run, func() { stop(); cancel() }
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
