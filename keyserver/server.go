package keyserver

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Paths served.
const (
	// LegacyPath is the azaion seed's endpoint: the token's device gets its
	// one active fragment (or ?archive=ID), as raw bytes.
	LegacyPath = "/binary-split/key-fragment"
	// FragmentPathPrefix + archive id is the versioned endpoint.
	FragmentPathPrefix = "/v1/fragments/"
	HealthPath         = "/v1/healthz"
)

// Server is the key server's HTTP handler.
//
// What it records: every request made with a token the store knows is an
// audit row (token id, device, archive, outcome). Everything refused before
// that (rate limits, malformed requests, unknown tokens) is only counted, per
// minute, address prefix and reason, and flushed to the store by Run; a flood
// therefore costs a few rows a minute, not one row per request.
type Server struct {
	store    *Store
	log      *slog.Logger
	ipLim    *limiterSet
	tokLim   *limiterSet
	failLim  *rate.Limiter
	refusals *refusalCounter
	v4, v6   int
	mux      *http.ServeMux
}

type serverConfig struct {
	log               *slog.Logger
	ipRate, tokRate   rate.Limit
	ipBurst, tokBurst int
	failRate          rate.Limit
	failBurst         int
	v4, v6            int
	maxAge            time.Duration
	maxRows           int
}

// ServerOption configures a Server.
type ServerOption func(*serverConfig)

// WithLogger sets the logger (audit events are logged too).
func WithLogger(l *slog.Logger) ServerOption { return func(c *serverConfig) { c.log = l } }

// WithIPRateLimit limits requests per client address prefix (see
// WithPrefixBits), before authentication, so token guessing is slow and
// taking more addresses of one network does not help. Default 5/s, burst 20.
func WithIPRateLimit(perSecond float64, burst int) ServerOption {
	return func(c *serverConfig) { c.ipRate, c.ipBurst = rate.Limit(perSecond), burst }
}

// WithTokenRateLimit limits requests per token. Default 1/s, burst 10.
func WithTokenRateLimit(perSecond float64, burst int) ServerOption {
	return func(c *serverConfig) { c.tokRate, c.tokBurst = rate.Limit(perSecond), burst }
}

// WithFailureLimit bounds failed token checks across all clients: once the
// budget is spent, requests get 429 before their token is even looked at,
// so many networks together cannot guess faster than this. Successful
// requests do not use the budget. Default 10/s, burst 50.
func WithFailureLimit(perSecond float64, burst int) ServerOption {
	return func(c *serverConfig) { c.failRate, c.failBurst = rate.Limit(perSecond), burst }
}

// WithPrefixBits sets the address prefix that rate limits and refusal counts
// are keyed by. Default /24 for IPv4 and /64 for IPv6 (what one site or one
// host typically holds).
func WithPrefixBits(v4, v6 int) ServerOption {
	return func(c *serverConfig) { c.v4, c.v6 = v4, v6 }
}

// WithRetention bounds the store's audit log and refusal counts (see
// Store.SetRetention). Default 90 days and 100,000 rows each.
func WithRetention(maxAge time.Duration, maxRows int) ServerOption {
	return func(c *serverConfig) { c.maxAge, c.maxRows = maxAge, maxRows }
}

// Defaults of the server options.
const (
	DefaultPrefixBitsV4 = 24
	DefaultPrefixBitsV6 = 64
	// maxRefusalKeys bounds the distinct (prefix, reason) counters kept per
	// flush; past it, new prefixes are counted under "other".
	maxRefusalKeys = 1024
)

// NewServer returns the HTTP handler over store. Call Run alongside it to
// flush refusal counts and prune the audit log (Serve does).
func NewServer(store *Store, opts ...ServerOption) *Server {
	cfg := serverConfig{log: slog.Default(), ipRate: 5, ipBurst: 20, tokRate: 1, tokBurst: 10, failRate: 10, failBurst: 50,
		v4: DefaultPrefixBitsV4, v6: DefaultPrefixBitsV6}
	for _, o := range opts {
		o(&cfg)
	}
	store.SetRetention(cfg.maxAge, cfg.maxRows)
	s := &Server{store: store, log: cfg.log,
		ipLim:    newLimiterSet(cfg.ipRate, cfg.ipBurst),
		tokLim:   newLimiterSet(cfg.tokRate, cfg.tokBurst),
		failLim:  rate.NewLimiter(cfg.failRate, cfg.failBurst),
		refusals: newRefusalCounter(maxRefusalKeys),
		v4:       cfg.v4, v6: cfg.v6,
		mux: http.NewServeMux()}
	s.mux.HandleFunc("GET "+LegacyPath, func(w http.ResponseWriter, r *http.Request) {
		s.serveFragment(w, r, r.URL.Query().Get("archive"), "legacy")
	})
	s.mux.HandleFunc("GET "+FragmentPathPrefix+"{archive}", func(w http.ResponseWriter, r *http.Request) {
		s.serveFragment(w, r, r.PathValue("archive"), "v1")
	})
	s.mux.HandleFunc("GET "+HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// FlushInterval is how often Run writes refusal counts and prunes.
const FlushInterval = 10 * time.Second

// Run flushes refusal counts and prunes the audit log every FlushInterval
// until ctx is done, then flushes once more.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := s.Flush(); err != nil {
				s.log.Error("keyserver: flushing refusal counts", "err", err)
			}
			return
		case <-t.C:
			if err := s.Flush(); err != nil {
				s.log.Error("keyserver: flushing refusal counts", "err", err)
			}
			if err := s.store.Prune(); err != nil {
				s.log.Error("keyserver: pruning audit log", "err", err)
			}
		}
	}
}

