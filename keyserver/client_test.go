package keyserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestClientUnavailable: an outage (nothing listening, a 5xx, an answer cut
// off) is ErrUnavailable and no refusal; a refusal is never ErrUnavailable;
// the caller's own cancellation is neither.
func TestClientUnavailable(t *testing.T) {
	ctx := context.Background()
	refusals := []error{ErrUnauthorized, ErrForbidden, ErrNotFound, ErrAmbiguous, ErrRateLimited, ErrBadFragment}

	// A port that was just listening and is closed now.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	down := "http://" + l.Addr().String()
	l.Close()

	status := 0
	answer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if status == 0 {
			// Promise a body and hang up after a part of it.
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte("short"))
			return
		}
		w.WriteHeader(status)
	}))
	defer answer.Close()

	for _, tc := range []struct {
		what   string
		url    string
		status int
	}{
		{"nothing listening", down, 0},
		{"503", answer.URL, http.StatusServiceUnavailable},
		{"500", answer.URL, http.StatusInternalServerError},
		{"cut-off answer", answer.URL, 0},
	} {
		status = tc.status
		c, err := NewClient(tc.url, "tyks_x")
		must(t, err)
		_, err = c.Fragment(ctx, "ar-1")
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s: %v, want ErrUnavailable", tc.what, err)
		}
		for _, r := range refusals {
			if errors.Is(err, r) {
				t.Fatalf("%s: %v also matches the refusal %v", tc.what, err, r)
			}
		}
	}

	// Refusals from a real server stay refusals.
	fx := newFixture(t)
	if _, err := fx.client(t, TokenPrefix+"guess").Fragment(ctx, "ar-1"); !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := fx.client(t, fx.tokB).Fragment(ctx, "ar-1"); !errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("bound token, other archive: %v", err)
	}

	// The caller giving up is a cancellation, not an outage.
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	c, err := NewClient(hang.URL, "tyks_x")
	must(t, err)
	if _, err := c.Fragment(cctx, "ar-1"); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}
}
