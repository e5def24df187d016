package keyserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fromAddr is an HTTP client whose connections come from local address ip
// (anything in 127.0.0.0/8 is loopback on Linux).
func fromAddr(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1}}
}

type floodResult struct{ evaluated, limited, other atomic.Int64 }

// flood sends perAddr guesses from each address, 16 at a time, and sorts
// the answers: 401 means the guessed token was actually checked.
func flood(t *testing.T, url string, addrs []string, perAddr int) *floodResult {
	t.Helper()
	var res floodResult
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, a := range addrs {
		hc := fromAddr(a)
		for i := 0; i < perAddr; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				req, _ := http.NewRequest(http.MethodGet, url+FragmentPathPrefix+"ar-1", nil)
				req.Header.Set("Authorization", fmt.Sprintf("Bearer %sguess-%s-%d", TokenPrefix, a, i))
				resp, err := hc.Do(req)
				if err != nil {
					res.other.Add(1)
					return
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusUnauthorized:
					res.evaluated.Add(1)
				case http.StatusTooManyRequests:
					res.limited.Add(1)
				default:
					res.other.Add(1)
				}
			}(i)
		}
	}
	wg.Wait()
	return &res
}

func floodServer(t *testing.T, opts ...ServerOption) (*Server, *Store, string, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := Open(dir)
	must(t, err)
	t.Cleanup(func() { st.Close() })
	ks := NewServer(st, append([]ServerOption{WithLogger(quiet())}, opts...)...)
	srv := httptest.NewUnstartedServer(ks)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ks, st, srv.URL, filepath.Join(dir, DBFile)
}

// TestFloodFromOneNetworkIsLimitedAndNotAudited: 253 addresses of one /24
// share one rate limit, and the whole flood leaves a handful of counter
// rows, not a row per request.
func TestFloodFromOneNetworkIsLimitedAndNotAudited(t *testing.T) {
	ks, st, url, dbPath := floodServer(t, WithFailureLimit(1e6, 1e6)) // only the prefix limit here
	var addrs []string
	for x := 2; x <= 254; x++ {
		addrs = append(addrs, fmt.Sprintf("127.0.0.%d", x))
	}
	start := time.Now()
	res := flood(t, url, addrs, 4)
	el := time.Since(start)
	// Default prefix limit: burst 20, then 5/s.
	bound := int64(20 + 5*el.Seconds() + 2)
	if n := res.evaluated.Load(); n > bound || n == 0 {
		t.Fatalf("%d guesses checked in %v from one /24, want 1..%d (limited %d, other %d)", n, el, bound, res.limited.Load(), res.other.Load())
	}
	if res.other.Load() != 0 {
		t.Fatalf("%d requests failed otherwise", res.other.Load())
	}
	must(t, ks.Flush())
	assertBoundedAudit(t, st, dbPath, 1012)
}

// TestFloodFromManyNetworksHitsGlobalFailureLimit: 100 different /24s each
// stay under their own prefix limit, but failed token checks across all of
// them are bounded by the global failure budget.
func TestFloodFromManyNetworksHitsGlobalFailureLimit(t *testing.T) {
	ks, st, url, dbPath := floodServer(t, WithFailureLimit(10, 30))
	var addrs []string
	for x := 1; x <= 100; x++ {
		addrs = append(addrs, fmt.Sprintf("127.%d.%d.1", x, x%7))
	}
	start := time.Now()
	res := flood(t, url, addrs, 10) // 10 per /24: under the burst of 20
	el := time.Since(start)
	bound := int64(30 + 10*el.Seconds() + 2)
	if n := res.evaluated.Load(); n > bound || n == 0 {
		t.Fatalf("%d guesses checked in %v from 100 networks, want 1..%d (limited %d)", n, el, bound, res.limited.Load())
	}
	// A real token still works once the flood is over and the budget refilled.
	secret, _, err := st.CreateToken("site-a", "", "")
	must(t, err)
	must(t, st.AddFragment("ar-1", "site-a", []byte("frag")))
	c, err := NewClient(url, secret)
	must(t, err)
	if f, err := c.Fragment(context.Background(), "ar-1"); err != nil || string(f) != "frag" {
		t.Fatalf("legit fetch after flood: %q %v", f, err)
	}
	must(t, ks.Flush())
	assertBoundedAudit(t, st, dbPath, 1000)
}

