package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/keyserver"
)

// fetchFragment asks the running server for archive's fragment with secret.
func fetchFragment(t *testing.T, addr net.Addr, archive, secret string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr.String()+keyserver.FragmentPathPrefix+archive, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func parseJSON[T any](t *testing.T, what, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, s)
	}
	return v
}

// TestKeyserverAdminWhileServing: with a server running on --data (holding
// the bbolt lock), token create/list/revoke, fragment add/list/revoke and
// audit work through the admin API; the created token fetches the fragment
// from the running server, the revoked one no longer does; -o json output
// parses; after the server stops, the same commands open the store.
func TestKeyserverAdminWhileServing(t *testing.T) {
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- keyserver.Serve(ctx, keyserver.Listen{Addr: "127.0.0.1:0", DataDir: data, Ready: func(a net.Addr) { ready <- a }}, keyserver.WithTokenRateLimit(100, 100))
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	if _, err := keyserver.Open(data); err == nil {
		t.Fatal("store opened while serving; the test would not exercise the admin API")
	}

	start := time.Now()
	secret := strings.TrimSpace(mustRun(t, nil, "keyserver", "token", "create", "--device", "site-a", "--archive", "ar-1", "--data", data))
	if !strings.HasPrefix(secret, keyserver.TokenPrefix) {
		t.Fatalf("token create printed %q", secret)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("token create took %v: it waited for the bbolt lock instead of using the admin API", d)
	}
	frag := filepath.Join(t.TempDir(), "site-a.fragment")
	want := []byte("0123456789abcdef0123456789abcdef")
	if err := os.WriteFile(frag, want, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "keyserver", "fragment", "add", "--archive", "ar-1", "--device", "site-a", "--file", frag, "--data", data)
	if code, b := fetchFragment(t, addr, "ar-1", secret); code != 200 || string(b) != string(want) {
		t.Fatalf("fragment fetch with the new token: %d %q", code, b)
	}

	toks := parseJSON[[]map[string]any](t, "token list", mustRun(t, nil, "keyserver", "token", "list", "-o", "json", "--data", data))
	if len(toks) != 1 || toks[0]["device"] != "site-a" || toks[0]["archive"] != "ar-1" || toks[0]["id"] == "" || toks[0]["expires"] == nil {
		t.Fatalf("token list -o json: %v", toks)
	}
	if _, ok := toks[0]["hash"]; ok {
		t.Fatalf("token list -o json shows the hash: %v", toks[0])
	}
	if text := mustRun(t, nil, "keyserver", "token", "list", "--data", data); !strings.Contains(text, toks[0]["id"].(string)) {
		t.Fatalf("token list: %s", text)
	}
	frags := parseJSON[[]FragmentInfo](t, "fragment list", mustRun(t, nil, "keyserver", "fragment", "list", "-o", "json", "--data", data))
	if len(frags) != 1 || frags[0].Archive != "ar-1" || frags[0].Device != "site-a" || frags[0].Revoked != nil {
		t.Fatalf("fragment list -o json: %+v", frags)
	}
	evs := parseJSON[[]keyserver.Event](t, "audit", mustRun(t, nil, "keyserver", "audit", "-o", "json", "--data", data))
	var got bool
	for _, e := range evs {
		got = got || (e.Action == "fragment.get.v1" && e.Result == "ok" && e.TokenID == toks[0]["id"])
	}
	if !got {
		t.Fatalf("audit -o json has no ok fetch by %v: %+v", toks[0]["id"], evs)
	}
	parseJSON[[]keyserver.RefusalCount](t, "audit --refusals", mustRun(t, nil, "keyserver", "audit", "--refusals", "-o", "json", "--data", data))
	refuse(t, nil, `--output "yaml"`, "keyserver", "token", "list", "-o", "yaml", "--data", data)

	if out := mustRun(t, nil, "keyserver", "token", "revoke", secret, "--data", data); strings.Contains(out, secret) {
		t.Fatalf("revoke echoed the secret: %s", out)
	}
	if code, _ := fetchFragment(t, addr, "ar-1", secret); code != http.StatusUnauthorized {
		t.Fatalf("fetch with a revoked token: %d, want 401", code)
	}
	refuse(t, nil, "no such token", "keyserver", "token", "revoke", "tok_nonexistent", "--data", data)
	if out := mustRun(t, nil, "keyserver", "fragment", "revoke", "--archive", "ar-1", "--data", data); !strings.Contains(out, "1 fragment(s) of archive ar-1 revoked") {
		t.Fatalf("fragment revoke: %s", out)
	}
	frags = parseJSON[[]FragmentInfo](t, "fragment list", mustRun(t, nil, "keyserver", "fragment", "list", "-o", "json", "--data", data))
	if len(frags) != 1 || frags[0].Revoked == nil {
		t.Fatalf("fragment list after revoke: %+v", frags)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// Stopped: the commands open the store again and see the same state.
	toks = parseJSON[[]map[string]any](t, "token list", mustRun(t, nil, "keyserver", "token", "list", "-o", "json", "--data", data))
	if len(toks) != 1 || toks[0]["revoked"] == nil {
		t.Fatalf("token list after stop: %v", toks)
	}
}
