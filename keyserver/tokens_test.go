package keyserver

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// A token made without a ttl expires after DefaultTokenTTL; ttl 0 never.
func TestTokenDefaultExpiry(t *testing.T) {
	s, _ := openStore(t)
	_, tok, err := s.CreateToken("site-a", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Expires == nil || tok.Expires.Sub(tok.Created) != DefaultTokenTTL {
		t.Fatalf("default token expires %v (created %v), want after %v", tok.Expires, tok.Created, DefaultTokenTTL)
	}
	_, forever, err := s.CreateTokenTTL("site-a", "", "", 0)
	if err != nil || forever.Expires != nil {
		t.Fatalf("ttl 0: %v, %v", forever.Expires, err)
	}
}

// Revoking by the secret works like revoking by id; an unknown secret or id
// is ErrNotFoundToken and changes nothing.
func TestRevokeTokenBySecret(t *testing.T) {
	s, _ := openStore(t)
	secret, tok, err := s.CreateToken("site-a", "", "")
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := s.CreateToken("site-b", "", "")
	if err := s.RevokeToken(TokenPrefix + "not-a-real-secret"); !errors.Is(err, ErrNotFoundToken) {
		t.Fatalf("unknown secret: %v", err)
	}
	if err := s.RevokeToken("tok_nope"); !errors.Is(err, ErrNotFoundToken) {
		t.Fatalf("unknown id: %v", err)
	}
	if err := s.RevokeToken(secret); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(secret); err == nil {
		t.Fatalf("token %s still authenticates after revocation by secret", tok.ID)
	}
	if _, err := s.Authenticate(other); err != nil {
		t.Fatalf("the other token was touched: %v", err)
	}
}

// Plain HTTP on a non-loopback address is served with a warning; on
// loopback, without one.
func TestServeWarnsOnPlainHTTPBeyondLoopback(t *testing.T) {
	for addr, warn := range map[string]bool{"127.0.0.1:0": false, "0.0.0.0:0": true} {
		var logs bytes.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		ready := make(chan net.Addr, 1)
		go func() {
			done <- Serve(ctx, Listen{Addr: addr, DataDir: t.TempDir(), Ready: func(a net.Addr) { ready <- a }},
				WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		}()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("%s: %v", addr, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not ready", addr)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "plain HTTP beyond loopback"); got != warn {
			t.Errorf("%s: warning %v, want %v:\n%s", addr, got, warn, logs.String())
		}
	}
}
