package ocistore

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/registry"
)

// TestToken plays a registry with token auth: /v2/ answers 401 with a
// Bearer challenge, the realm hands out a token for Basic credentials.
func TestToken(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token",service="test-registry"`)
			w.WriteHeader(http.StatusUnauthorized)
		case "/token":
			u, p, ok := r.BasicAuth()
			if !ok || u != "alice" || p != "secret" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if r.URL.Query().Get("scope") != "repository:team/tuf:pull,push" || r.URL.Query().Get("service") != "test-registry" {
				t.Errorf("token query %q", r.URL.RawQuery)
			}
			w.Write([]byte(`{"token":"tok-123"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	s, err := New(registry.NewClient(registry.WithInsecure(true)), strings.TrimPrefix(srv.URL, "http://")+"/team/tuf")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token(context.Background(), Keychain("alice", "secret", ""), nil, "pull", "push")
	if err != nil || tok != "tok-123" {
		t.Fatalf("token %q, %v", tok, err)
	}
	if _, err := s.Token(context.Background(), Keychain("alice", "wrong", ""), nil, "pull"); err == nil {
		t.Fatal("wrong password accepted")
	}
}
