package keyserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Client fetches fragments from a key server.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient sets the HTTP client (tests, proxies, custom TLS).
func WithHTTPClient(h *http.Client) ClientOption { return func(c *Client) { c.http = h } }

// WithCAFile trusts the PEM certificates in path (a private key-server CA)
// in addition to nothing else.
func WithCAFile(path string) (ClientOption, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return WithHTTPClient(&http.Client{Transport: tr, Timeout: 30 * time.Second}), nil
}

// NewClient returns a client for the key server at baseURL with a bearer token.
func NewClient(baseURL, token string, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("key server URL %q: want http(s)://host[:port]", baseURL)
	}
	c := &Client{base: u, token: token, http: &http.Client{Timeout: 30 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Fragment fetches the fragment of archive for the token's device (/v1 API).
func (c *Client) Fragment(ctx context.Context, archive string) ([]byte, error) {
	if !ValidName(archive) {
		return nil, fmt.Errorf("invalid archive id %q", archive)
	}
	return c.get(ctx, FragmentPathPrefix+url.PathEscape(archive))
}

// LegacyFragment fetches from the seed's GET /binary-split/key-fragment.
// archive may be empty, as in the seed.
func (c *Client) LegacyFragment(ctx context.Context, archive string) ([]byte, error) {
	p := LegacyPath
	if archive != "" {
		p += "?archive=" + url.QueryEscape(archive)
	}
	return c.get(ctx, p)
}

// ErrUnavailable: the key server could not be reached or failed (a network
// error, a timeout, a 5xx answer). Unlike a refusal it is transient: the same
// request may succeed later, so callers retry or report an outage, never a
// wrong key.
var ErrUnavailable = errors.New("key server unavailable")

// HTTPError is a refusal from the key server; it unwraps to ErrUnauthorized,
// ErrForbidden, ErrNotFound, ErrAmbiguous or ErrRateLimited when it maps, and
// to ErrUnavailable for a 5xx answer.
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("key server: %d %s", e.Status, msg)
}

func (e *HTTPError) Unwrap() error {
	switch e.Status {
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrAmbiguous
	case http.StatusTooManyRequests:
		return ErrRateLimited
	}
	if e.Status >= 500 {
		return ErrUnavailable
	}
	return nil
}

// ErrBadFragment: the key server answered 200 with an empty or oversized
// body. It is a key refusal for callers (unseal exits 5), not a network error.
var ErrBadFragment = errors.New("key server answered an empty or oversized fragment")

// maxRetries429 bounds how often get waits out a 429 (Retry-After, at most
// a few seconds each): a flood elsewhere slows a legitimate client down
// instead of failing it at once.
const maxRetries429 = 3

func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		b, retryAfter, err := c.getOnce(ctx, path)
		if !errors.Is(err, ErrRateLimited) || attempt >= maxRetries429 {
			return b, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(retryAfter):
		}
	}
}

func (c *Client) getOnce(ctx context.Context, path string) ([]byte, time.Duration, error) {
	if c.token == "" {
		return nil, 0, fmt.Errorf("%w: no token given", ErrUnauthorized)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+path, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, unavailable(ctx, "", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxFragmentSize+1))
	if err != nil {
		return nil, 0, unavailable(ctx, "reading answer: ", err)
	}
	if resp.StatusCode != http.StatusOK {
		var ae apiError
		_ = json.Unmarshal(body, &ae)
		wait := time.Second
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n >= 0 && n <= 5 {
			wait = time.Duration(n) * time.Second
		}
		return nil, wait, &HTTPError{Status: resp.StatusCode, Message: ae.Error}
	}
	if len(body) == 0 || len(body) > MaxFragmentSize {
		return nil, 0, fmt.Errorf("%w (%d bytes, want 1 to %d)", ErrBadFragment, len(body), MaxFragmentSize)
	}
	return body, 0, nil
}

// unavailable marks a transport failure as ErrUnavailable, except when the
// caller's own context ended it: that is a cancellation, not an outage.
func unavailable(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("key server: %s%w", what, err)
	}
	return fmt.Errorf("%w: %s%w", ErrUnavailable, what, err)
}