func assertBoundedAudit(t *testing.T, st *Store, dbPath string, requests int) {
	t.Helper()
	rows, err := st.AuditLog(0)
	must(t, err)
	for _, r := range rows {
		if r.TokenID == "" && r.Action != "token.create" && r.Action != "fragment.add" {
			t.Fatalf("unauthenticated request audited as a row: %+v", r)
		}
	}
	rc, err := st.Refusals()
	must(t, err)
	var total uint64
	for _, c := range rc {
		total += c.Count
	}
	// every refused request counted, in a few rows (minute x prefix x reason)
	if total < uint64(requests)-30 || len(rc) > 2*(100+1)*3 {
		t.Fatalf("%d refusal rows counting %d requests of %d", len(rc), total, requests)
	}
	fi, err := os.Stat(dbPath)
	must(t, err)
	if fi.Size() > 1<<20 {
		t.Fatalf("database grew to %d bytes", fi.Size())
	}
	t.Logf("%d requests: %d audit rows, %d refusal rows, db %d bytes", requests, len(rows), len(rc), fi.Size())
}

// TestAuditRetention: rows past the row bound and older than the age bound
// are pruned, oldest first; refusal counts likewise.
func TestAuditRetention(t *testing.T) {
	s, _ := openStore(t)
	now := time.Now()
	s.now = func() time.Time { return now }
	s.SetRetention(24*time.Hour, 50)
	for i := 0; i < 200; i++ {
		must(t, s.Audit(Event{Action: "fragment.get.v1", Result: "ok", TokenID: "tok_x", Detail: fmt.Sprint(i)}))
	}
	rows, err := s.AuditLog(0)
	must(t, err)
	if len(rows) != 50 || rows[0].Detail != "150" || rows[49].Detail != "199" {
		t.Fatalf("%d rows, first %q: want the newest 50", len(rows), rows[0].Detail)
	}
	// Two days later every old row is gone after a prune.
	now = now.Add(48 * time.Hour)
	must(t, s.Audit(Event{Action: "fragment.get.v1", Result: "ok", TokenID: "tok_x", Detail: "new"}))
	rows, err = s.AuditLog(0)
	must(t, err)
	if len(rows) != 1 || rows[0].Detail != "new" {
		t.Fatalf("after max age: %d rows", len(rows))
	}
	// Refusal counts: merged per key, bounded in rows, aged out.
	var counts []RefusalCount
	for i := 0; i < 80; i++ {
		counts = append(counts, RefusalCount{Minute: now.Add(time.Duration(i) * time.Minute), Prefix: "10.0.0.0/24", Reason: ReasonBadToken, Count: 2})
	}
	must(t, s.AddRefusals(counts))
	must(t, s.AddRefusals(counts[79:]))
	rc, err := s.Refusals()
	must(t, err)
	if len(rc) != 50 || rc[49].Count != 4 || !rc[0].Minute.Equal(counts[30].Minute.Truncate(time.Minute)) {
		t.Fatalf("refusals: %d rows, last %+v, first %+v", len(rc), rc[len(rc)-1], rc[0])
	}
	now = now.Add(72 * time.Hour)
	must(t, s.Prune())
	if rc, _ := s.Refusals(); len(rc) != 0 {
		t.Fatalf("%d refusal rows past max age", len(rc))
	}
}

func TestAddrPrefix(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.77", "192.0.2.0/24"},
		{"127.0.0.254", "127.0.0.0/24"},
		{"::ffff:192.0.2.77", "192.0.2.0/24"}, // IPv4-mapped: the IPv4 rule
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not-an-ip", "not-an-ip"},
	} {
		if got := AddrPrefix(c.in, 24, 64); got != c.want {
			t.Errorf("AddrPrefix(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// Two addresses of one /64 share a limit; another /64 does not.
	l := newLimiterSet(0.0001, 1)
	if !l.allow(AddrPrefix("2001:db8::1", 24, 64)) || l.allow(AddrPrefix("2001:db8::ffff:1", 24, 64)) {
		t.Fatal("same /64 not limited together")
	}
	if !l.allow(AddrPrefix("2001:db8:0:1::1", 24, 64)) {
		t.Fatal("other /64 limited")
	}
}

// TestServeFlushesRefusalsAtShutdown: refusals counted by a running server
// reach the database when it stops, not only on the 10 s tick.
func TestServeFlushesRefusalsAtShutdown(t *testing.T) {
	data := t.TempDir()
	st, err := Open(data)
	must(t, err)
	st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(ctx, Listen{Addr: "127.0.0.1:0", DataDir: data, Ready: func(a net.Addr) { addrc <- a }}, WithLogger(quiet()))
	}()
	url := "http://" + (<-addrc).String()
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest(http.MethodGet, url+FragmentPathPrefix+"ar-1", nil)
		req.Header.Set("Authorization", "Bearer "+TokenPrefix+"guess")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
	}
	cancel()
	must(t, <-errc)
	st, err = OpenExisting(data)
	must(t, err)
	defer st.Close()
	rc, err := st.Refusals()
	must(t, err)
	if len(rc) != 1 || rc[0].Count != 3 || rc[0].Reason != ReasonBadToken {
		t.Fatalf("refusals after shutdown: %+v", rc)
	}
	if rows, _ := st.AuditLog(0); len(rows) != 0 {
		t.Fatalf("guesses audited as rows: %+v", rows)
	}
}