// Flush adds the refusals counted since the last flush to the store (and
// logs them, one line per minute, prefix and reason).
func (s *Server) Flush() error {
	counts := s.refusals.take()
	if len(counts) == 0 {
		return nil
	}
	for _, c := range counts {
		s.log.Info("keyserver refusals", "minute", c.Minute.Format(time.RFC3339), "prefix", c.Prefix, "reason", c.Reason, "count", c.Count)
	}
	return s.store.AddRefusals(counts)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// AddrPrefix returns the network of ip that rate limits are keyed by: the
// first v4 bits of an IPv4 address (IPv4-mapped IPv6 included), the first
// v6 bits of an IPv6 one, zone dropped. Unparsable input is returned as is.
func AddrPrefix(ip string, v4, v6 int) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="trainyard-keyserver"`)
	}
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(apiError{Error: msg})
}

// Refusal reasons (counted, not audited one by one).
const (
	ReasonPrefixRate  = "prefix rate limit"
	ReasonFailureRate = "global failure limit"
	ReasonTokenRate   = "token rate limit"
	ReasonBadRequest  = "bad archive id"
	ReasonBadToken    = "unknown or missing token"
)

// serveFragment answers both fragment endpoints. Failures say what kind of
// refusal it was but never whether a token or archive exists.
func (s *Server) serveFragment(w http.ResponseWriter, r *http.Request, archive, api string) {
	ip := clientIP(r)
	prefix := AddrPrefix(ip, s.v4, s.v6)
	refuse := func(code int, reason, msg string) {
		s.refusals.add(s.store.now(), prefix, reason)
		writeError(w, code, msg)
	}
	if !s.ipLim.allow(prefix) {
		refuse(http.StatusTooManyRequests, ReasonPrefixRate, "rate limited")
		return
	}
	if archive != "" && !ValidName(archive) {
		refuse(http.StatusBadRequest, ReasonBadRequest, "bad archive id")
		return
	}
	// The global failure budget is taken before the token is checked and
	// given back if the token is good: guesses are bounded even when they
	// come from more networks than the prefix limit can see.
	res := s.failLim.Reserve()
	if !res.OK() || res.Delay() > 0 {
		res.Cancel()
		refuse(http.StatusTooManyRequests, ReasonFailureRate, "rate limited")
		return
	}
	tok, err := s.store.Authenticate(bearer(r))
	if tok == nil {
		if err == nil || errors.Is(err, ErrUnauthorized) {
			refuse(http.StatusUnauthorized, ReasonBadToken, "unauthorized")
			return
		}
		res.Cancel()
		s.log.Error("keyserver: store", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	if err == nil {
		res.Cancel()
	}
	// From here the request names a token we know: an audit row each, at
	// most the token's rate.
	if !s.tokLim.allow(tok.ID) {
		refuse(http.StatusTooManyRequests, ReasonTokenRate, "rate limited")
		return
	}
	ev := Event{Action: "fragment.get." + api, Archive: archive, Remote: ip, TokenID: tok.ID, Device: tok.Device}
	done := func(code int, result, msg string) {
		ev.Result = result
		if err := s.store.Audit(ev); err != nil {
			s.log.Error("keyserver: audit write failed", "err", err)
		}
		s.log.Info("keyserver audit", "action", ev.Action, "result", result, "token", ev.TokenID, "device", ev.Device, "archive", ev.Archive, "remote", ip)
		if code != http.StatusOK {
			writeError(w, code, msg)
		}
	}
	if err != nil {
		done(http.StatusUnauthorized, "denied: "+err.Error(), "unauthorized")
		return
	}
	if archive == "" {
		archive = tok.Archive
	}
	if tok.Archive != "" && archive != tok.Archive {
		done(http.StatusForbidden, "denied: token bound to another archive", "token not valid for this archive")
		return
	}
	f, err := s.store.Fragment(archive, tok.Device)
	switch {
	case errors.Is(err, ErrAmbiguous):
		done(http.StatusConflict, "denied: ambiguous", ErrAmbiguous.Error())
		return
	case errors.Is(err, ErrNotFound):
		done(http.StatusNotFound, "denied: no active fragment", ErrNotFound.Error())
		return
	case err != nil:
		s.log.Error("keyserver: store", "err", err)
		done(http.StatusInternalServerError, "error: "+err.Error(), "internal error")
		return
	}
	ev.Archive = f.Archive
	done(http.StatusOK, "ok", "")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Trainyard-Archive", f.Archive)
	w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
	_, _ = w.Write(f.Data)
}

// limiterSet keeps one token bucket per key. It forgets everything when it
// grows past a bound, which only ever makes limits looser for a moment.
type limiterSet struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	m     map[string]*rate.Limiter
}

func newLimiterSet(r rate.Limit, burst int) *limiterSet {
	return &limiterSet{r: r, burst: burst, m: map[string]*rate.Limiter{}}
}

func (l *limiterSet) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[key]
	if !ok {
		if len(l.m) > 100000 {
			l.m = map[string]*rate.Limiter{}
		}
		lim = rate.NewLimiter(l.r, l.burst)
		l.m[key] = lim
	}
	return lim.Allow()
}

// refusalCounter aggregates refusals in memory between flushes.
type refusalCounter struct {
	mu  sync.Mutex
	max int
	m   map[refusalKey]uint64
}

type refusalKey struct {
	minute         int64
	prefix, reason string
}

func newRefusalCounter(max int) *refusalCounter {
	return &refusalCounter{max: max, m: map[refusalKey]uint64{}}
}

func (c *refusalCounter) add(now time.Time, prefix, reason string) {
	k := refusalKey{minute: now.Unix() / 60, prefix: prefix, reason: reason}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		k.prefix = "other"
	}
	c.m[k]++
}

func (c *refusalCounter) take() []RefusalCount {
	c.mu.Lock()
	m := c.m
	c.m = map[refusalKey]uint64{}
	c.mu.Unlock()
	out := make([]RefusalCount, 0, len(m))
	for k, n := range m {
		out = append(out, RefusalCount{Minute: time.Unix(k.minute*60, 0).UTC(), Prefix: k.prefix, Reason: k.reason, Count: n})
	}
	return out
}

// loopback reports whether a listener is reachable only from this machine.
func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Listen says where and how Serve listens.
type Listen struct {
	Addr    string // host:port; ":0" for any free port
	DataDir string // the store (bbolt), the admin socket and its token
	// TLSCert and TLSKey, both or neither, make it serve TLS (1.2 minimum).
	TLSCert, TLSKey string
	// Ready, if set, receives the listener's address once it accepts.
	Ready func(net.Addr)
}

// Serve runs the key server as l says until ctx is done.
func Serve(ctx context.Context, l Listen, opts ...ServerOption) error {
	addr, dataDir, certFile, keyFile, ready := l.Addr, l.DataDir, l.TLSCert, l.TLSKey, l.Ready
	if (certFile == "") != (keyFile == "") {
		return errors.New("keyserver: give both --tls-cert and --tls-key, or neither")
	}
	st, err := Open(dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	handler := NewServer(st, opts...)
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); handler.Run(runCtx) }()
	// After the HTTP server has stopped: the last flush, then the store closes.
	defer func() { stopRun(); <-ran }()
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("keyserver: TLS key pair: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	if certFile == "" && !loopback(ln.Addr()) {
		// Tokens and fragments would cross the network in clear.
		handler.log.Warn("key server on plain HTTP beyond loopback: tokens and key fragments travel unencrypted; give --tls-cert and --tls-key, or put it behind a TLS proxy", "addr", ln.Addr().String())
	}
	// The admin API is a convenience: without it (a data dir path too long
	// for a unix socket, a file system without sockets) the server still
	// serves, and administration waits for it to stop.
	if aln, atok, err := listenAdmin(dataDir); err != nil {
		handler.log.Warn("keyserver: no admin API; the token, fragment and audit commands need the server stopped", "err", err)
	} else {
		asrv := &http.Server{Handler: AdminHandler(st, atok), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
		go func() { _ = asrv.Serve(aln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = asrv.Shutdown(sctx)
			os.Remove(filepath.Join(dataDir, AdminSocket))
			os.Remove(filepath.Join(dataDir, AdminTokenFile))
		}()
	}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
