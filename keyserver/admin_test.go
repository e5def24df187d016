package keyserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveTemp runs Serve on loopback with a temp data dir until the test ends.
func serveTemp(t *testing.T) (dir string, addr net.Addr) {
	t.Helper()
	dir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Listen{Addr: "127.0.0.1:0", DataDir: dir, Ready: func(a net.Addr) { ready <- a }})
	}()
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve not ready")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return dir, addr
}

func unixClient(dir string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, AdminSocket))
	}}}
}

// TestAdminAPIRefusesWithoutAdminToken: the admin socket and token file are
// 0600; requests without the admin token, or with a wrong one, get 401, do
// nothing and leave no audit row; the right token works; the admin API is
// not on the TCP listener; both files are gone after Serve returns.
func TestAdminAPIRefusesWithoutAdminToken(t *testing.T) {
	dir, addr := serveTemp(t)
	for _, f := range []string{AdminSocket, AdminTokenFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	ac, err := DialAdmin(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	before, err := ac.AuditLog(0)
	if err != nil {
		t.Fatal(err)
	}
	hc := unixClient(dir)
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + ac.token + "x"} {
		req, _ := http.NewRequest("POST", "http://x"+AdminPathPrefix+"tokens", strings.NewReader(`{"device":"intruder"}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("auth %q: status %d, want 401", auth, resp.StatusCode)
		}
	}
	// Not on the public listener, even with the admin token.
	req, _ := http.NewRequest("GET", "http://"+addr.String()+AdminPathPrefix+"tokens", nil)
	req.Header.Set("Authorization", "Bearer "+ac.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("admin API answered on the TCP listener")
	}
	ts, err := ac.ListTokens()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 0 {
		t.Fatalf("refused requests created tokens: %+v", ts)
	}
	after, err := ac.AuditLog(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("refused admin requests were audited: %d rows before, %d after", len(before), len(after))
	}
	// A sub-second TTL still expires (it is not rounded down to "never").
	_, tok, err := ac.CreateTokenTTL("site-a", "", "", 500*time.Millisecond)
	if err != nil {
		t.Fatalf("admin token refused: %v", err)
	}
	if tok.Expires == nil || tok.Expires.Sub(tok.Created) != 500*time.Millisecond {
		t.Fatalf("token expiry through the admin API: %+v", tok)
	}
}

// TestServeRemovesAdminFiles: after Serve returns, the socket and the admin
// token are gone, and DialAdmin says ErrNoAdmin.
func TestServeRemovesAdminFiles(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Listen{Addr: "127.0.0.1:0", DataDir: dir, Ready: func(net.Addr) { close(ready) }})
	}()
	<-ready
	if _, err := DialAdmin(dir); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{AdminSocket, AdminTokenFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Fatalf("%s left behind: %v", f, err)
		}
	}
	if _, err := DialAdmin(dir); !errors.Is(err, ErrNoAdmin) {
		t.Fatalf("DialAdmin after stop: %v", err)
	}
}

// TestServeWithoutAdminSocket: a data dir whose path is too long for a unix
// socket still serves fragments, with a warning, and leaves no admin token.
func TestServeWithoutAdminSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	var logs strings.Builder
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Listen{Addr: "127.0.0.1:0", DataDir: dir, Ready: func(a net.Addr) { ready <- a }}, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("Serve refused a long data dir: %v", err)
	}
	resp, err := http.Get("http://" + addr.String() + HealthPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := DialAdmin(dir); !errors.Is(err, ErrNoAdmin) {
		t.Fatalf("DialAdmin: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, AdminTokenFile)); !os.IsNotExist(err) {
		t.Fatalf("admin token left without a socket: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "no admin API") {
		t.Fatalf("no warning: %s", logs.String())
	}
}
