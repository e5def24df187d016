package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Errors callers branch on. ErrStalled wraps ErrTimeout, so errors.Is(err,
// ErrTimeout) catches every network deadline this package enforces.
var (
	ErrTimeout = errors.New("registry: network timeout")
	ErrStalled = fmt.Errorf("%w: transfer stalled", ErrTimeout)
)

// Timeouts bound every network call a Client makes. A zero field disables
// that bound. There is deliberately no total deadline per request: a big
// layer over a slow but moving link must not fail; a body that stops moving
// (or trickles) must.
type Timeouts struct {
	Dial           time.Duration // TCP connect
	TLSHandshake   time.Duration
	ResponseHeader time.Duration // from request written to response headers
	IdleConn       time.Duration // keep-alive connections closed after this
	// Stall: a request or response body must move at least StallBytes in
	// every Stall period during which it was waiting on the network.
	Stall      time.Duration
	StallBytes int64
}

// Environment variables read by TimeoutsFromEnv (Go durations, e.g. "45s").
const (
	EnvDialTimeout   = "TRAINYARD_DIAL_TIMEOUT"
	EnvTLSTimeout    = "TRAINYARD_TLS_TIMEOUT"
	EnvHeaderTimeout = "TRAINYARD_HEADER_TIMEOUT"
	EnvStallTimeout  = "TRAINYARD_STALL_TIMEOUT"
)

// DefaultTimeouts: dial 10s, TLS 10s, response headers 30s, idle 90s,
// stall 60s at under 1 KiB.
func DefaultTimeouts() Timeouts {
	return Timeouts{Dial: 10 * time.Second, TLSHandshake: 10 * time.Second, ResponseHeader: 30 * time.Second,
		IdleConn: 90 * time.Second, Stall: 60 * time.Second, StallBytes: 1024}
}

// TimeoutsFromEnv returns DefaultTimeouts overridden by the TRAINYARD_*_TIMEOUT
// environment variables ("0" disables one).
func TimeoutsFromEnv() (Timeouts, error) {
	t := DefaultTimeouts()
	for _, e := range []struct {
		env string
		d   *time.Duration
	}{{EnvDialTimeout, &t.Dial}, {EnvTLSTimeout, &t.TLSHandshake}, {EnvHeaderTimeout, &t.ResponseHeader}, {EnvStallTimeout, &t.Stall}} {
		v := os.Getenv(e.env)
		if v == "" {
			continue
		}
		d, err := parseTimeout(e.env, v)
		if err != nil {
			return t, err
		}
		*e.d = d
	}
	return t, nil
}

// parseTimeout reads one TRAINYARD_*_TIMEOUT value: a non-negative Go
// duration, "0" for none.
func parseTimeout(env, v string) (time.Duration, error) {
	if v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 30s (0 for none)", env, v)
	}
	return d, nil
}

// NewTransport returns an HTTP transport with the timeouts of t and stall
// detection on every body; insecure skips TLS verification.
func NewTransport(insecure bool, t Timeouts) http.RoundTripper {
	base := remote.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: t.Dial, KeepAlive: 30 * time.Second}
	base.DialContext = d.DialContext
	base.TLSHandshakeTimeout = t.TLSHandshake
	base.ResponseHeaderTimeout = t.ResponseHeader
	base.IdleConnTimeout = t.IdleConn
	base.ExpectContinueTimeout = time.Second
	if insecure {
		if base.TLSClientConfig == nil {
			base.TLSClientConfig = &tls.Config{}
		}
		base.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // only with --insecure
	}
	return WrapTransport(base, t)
}

// WrapTransport adds stall detection and ErrTimeout classification to rt
// (whose own dial/TLS/header timeouts are left as they are).
func WrapTransport(rt http.RoundTripper, t Timeouts) http.RoundTripper {
	return &timeoutTransport{base: rt, t: t}
}

type timeoutTransport struct {
	base http.RoundTripper
	t    Timeouts
}

