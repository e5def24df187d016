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
type Server struct {
	store  *Store
	log    *slog.Logger
	ipLim  *limiterSet
	tokLim *limiterSet
	mux    *http.ServeMux
}

type serverConfig struct {
	log               *slog.Logger
	ipRate, tokRate   rate.Limit
	ipBurst, tokBurst int
}

// ServerOption configures a Server.
type ServerOption func(*serverConfig)

// WithLogger sets the logger (audit events are logged too).
func WithLogger(l *slog.Logger) ServerOption { return func(c *serverConfig) { c.log = l } }

// WithIPRateLimit limits requests per client IP (before authentication, so
// token guessing is slow). Default 5/s, burst 20.
func WithIPRateLimit(perSecond float64, burst int) ServerOption {
	return func(c *serverConfig) { c.ipRate, c.ipBurst = rate.Limit(perSecond), burst }
}

// WithTokenRateLimit limits requests per token. Default 1/s, burst 10.
func WithTokenRateLimit(perSecond float64, burst int) ServerOption {
	return func(c *serverConfig) { c.tokRate, c.tokBurst = rate.Limit(perSecond), burst }
}

// NewServer returns the HTTP handler over store.
func NewServer(store *Store, opts ...ServerOption) *Server {
	cfg := serverConfig{log: slog.Default(), ipRate: 5, ipBurst: 20, tokRate: 1, tokBurst: 10}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{store: store, log: cfg.log,
		ipLim:  newLimiterSet(cfg.ipRate, cfg.ipBurst),
		tokLim: newLimiterSet(cfg.tokRate, cfg.tokBurst),
		mux:    http.NewServeMux()}
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

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
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
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(apiError{Error: msg})
}

// serveFragment answers both fragment endpoints. Failures say what kind of
// refusal it was but never whether a token or archive exists.
func (s *Server) serveFragment(w http.ResponseWriter, r *http.Request, archive, api string) {
	ip := clientIP(r)
	ev := Event{Action: "fragment.get." + api, Archive: archive, Remote: ip}
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
	if !s.ipLim.allow(ip) {
		w.Header().Set("Retry-After", "1")
		done(http.StatusTooManyRequests, "denied: ip rate limit", "rate limited")
		return
	}
	if archive != "" && !ValidName(archive) {
		done(http.StatusBadRequest, "denied: bad archive id", "bad archive id")
		return
	}
	tok, err := s.store.Authenticate(bearer(r))
	if tok != nil {
		ev.TokenID, ev.Device = tok.ID, tok.Device
	}
	if err != nil {
		done(http.StatusUnauthorized, "denied: "+err.Error(), "unauthorized")
		return
	}
	if !s.tokLim.allow(tok.ID) {
		w.Header().Set("Retry-After", "1")
		done(http.StatusTooManyRequests, "denied: token rate limit", "rate limited")
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

// Serve runs the key server on addr with the store in dataDir until ctx is
// done. With certFile and keyFile it serves TLS (1.2 minimum).
func Serve(ctx context.Context, addr, dataDir, certFile, keyFile string, ready func(net.Addr), opts ...ServerOption) error {
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
	srv := &http.Server{Handler: NewServer(st, opts...), ReadHeaderTimeout: 10 * time.Second,
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
