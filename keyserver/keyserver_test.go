package keyserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func TestTokensHashedAtRest(t *testing.T) {
	s, dir := openStore(t)
	secret, tok, err := s.CreateToken("site-a", "", "ops")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, TokenPrefix) || tok.Hash == "" {
		t.Fatalf("secret %q token %+v", secret, tok)
	}
	s.Close()
	db, err := os.ReadFile(filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(db, []byte(secret)) || bytes.Contains(db, []byte(strings.TrimPrefix(secret, TokenPrefix))) {
		t.Fatal("token secret stored in clear")
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.Authenticate(secret); err != nil || got.Device != "site-a" {
		t.Fatalf("authenticate: %+v %v", got, err)
	}
	if _, err := s2.Authenticate(secret + "x"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestStoreLockedWhileOpen(t *testing.T) {
	_, dir := openStore(t)
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

type fixture struct {
	store *Store
	srv   *httptest.Server
	ks    *Server
	tokA  string
	tokB  string
	idA   string
}

func newFixture(t *testing.T, opts ...ServerOption) *fixture {
	t.Helper()
	s, _ := openStore(t)
	fx := &fixture{store: s}
	var err error
	var ta *Token
	if fx.tokA, ta, err = s.CreateToken("site-a", "", ""); err != nil {
		t.Fatal(err)
	}
	fx.idA = ta.ID
	if fx.tokB, _, err = s.CreateToken("site-b", "ar-2", ""); err != nil {
		t.Fatal(err)
	}
	must(t, s.AddFragment("ar-1", "site-a", []byte("fragment-a1")))
	must(t, s.AddFragment("ar-1", "site-b", []byte("fragment-b1")))
	must(t, s.AddFragment("ar-2", "site-b", []byte("fragment-b2")))
	fx.ks = NewServer(s, append([]ServerOption{WithLogger(quiet())}, opts...)...)
	fx.srv = httptest.NewServer(fx.ks)
	t.Cleanup(fx.srv.Close)
	return fx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (fx *fixture) client(t *testing.T, tok string) *Client {
	c, err := NewClient(fx.srv.URL, tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFragmentAPI(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	a := fx.client(t, fx.tokA)
	if f, err := a.Fragment(ctx, "ar-1"); err != nil || string(f) != "fragment-a1" {
		t.Fatalf("v1: %q %v", f, err)
	}
	// The seed's path: no archive named, the device has exactly one.
	if f, err := a.LegacyFragment(ctx, ""); err != nil || string(f) != "fragment-a1" {
		t.Fatalf("legacy: %q %v", f, err)
	}
	if _, err := a.Fragment(ctx, "ar-2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other device's archive: %v", err)
	}
	b := fx.client(t, fx.tokB)
	if f, err := b.LegacyFragment(ctx, ""); err != nil || string(f) != "fragment-b2" {
		t.Fatalf("bound token legacy: %q %v", f, err)
	}
	if _, err := b.Fragment(ctx, "ar-1"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("bound token, other archive: %v", err)
	}
	// Missing and unknown tokens.
	if _, err := fx.client(t, "").Fragment(ctx, "ar-1"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("no token: %v", err)
	}
	req, _ := http.NewRequest("GET", fx.srv.URL+FragmentPathPrefix+"ar-1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no auth header: %d", resp.StatusCode)
	}
	if _, err := fx.client(t, TokenPrefix+"guess").Fragment(ctx, "ar-1"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("guessed token: %v", err)
	}
	// Revoking the token.
	must(t, fx.store.RevokeToken(fx.idA))
	if _, err := a.Fragment(ctx, "ar-1"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("revoked token: %v", err)
	}
	// Revoking a fragment.
	tokA2, _, err := fx.store.CreateToken("site-a", "", "")
	must(t, err)
	if n, err := fx.store.RevokeFragment("ar-1", "site-a"); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if _, err := fx.client(t, tokA2).Fragment(ctx, "ar-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked fragment: %v", err)
	}
	// The revoked fragment bytes are gone from the store.
	fr, _ := fx.store.ListFragments("ar-1")
	for _, f := range fr {
		if f.Device == "site-a" && f.Revoked == nil {
			t.Fatal("fragment not marked revoked")
		}
	}
	// A new fragment may replace a revoked one, never an active one.
	must(t, fx.store.AddFragment("ar-1", "site-a", []byte("new")))
	if err := fx.store.AddFragment("ar-1", "site-a", []byte("newer")); !errors.Is(err, ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}

	// Ambiguity on the seed's path once site-a has two archives.
	must(t, fx.store.AddFragment("ar-3", "site-a", []byte("three")))
	if _, err := fx.client(t, tokA2).LegacyFragment(ctx, ""); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("ambiguous: %v", err)
	}
	if f, err := fx.client(t, tokA2).LegacyFragment(ctx, "ar-3"); err != nil || string(f) != "three" {
		t.Fatalf("legacy with archive: %q %v", f, err)
	}

	// Every request made with a known token is an audit row; the two that
	// reached the server without one (no header, a guessed token) are only
	// counted (the client refuses to send an empty token itself).
	log, err := fx.store.AuditLog(0)
	must(t, err)
	var ok, denied int
	for _, e := range log {
		if strings.HasPrefix(e.Action, "fragment.get") {
			if e.TokenID == "" || e.Device == "" {
				t.Fatalf("audit row without a token: %+v", e)
			}
			if e.Result == "ok" {
				ok++
			} else {
				denied++
			}
		}
	}
	if ok < 4 || denied < 5 {
		t.Fatalf("audit: %d ok, %d denied of %d events", ok, denied, len(log))
	}
	must(t, fx.ks.Flush())
	rc, err := fx.store.Refusals()
	must(t, err)
	var refused uint64
	for _, c := range rc {
		if c.Reason == ReasonBadToken && c.Prefix == "127.0.0.0/24" {
			refused += c.Count
		}
	}
	if refused != 2 {
		t.Fatalf("refusal counts %+v, want 2 unknown-token refusals from 127.0.0.0/24", rc)
	}
}

func TestRateLimit(t *testing.T) {
	fx := newFixture(t, WithTokenRateLimit(0.001, 3), WithIPRateLimit(1000, 1000))
	ctx := context.Background()
	a := fx.client(t, fx.tokA)
	for i := 0; i < 3; i++ {
		if _, err := a.Fragment(ctx, "ar-1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Fragment(ctx, "ar-1"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("4th request: %v", err)
	}
	// Another token is not affected.
	if _, err := fx.client(t, fx.tokB).Fragment(ctx, "ar-2"); err != nil {
		t.Fatal(err)
	}

	fx2 := newFixture(t, WithIPRateLimit(0.001, 2))
	bad := fx2.client(t, TokenPrefix+"guess")
	for i := 0; i < 2; i++ {
		if _, err := bad.Fragment(ctx, "ar-1"); !errors.Is(err, ErrUnauthorized) {
			t.Fatal(err)
		}
	}
	if _, err := bad.Fragment(ctx, "ar-1"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("guessing not limited: %v", err)
	}
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, caFile := writeSelfSigned(t, dir)
	data := filepath.Join(dir, "data")
	s, err := Open(data)
	must(t, err)
	tok, _, err := s.CreateToken("site-a", "", "")
	must(t, err)
	must(t, s.AddFragment("ar-1", "site-a", []byte("frag")))
	s.Close()

	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(ctx, Listen{Addr: "127.0.0.1:0", DataDir: data, TLSCert: certFile, TLSKey: keyFile, Ready: func(a net.Addr) { addrc <- a }}, WithLogger(quiet()))
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatal(err)
	}
	opt, err := WithCAFile(caFile)
	must(t, err)
	c, err := NewClient("https://"+addr.String(), tok, opt)
	must(t, err)
	if f, err := c.Fragment(ctx, "ar-1"); err != nil || string(f) != "frag" {
		t.Fatalf("tls fetch: %q %v", f, err)
	}
	// Without the CA the client refuses the server.
	c2, _ := NewClient("https://"+addr.String(), tok)
	if _, err := c2.Fragment(ctx, "ar-1"); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func writeSelfSigned(t *testing.T, dir string) (cert, key, ca string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keyserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	must(t, err)
	kb, err := x509.MarshalECPrivateKey(k)
	must(t, err)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	must(t, os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(t, os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	return cert, key, cert
}

func TestTokenExpiry(t *testing.T) {
	s, _ := openStore(t)
	now := time.Now()
	s.now = func() time.Time { return now }
	secret, tok, err := s.CreateTokenTTL("site-a", "", "", time.Hour)
	must(t, err)
	if tok.Expires == nil {
		t.Fatal("no expiry recorded")
	}
	if _, err := s.Authenticate(secret); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour + time.Second)
	if _, err := s.Authenticate(secret); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
}