func (tt *timeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tt.t.Stall <= 0 {
		resp, err := tt.base.RoundTrip(req)
		return resp, classify(req, err, false)
	}
	orig := req
	ctx, cancel := context.WithCancel(req.Context())
	up := newWatchdog(tt.t, cancel, true)
	down := newWatchdog(tt.t, cancel, false)
	req = req.Clone(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &watchedBody{rc: req.Body, w: up}
	}
	resp, err := tt.base.RoundTrip(req)
	up.stop()
	if err != nil {
		err = classify(orig, err, up.hasFired())
		cancel()
		return nil, err
	}
	resp.Body = &watchedBody{rc: resp.Body, w: down, cancel: cancel, req: orig}
	return resp, nil
}

// classify marks network deadlines with ErrTimeout. The error returned is
// not "temporary" to go-containerregistry's retry logic: a registry that
// hung once is not tried again and again while the caller waits.
func classify(req *http.Request, err error, stalled bool) error {
	if err == nil {
		return nil
	}
	if stalled {
		return fmt.Errorf("%s %s: %w (no progress for the stall timeout)", req.Method, req.URL.Redacted(), ErrStalled)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && req.Context().Err() == nil {
		// %v, not %w: a visible net.Error would make ggcr retry it as temporary.
		return fmt.Errorf("%s %s: %w: %v", req.Method, req.URL.Redacted(), ErrTimeout, err)
	}
	return err
}

// watchedBody feeds a watchdog and turns its firing into ErrStalled.
type watchedBody struct {
	rc     io.ReadCloser
	w      *watchdog
	cancel context.CancelFunc // response bodies own the request context
	req    *http.Request
	once   sync.Once
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.w.enter()
	n, err := b.rc.Read(p)
	b.w.leave(n)
	if err != nil {
		if err == io.EOF {
			b.w.stop()
		} else if b.w.hasFired() {
			if b.req != nil {
				return n, classify(b.req, err, true)
			}
			return n, fmt.Errorf("upload: %w", ErrStalled)
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() {
		b.w.stop()
		if b.cancel != nil {
			b.cancel()
		}
	})
	return err
}

// watchdog checks once per period that a body moved at least min bytes
// while it was waiting on the network: for a download that is the time spent
// inside Read (a slow consumer is not the registry's fault), for an upload the
// time spent outside it (the transport blocked writing to the socket). Half a
// period of waiting with too little progress cancels the request.
type watchdog struct {
	mu      sync.Mutex
	period  time.Duration
	min     int64
	upload  bool
	cancel  context.CancelFunc
	timer   *time.Timer
	stopped bool
	fired   bool
	// current window
	winStart time.Time
	bytes    int64
	inRead   time.Duration
	readAt   time.Time // zero when no Read is in progress
}

func newWatchdog(t Timeouts, cancel context.CancelFunc, upload bool) *watchdog {
	min := t.StallBytes
	if min <= 0 {
		min = 1
	}
	return &watchdog{period: t.Stall, min: min, upload: upload, cancel: cancel}
}

func (w *watchdog) enter() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if w.timer == nil && !w.stopped {
		w.winStart = now
		w.timer = time.AfterFunc(w.period, w.tick)
	}
	w.readAt = now
}

func (w *watchdog) leave(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inRead += time.Since(later(w.readAt, w.winStart))
	w.readAt = time.Time{}
	w.bytes += int64(n)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (w *watchdog) tick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.fired {
		return
	}
	now := time.Now()
	inRead := w.inRead
	if !w.readAt.IsZero() {
		inRead += now.Sub(later(w.readAt, w.winStart))
	}
	waited := inRead
	if w.upload {
		waited = now.Sub(w.winStart) - inRead
	}
	if w.bytes < w.min && waited >= w.period/2 {
		w.fired = true
		w.cancel()
		return
	}
	w.winStart, w.bytes, w.inRead = now, 0, 0
	w.timer.Reset(w.period)
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *watchdog) hasFired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

// errTransport fails every request with a configuration error (a bad
// TRAINYARD_*_TIMEOUT value), so the caller sees it on the first call.
type errTransport struct{ err error }

func (e errTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, e.err }
