package station_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf/repo"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestServeTrustExpiry: a station on a real trust directory whose
// timestamp lives five seconds reports the expiry in /status and
// /metrics, and logs a warning once less than a fifth of it is left
// (nobody runs `trust refresh`).
func TestServeTrustExpiry(t *testing.T) {
	kdftest.Fast()
	ctx := context.Background()
	srv := testutil.Registry(t)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	rc := registry.NewClient(registry.WithInsecure(true))
	pub, err := repo.Open(rc, host+"/net/trust", t.TempDir(), repo.WithLifetime(repo.Timestamp, 5*time.Second),
		repo.WithPasswords(func(string) ([]byte, error) { return []byte("pw"), nil }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.Init(ctx, pub); err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(pub.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	store, err := trust.OpenStore(ctx, rc, host+"/net/trust", t.TempDir(), root, trust.WithMaxAge(0))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	st := &station.Station{ID: "st1", Trust: store, Client: rc, Network: station.Network{Prefix: host + "/net"},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	db, err := station.OpenDB(t.TempDir() + "/station.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st.DB = db
	s := &station.Server{Station: st, Interval: 100 * time.Millisecond}
	if err := store.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	m := regexp.MustCompile(`(?m)^trainyard_trust_expiry_seconds (\S+)$`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("no trust expiry metric:\n%s", rec.Body.String())
	}
	if v, err := strconv.ParseFloat(m[1], 64); err != nil || v <= 0 || v > 5 {
		t.Fatalf("trust expiry %s, want 0..5 seconds", m[1])
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	var status struct {
		Trust struct {
			Role    string `json:"first_expiring_role"`
			Expires string `json:"expires"`
		} `json:"trust"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &status); err != nil || status.Trust.Role != "timestamp" || status.Trust.Expires == "" {
		t.Fatalf("status %s (%v)", rec.Body.String(), err)
	}

	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, "", nil) }()
	defer func() { cancel(); <-done }()
	time.Sleep(time.Second)
	if strings.Contains(logs.String(), "expires soon") {
		t.Fatalf("warned with most of the lifetime left: %s", logs.String())
	}
	deadline := time.Now().Add(8 * time.Second)
	for !strings.Contains(logs.String(), "trust directory expires soon") {
		if time.Now().After(deadline) {
			t.Fatalf("no expiry warning: %s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "expires soon"); n != 1 {
		t.Fatalf("%d warnings, want one (rate-limited)", n)
	}
}
