package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainyard/trainyard/station"
)

// lockedBuffer is a bytes.Buffer safe for a command's goroutine and the
// test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStationCLIOperations: the operator's side of a station through the
// CLI: --data is required, a stop runs once (a second `station run` is
// refused with exit 4), and while `station serve --hold` runs the admin
// commands (history, accept, stop, status, logs, run) talk to it through
// its socket.
func TestStationCLIOperations(t *testing.T) {
	n := newCLINet(t)
	p := n.p
	n.ok(t, "trust", "approve-train", "--digest", n.digest, "--user", "alice", "--key", p("alice.key"))
	n.create(t, "t1")
	t.Setenv("TRAINYARD_STATION_STATE", p("st1-state"))
	st := []string{"--id", "st1", "--key", p("st1.key"), "--trust-dir", p("st1-trust"), n.root}
	inbox := n.host + "/net/stations/st1:"

	if c, _, stderr := execRoot(t, "", append([]string{"station", "run", inbox + "t1"}, st...)...); c != 2 || !strings.Contains(stderr, "--data is required") {
		t.Fatalf("run without --data: exit %d, %q", c, stderr)
	}
	withData := append([]string{"--data", n.data}, st...)
	n.ok(t, append([]string{"station", "run", inbox + "t1"}, withData...)...)
	c, _, stderr := execRoot(t, "", append([]string{"station", "run", inbox + "t1"}, withData...)...)
	if c != 4 || !strings.Contains(stderr, "already done") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("second run: exit %d, %q", c, stderr)
	}
	var h []station.Stop
	if err := json.Unmarshal([]byte(n.ok(t, "station", "history", "--id", "st1", "-o", "json")), &h); err != nil || len(h) != 1 || h[0].State != station.Done || h[0].Seconds <= 0 {
		t.Fatalf("history: %+v, %v", h, err)
	}

	// A bad value in the environment is a usage error, not a silent default.
	t.Setenv("TRAINYARD_STATION_INTERVAL", "30x")
	if c, _, stderr := execRoot(t, "", append([]string{"station", "serve"}, withData...)...); c != 2 || !strings.Contains(stderr, "TRAINYARD_STATION_INTERVAL") {
		t.Fatalf("bad interval: exit %d, %q", c, stderr)
	}
	t.Setenv("TRAINYARD_STATION_INTERVAL", "")
	t.Setenv("TRAINYARD_STATION_MEMORY", "lots")
	if c, _, stderr := execRoot(t, "", append([]string{"station", "run", inbox + "t1"}, withData...)...); c != 2 || !strings.Contains(stderr, "TRAINYARD_STATION_MEMORY") {
		t.Fatalf("bad memory: exit %d, %q", c, stderr)
	}
	t.Setenv("TRAINYARD_STATION_MEMORY", "")

	// serve --hold, in this process, until ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	served := make(chan error, 1)
	go func() {
		root := NewRoot()
		root.SetArgs(append([]string{"station", "serve", "--hold", "--interval", "50ms", "--status-addr", "127.0.0.1:0"}, withData...))
		root.SetOut(&out)
		root.SetErr(&errOut)
		served <- root.ExecuteContext(ctx)
	}()
	waitCLI(t, "serve to start", func() bool { return strings.Contains(out.String(), "admin socket") })
	// The status listener: probes open, everything else behind the
	// console's login.
	m := regexp.MustCompile(`console on (http://[^/ ]+)/`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("serve did not name its console: %q", out.String())
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/metrics": http.StatusOK, "/status": http.StatusSeeOther, "/": http.StatusSeeOther} {
		resp, err := noRedirect.Get(m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want && !(want == http.StatusSeeOther && resp.StatusCode == http.StatusFound) {
			t.Errorf("GET %s without a login: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if tok := strings.TrimSpace(n.ok(t, "station", "console-token", "--id", "st1")); len(tok) < 32 {
		t.Fatalf("console token %q", tok)
	}
	n.create(t, "t2")
	waitCLI(t, "t2 held", func() bool {
		_, o, _ := execRoot(t, "", "station", "history", "--id", "st1", "--state", "held")
		return strings.Contains(o, "t2")
	})
	// The database is serve's: these go through the socket.
	if o := n.ok(t, "station", "status", "--id", "st1"); !strings.Contains(o, "serving since") || !strings.Contains(o, "held 1") {
		t.Fatalf("status: %s", o)
	}
	if c, _, stderr := execRoot(t, "", "station", "reject", "t2", "--id", "st1"); c != 2 || !strings.Contains(stderr, "--reason is required") {
		t.Fatalf("reject without a reason: exit %d, %q", c, stderr)
	}
	if c, _, stderr := execRoot(t, "", "station", "accept", "nope", "--id", "st1"); c != 4 || !strings.Contains(stderr, "no such stop") {
		t.Fatalf("accept of nothing: exit %d, %q", c, stderr)
	}
	if o := n.ok(t, "station", "accept", "t2", "--id", "st1"); !strings.Contains(o, "accepted") {
		t.Fatalf("accept: %s", o)
	}
	waitCLI(t, "t2 done", func() bool {
		_, o, _ := execRoot(t, "", "station", "stop", "t2", "--id", "st1")
		return strings.Contains(o, ": done")
	})
	if o := n.ok(t, "station", "stop", "t2", "--id", "st1"); !strings.Contains(o, "accepted by ") {
		t.Fatalf("stop record lacks who accepted: %s", o)
	}
	if o := n.ok(t, "station", "logs", "t2", "--id", "st1"); !strings.Contains(o, "patients so far") {
		t.Fatalf("logs through serve: %s", o)
	}
	// A backup while serve holds the database: a consistent copy.
	n.ok(t, "station", "backup", "--id", "st1", p("backup.db"))
	if c, _, stderr := execRoot(t, "", "station", "backup", "--id", "st1", p("backup.db")); c != 2 || !strings.Contains(stderr, "--force") {
		t.Fatalf("backup over a file: exit %d, %q", c, stderr)
	}
	bdb, err := station.OpenDB(p("backup.db"))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := bdb.History(station.Filter{}); err != nil || len(h) != 2 {
		t.Fatalf("backup holds %+v, %v", h, err)
	}
	bdb.Close()
	// station run while serve holds the database: run inside serve.
	c, _, stderr = execRoot(t, "", append([]string{"station", "run", inbox + "t2"}, withData...)...)
	if c != 4 || !strings.Contains(stderr, "already done") {
		t.Fatalf("run while serving: exit %d, %q", c, stderr)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v (%s)", err, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	// With serve gone the same commands read the database directly; one
	// that pushes needs the station's key and network.
	if c, _, stderr := execRoot(t, "", "station", "release", "t2", "--id", "st1"); c != 2 || !strings.Contains(stderr, "--key and --network") {
		t.Fatalf("release without serve or key: exit %d, %q", c, stderr)
	}
	if o := n.ok(t, "station", "status", "--id", "st1"); !strings.Contains(o, "serve is not running") || !strings.Contains(o, "done 2") {
		t.Fatalf("status without serve: %s", o)
	}
}

func waitCLI(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var pullBarRE = regexp.MustCompile(`pull train +100% .*\([0-9.]+/[0-9.]+ MB, [0-9.]+ [kMG]?B/s\)`)

// TestPullProgress: `station run` and `train open` draw a bar for the
// train's state layer (sealed code and results) on a terminal.
func TestPullProgress(t *testing.T) {
	n := newCLINet(t)
	big := make([]byte, 6<<20)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(n.code, "model.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	n.digest = strings.TrimSpace(n.ok(t, append([]string{"train", "digest", "--code", n.code}, n.exec...)...))
	n.ok(t, "trust", "approve-train", "--digest", n.digest, "--user", "alice", "--key", n.p("alice.key"))
	n.create(t, "big")
	t.Setenv("TRAINYARD_STATION_STATE", n.p("st1-state"))
	out, code := runOnTTY(t, "station", "run", n.host+"/net/stations/st1:big", "--id", "st1", "--key", n.p("st1.key"),
		"--data", n.data, "--trust-dir", n.p("st1-trust"), n.root)
	if code != 0 || !pullBarRE.MatchString(out) {
		t.Fatalf("station run on a terminal: exit %d, no pull bar in\n%q", code, out)
	}
	out, code = runOnTTY(t, "train", "open", n.host+"/net/users/alice:big", "--creator", "alice", "--key", n.p("alice.key"),
		"--out", n.p("results"), "--trust-dir", n.p("alice-trust"))
	if code != 0 || !pullBarRE.MatchString(out) {
		t.Fatalf("train open on a terminal: exit %d, no pull bar in\n%q", code, out)
	}
}
