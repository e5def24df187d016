package keyserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The admin API: while Serve runs (and holds the bbolt lock), the admin
// commands reach the store through a unix socket in the data dir, mode 0600,
// authenticated with a random bearer token that Serve writes next to it
// (mode 0600) and compares in constant time. It is never served on the TCP
// listener.
const (
	AdminSocket     = "admin.sock"
	AdminTokenFile  = "admin.token"
	AdminPathPrefix = "/v1/admin/"
)

// ErrNoAdmin: no key server answers on the data dir's admin socket.
var ErrNoAdmin = errors.New("no key server admin API")

// adminRequest is the body of the admin API's POST requests.
type adminRequest struct {
	Device   string `json:"device,omitempty"`
	Archive  string `json:"archive,omitempty"`
	Name     string `json:"name,omitempty"`
	TTLNanos int64  `json:"ttl_ns,omitempty"`
	Token    string `json:"token,omitempty"` // id or secret, for revoke
	Data     []byte `json:"data,omitempty"`
}

type createdToken struct {
	Secret string `json:"secret"`
	Token  *Token `json:"token"`
}

type revokedCount struct {
	Revoked int `json:"revoked"`
}

// AdminHandler serves the admin API over store for requests that carry
// adminToken as their bearer token; all others get 401 and touch nothing.
func AdminHandler(store *Store, adminToken string) http.Handler {
	mux := http.NewServeMux()
	decode := func(w http.ResponseWriter, r *http.Request) (*adminRequest, bool) {
		var req adminRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
			return nil, false
		}
		return &req, true
	}
	reply := func(w http.ResponseWriter, v any, err error) {
		if err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrNotFoundToken) || errors.Is(err, ErrNotFound) {
				code = http.StatusNotFound
			}
			writeError(w, code, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET "+AdminPathPrefix+"tokens", func(w http.ResponseWriter, _ *http.Request) {
		ts, err := store.ListTokens()
		reply(w, ts, err)
	})
	mux.HandleFunc("POST "+AdminPathPrefix+"tokens", func(w http.ResponseWriter, r *http.Request) {
		if req, ok := decode(w, r); ok {
			secret, t, err := store.CreateTokenTTL(req.Device, req.Archive, req.Name, time.Duration(req.TTLNanos))
			reply(w, createdToken{Secret: secret, Token: t}, err)
		}
	})
	mux.HandleFunc("POST "+AdminPathPrefix+"tokens/revoke", func(w http.ResponseWriter, r *http.Request) {
		if req, ok := decode(w, r); ok {
			reply(w, revokedCount{Revoked: 1}, store.RevokeToken(req.Token))
		}
	})
	mux.HandleFunc("GET "+AdminPathPrefix+"fragments", func(w http.ResponseWriter, r *http.Request) {
		fs, err := store.ListFragments(r.URL.Query().Get("archive"))
		reply(w, fs, err)
	})
	mux.HandleFunc("POST "+AdminPathPrefix+"fragments", func(w http.ResponseWriter, r *http.Request) {
		if req, ok := decode(w, r); ok {
			reply(w, revokedCount{}, store.AddFragment(req.Archive, req.Device, req.Data))
		}
	})
	mux.HandleFunc("POST "+AdminPathPrefix+"fragments/revoke", func(w http.ResponseWriter, r *http.Request) {
		if req, ok := decode(w, r); ok {
			n, err := store.RevokeFragment(req.Archive, req.Device)
			reply(w, revokedCount{Revoked: n}, err)
		}
	})
	mux.HandleFunc("GET "+AdminPathPrefix+"audit", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad n")
			return
		}
		evs, err := store.AuditLog(n)
		reply(w, evs, err)
	})
	mux.HandleFunc("GET "+AdminPathPrefix+"refusals", func(w http.ResponseWriter, _ *http.Request) {
		rc, err := store.Refusals()
		reply(w, rc, err)
	})
	want := []byte(adminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if subtle.ConstantTimeCompare([]byte(bearer(r)), want) != 1 || len(want) == 0 {
			writeError(w, http.StatusUnauthorized, "unauthorized: admin token required")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// listenAdmin writes a fresh admin token and listens on the admin socket in
// dataDir. The caller holds the store lock, so an existing socket is stale.
func listenAdmin(dataDir string) (net.Listener, string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", err
	}
	tok := "tyadm_" + hex.EncodeToString(raw)
	tf := filepath.Join(dataDir, AdminTokenFile)
	_ = os.Remove(tf)
	if err := os.WriteFile(tf, []byte(tok+"\n"), 0o600); err != nil {
		return nil, "", fmt.Errorf("keyserver: admin token: %w", err)
	}
	sock := filepath.Join(dataDir, AdminSocket)
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.Remove(tf)
		return nil, "", fmt.Errorf("keyserver: admin socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		os.Remove(tf)
		return nil, "", fmt.Errorf("keyserver: admin socket: %w", err)
	}
	return ln, tok, nil
}

// AdminClient talks to a running key server's admin API through the admin
// socket of its data dir. Its methods mirror the Store's admin methods.
type AdminClient struct {
	token string
	hc    *http.Client
}

// DialAdmin connects to the admin API of the key server serving dataDir; it
// returns an error wrapping ErrNoAdmin when none answers.
func DialAdmin(dataDir string) (*AdminClient, error) {
	sock := filepath.Join(dataDir, AdminSocket)
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrNoAdmin, sock, err)
	}
	c.Close()
	b, err := os.ReadFile(filepath.Join(dataDir, AdminTokenFile))
	if err != nil {
		return nil, fmt.Errorf("%w: admin token: %w", ErrNoAdmin, err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &AdminClient{token: strings.TrimSpace(string(b)), hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// Close releases the client's connections.
func (a *AdminClient) Close() error { a.hc.CloseIdleConnections(); return nil }

func (a *AdminClient) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://keyserver-admin"+AdminPathPrefix+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("key server admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		if resp.StatusCode == http.StatusNotFound && strings.Contains(e.Error, ErrNotFoundToken.Error()) {
			return fmt.Errorf("key server admin API: %s: %w", e.Error, ErrNotFoundToken)
		}
		return fmt.Errorf("key server admin API: %s: %s", resp.Status, e.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("key server admin API: reply: %w", err)
	}
	return nil
}

// CreateTokenTTL creates a token on the running server.
func (a *AdminClient) CreateTokenTTL(device, archive, label string, ttl time.Duration) (string, *Token, error) {
	var out createdToken
	err := a.do("POST", "tokens", adminRequest{Device: device, Archive: archive, Name: label, TTLNanos: int64(ttl)}, &out)
	return out.Secret, out.Token, err
}

// RevokeToken revokes a token by id or secret on the running server.
func (a *AdminClient) RevokeToken(idOrSecret string) error {
	var out revokedCount
	return a.do("POST", "tokens/revoke", adminRequest{Token: idOrSecret}, &out)
}

// ListTokens lists the running server's tokens.
func (a *AdminClient) ListTokens() ([]Token, error) {
	var out []Token
	return out, a.do("GET", "tokens", nil, &out)
}

// AddFragment stores a fragment on the running server.
func (a *AdminClient) AddFragment(archive, device string, data []byte) error {
	var out revokedCount
	return a.do("POST", "fragments", adminRequest{Archive: archive, Device: device, Data: data}, &out)
}

// RevokeFragment revokes fragments on the running server.
func (a *AdminClient) RevokeFragment(archive, device string) (int, error) {
	var out revokedCount
	err := a.do("POST", "fragments/revoke", adminRequest{Archive: archive, Device: device}, &out)
	return out.Revoked, err
}

// ListFragments lists the running server's fragments (never their bytes).
func (a *AdminClient) ListFragments(archive string) ([]Fragment, error) {
	var out []Fragment
	return out, a.do("GET", "fragments?archive="+url.QueryEscape(archive), nil, &out)
}

// AuditLog returns the running server's last n audit events (0: all).
func (a *AdminClient) AuditLog(n int) ([]Event, error) {
	var out []Event
	return out, a.do("GET", "audit?n="+strconv.Itoa(n), nil, &out)
}

// Refusals returns the running server's refusal counts.
func (a *AdminClient) Refusals() ([]RefusalCount, error) {
	var out []RefusalCount
	return out, a.do("GET", "refusals", nil, &out)
}
