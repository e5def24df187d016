package console_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/station/console"
)

// fixture is a real station (database, review and log directories, a
// registry to release to) behind a console served by httptest.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	st    *station.Station
	rc    *registry.Client
	srv   *httptest.Server
	token string
	tokf  string
	loc   *time.Location
	// events counts requests for /events (the live-refresh script's).
	events atomic.Int32
}

func newFixture(t *testing.T, o ...func(*console.Options)) *fixture {
	t.Helper()
	reg := testutil.Registry(t)
	t.Cleanup(reg.Close)
	db, err := station.OpenDB(filepath.Join(t.TempDir(), "station.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rc := registry.NewClient()
	st := &station.Station{ID: "hospital-a", Client: rc, DB: db, Hold: true, ReviewResults: true,
		Network:   station.Network{Prefix: strings.TrimPrefix(reg.URL, "http://") + "/pht"},
		ReviewDir: t.TempDir(), TrainLogDir: t.TempDir(), WorkDir: t.TempDir()}
	loc := time.FixedZone("CET", 3600)
	f := &fixture{t: t, ctx: context.Background(), st: st, rc: rc, tokf: filepath.Join(t.TempDir(), "console.token"), loc: loc}
	// The console's Admin is the station as serve offers it: serve's status
	// (uptime, polls, version) over the station's database.
	srv := &station.Server{Station: st, Version: "v9.9.9-test"}
	if _, err := srv.PollOnce(f.ctx); err != nil {
		t.Fatal(err)
	}
	opts := console.Options{Admin: serving{st, srv}, TokenFile: f.tokf, Location: loc, Version: "v0.0.0-unused", Poll: 100 * time.Millisecond}
	for _, fn := range o {
		fn(&opts)
	}
	h, err := console.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if f.token, err = console.Token(f.tokf, false); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			f.events.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// serving is a station under serve, as serve's admin API offers it.
type serving struct {
	*station.Station
	srv *station.Server
}

func (s serving) Status(ctx context.Context) (*station.Status, error) { return s.srv.Status(ctx) }

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

// stop saves a record as the station would have made it.
func (f *fixture) stop(train string, state station.State, mod ...func(*station.Stop)) *station.Stop {
	f.t.Helper()
	now := time.Now().UTC()
	st := &station.Stop{Key: digest(train) + "/0", Station: "hospital-a", Protocol: "trainyard/v1", Train: train, Digest: digest(train),
		Tag: train, Input: digest("input " + train), Source: f.st.Network.Inbox("hospital-a") + ":" + train,
		Index: 0, State: state, Creator: "alice", Route: []string{"hospital-a", "hospital-b"}, Approvers: []string{"ethics-board"},
		Next: "hospital-b", Dest: f.st.Network.Inbox("hospital-b") + ":" + train, Arrived: now, Time: now}
	for _, m := range mod {
		m(st)
	}
	if err := f.st.DB.Save(st, ""); err != nil {
		f.t.Fatal(err)
	}
	return st
}

// review makes st a stop under review as the station keeps one: the
// plaintext results (files: path -> content) and the sealed train to push
// as an OCI layout.
func (f *fixture) review(train string, files map[string]string) *station.Stop {
	f.t.Helper()
	st := f.stop(train, station.Review, func(s *station.Stop) { s.Seconds = 1.5 })
	dir, err := f.st.ReviewPath(st)
	if err != nil {
		f.t.Fatal(err)
	}
	for p, c := range files {
		fp := filepath.Join(dir, "results", p)
		if err := os.MkdirAll(filepath.Dir(fp), 0o700); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(fp, []byte(c), 0o600); err != nil {
			f.t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "results"), 0o700)
	lp, err := layout.Write(filepath.Join(dir, "out"), empty.Index)
	if err != nil {
		f.t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": st.Dest, "dev.trainyard.shared": "false"})); err != nil {
		f.t.Fatal(err)
	}
	return st
}

// withLog gives a stop a kept train log with content.
func (f *fixture) withLog(content string) func(*station.Stop) {
	return func(s *station.Stop) {
		p := filepath.Join(f.st.TrainLogDir, s.Train+".log")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			f.t.Fatal(err)
		}
		s.Log = p
	}
}

// client is a browser without JavaScript: a cookie jar, redirects not
// followed so the tests see them.
type client struct {
	f    *fixture
	hc   *http.Client
	csrf string
}

func (f *fixture) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{f: f, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) get(path string) (int, http.Header, string) {
	c.f.t.Helper()
	resp, err := c.hc.Get(c.f.srv.URL + path)
	if err != nil {
		c.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindSubmatch(b); m != nil {
		c.csrf = string(m[1])
	}
	return resp.StatusCode, resp.Header, string(b)
}

func (c *client) post(path string, form url.Values) (int, http.Header, string) {
	c.f.t.Helper()
	resp, err := c.hc.PostForm(c.f.srv.URL+path, form)
	if err != nil {
		c.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// login logs in and reads the session's CSRF token from the queue page.
func (f *fixture) login() *client {
	f.t.Helper()
	c := f.client()
	code, h, body := c.post("/login", url.Values{"token": {f.token}})
	if code != http.StatusSeeOther || h.Get("Location") != "/" {
		f.t.Fatalf("login: %d %s %s", code, h.Get("Location"), body)
	}
	if code, _, body := c.get("/"); code != http.StatusOK || c.csrf == "" {
		f.t.Fatalf("queue after login: %d, csrf %q\n%s", code, c.csrf, body)
	}
	return c
}

func (c *client) act(name, action, reason string) (int, string) {
	c.f.t.Helper()
	code, h, body := c.post("/stop/action", url.Values{"csrf": {c.csrf}, "name": {name}, "action": {action}, "reason": {reason}})
	if code == http.StatusSeeOther {
		return code, h.Get("Location")
	}
	return code, body
}

func (f *fixture) state(key string) station.State {
	f.t.Helper()
	st, err := f.st.DB.Get(key)
	if err != nil || st == nil {
		f.t.Fatalf("stop %s: %v", key, err)
	}
	return st.State
}

func TestLoginRefusesAWrongToken(t *testing.T) {
	f := newFixture(t)
	for _, tok := range []string{"", "wrong", f.token + "x", f.token[:len(f.token)-1]} {
		c := f.client()
		code, h, body := c.post("/login", url.Values{"token": {tok}})
		if code != http.StatusUnauthorized || h.Get("Set-Cookie") != "" || !strings.Contains(body, "That token is wrong") {
			t.Fatalf("token %q: %d, cookie %q", tok, code, h.Get("Set-Cookie"))
		}
		if code, h, _ := c.get("/"); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
			t.Fatalf("after a refused login: %d %s", code, h.Get("Location"))
		}
	}
}

func TestSessionCookie(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	_, h, _ := c.post("/login", url.Values{"token": {f.token}})
	ck := (&http.Response{Header: h}).Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Secure || len(ck[0].Value) < 43 {
		t.Fatalf("cookie over http: %+v", ck)
	}
	other := f.login()
	if other.csrf == c.csrf || other.csrf == "" {
		t.Fatal("two sessions share a CSRF token")
	}

	// Over TLS the cookie is Secure.
	tls := httptest.NewTLSServer(mustConsole(t, f))
	defer tls.Close()
	hc := tls.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.PostForm(tls.URL+"/login", url.Values{"token": {f.token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var sec *http.Cookie
	for _, c := range resp.Cookies() {
		sec = c
	}
	if sec == nil || !sec.Secure || !sec.HttpOnly {
		t.Fatalf("cookie over TLS: %+v", sec)
	}
}

func mustConsole(t *testing.T, f *fixture) http.Handler {
	h, err := console.New(console.Options{Admin: f.st, TokenFile: f.tokf})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestNoSessionRedirectsToLogin(t *testing.T) {
	f := newFixture(t)
	held := f.stop("t-held", station.Held)
	c := f.client()
	for _, p := range []string{"/", "/stop?name=" + url.QueryEscape(held.Key), "/stop/results?name=x", "/stop/log?name=x", "/history?state=done", "/health", "/nothing"} {
		code, h, body := c.get(p)
		if code != http.StatusSeeOther || h.Get("Location") != "/login?next="+url.QueryEscape(p) {
			t.Fatalf("GET %s without a session: %d %s", p, code, h.Get("Location"))
		}
		if strings.Contains(body, "t-held") {
			t.Fatalf("GET %s without a session shows the train", p)
		}
	}
	if code, _, _ := c.get("/events"); code != http.StatusUnauthorized {
		t.Fatalf("events without a session: %d", code)
	}
	if code, _, _ := c.post("/stop/action", url.Values{"name": {held.Key}, "action": {"accept"}}); code != http.StatusForbidden {
		t.Fatalf("accept without a session: %d", code)
	}
	// A made-up cookie is no session either.
	u, _ := url.Parse(f.srv.URL)
	c.hc.Jar.SetCookies(u, []*http.Cookie{{Name: "trainyard_console", Value: strings.Repeat("A", 43)}})
	if code, _, _ := c.get("/"); code != http.StatusSeeOther {
		t.Fatalf("forged cookie: %d", code)
	}
	if f.state(held.Key) != station.Held {
		t.Fatal("a request without a session changed the stop")
	}
	// The login page and the style sheet need no session.
	if code, _, body := c.get("/login?next=/history"); code != http.StatusOK || !strings.Contains(body, `<label for="token">`) || !strings.Contains(body, `value="/history"`) {
		t.Fatalf("login page: %d\n%s", code, body)
	}
	if code, _, _ := c.get("/static/console.css"); code != http.StatusOK {
		t.Fatalf("style sheet: %d", code)
	}
}

func TestLoginRedirectStaysOnTheSite(t *testing.T) {
	f := newFixture(t)
	for next, want := range map[string]string{"/history?state=done": "/history?state=done", "//evil.example/": "/", "https://evil.example/": "/", "/\\evil.example": "/", "": "/"} {
		c := f.client()
		_, h, _ := c.post("/login", url.Values{"token": {f.token}, "next": {next}})
		if h.Get("Location") != want {
			t.Fatalf("next %q: redirected to %q", next, h.Get("Location"))
		}
	}
}

func TestCSRFRefused(t *testing.T) {
	f := newFixture(t)
	held := f.stop("t-held", station.Held)
	c := f.login()
	other := f.login()
	for name, tok := range map[string][]string{"missing": nil, "empty": {""}, "wrong": {"x" + c.csrf[1:]}, "another session's": {other.csrf}} {
		code, _, body := c.post("/stop/action", url.Values{"csrf": tok, "name": {held.Key}, "action": {"accept"}})
		if code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Fatalf("%s CSRF token: %d", name, code)
		}
	}
	if code, _, _ := c.post("/logout", url.Values{}); code != http.StatusForbidden {
		t.Fatalf("logout without CSRF: %d", code)
	}
	if f.state(held.Key) != station.Held {
		t.Fatal("a forged request accepted the train")
	}
	if code, loc := c.act(held.Key, "accept", ""); code != http.StatusSeeOther || !strings.HasSuffix(loc, "done=accept") {
		t.Fatalf("accept with the right token: %d %s", code, loc)
	}
	if f.state(held.Key) != station.Accepted {
		t.Fatal("accept did not reach the station")
	}
}

// lastEvent is the stop's newest audit record.
func (f *fixture) lastEvent(key string) station.Event {
	f.t.Helper()
	ev, err := f.st.DB.Events(key, 100)
	if err != nil || len(ev) == 0 {
		f.t.Fatalf("events of %s: %v %v", key, ev, err)
	}
	return ev[len(ev)-1]
}

func TestActionsAreRecordedWithWho(t *testing.T) {
	f := newFixture(t)
	a := f.stop("t-accept", station.Held)
	r := f.stop("t-reject", station.Held)
	rel := f.review("t-release", map[string]string{"out.csv": "n\n12\n"})
	wh := f.review("t-withhold", map[string]string{"out.csv": "n\n3\n"})
	fl := f.stop("t-failed", station.Failed, func(s *station.Stop) { s.ExitCode = 3; s.Error = "train exited 3" })
	c := f.login()
	const who = "console:127.0.0.1"

	if code, _ := c.act(a.Key, "accept", ""); code != http.StatusSeeOther {
		t.Fatalf("accept: %d", code)
	}
	if e := f.lastEvent(a.Key); e.State != station.Accepted || e.By != who {
		t.Fatalf("accept recorded as %+v", e)
	}
	_, _, body := c.get("/stop?name=" + url.QueryEscape(a.Key) + "&done=accept")
	if !strings.Contains(body, "Accepted: the train runs") || !strings.Contains(body, who) {
		t.Fatalf("train page after accept:\n%s", body)
	}

	// Reject and withhold need a reason, in the console as everywhere.
	if code, body := c.act(r.Key, "reject", "  "); code != http.StatusBadRequest || !strings.Contains(body, "a reason is required") {
		t.Fatalf("reject without a reason: %d", code)
	}
	if code, _ := c.act(wh.Key, "withhold", ""); code != http.StatusBadRequest {
		t.Fatalf("withhold without a reason: %d", code)
	}
	if f.state(r.Key) != station.Held || f.state(wh.Key) != station.Review {
		t.Fatal("an action without a reason changed a stop")
	}
	if code, _ := c.act(r.Key, "reject", "not the approved protocol"); code != http.StatusSeeOther {
		t.Fatalf("reject: %d", code)
	}
	if e := f.lastEvent(r.Key); e.State != station.Rejected || e.By != who || e.Reason != "not the approved protocol" {
		t.Fatalf("reject recorded as %+v", e)
	}
	if code, _ := c.act(wh.Key, "withhold", "fewer than 10 patients"); code != http.StatusSeeOther {
		t.Fatalf("withhold: %d", code)
	}
	if e := f.lastEvent(wh.Key); e.State != station.Withheld || e.By != who || e.Reason != "fewer than 10 patients" {
		t.Fatalf("withhold recorded as %+v", e)
	}
	if _, err := f.rc.Head(f.ctx, wh.Dest); err == nil {
		t.Fatal("withheld results left the station")
	}

	// Release pushes the kept sealed train to the next hop's registry.
	if _, err := f.rc.Head(f.ctx, rel.Dest); err == nil {
		t.Fatal("results under review are already out")
	}
	if code, body := c.act(rel.Key, "release", ""); code != http.StatusSeeOther {
		t.Fatalf("release: %d %s", code, body)
	}
	got, err := f.st.DB.Get(rel.Key)
	if err != nil || got.State != station.Done || got.By != who {
		t.Fatalf("released stop: %+v %v", got, err)
	}
	if have, err := f.rc.Head(f.ctx, rel.Dest); err != nil || have.String() != got.Output {
		t.Fatalf("released train at %s: %v %v, want %s", rel.Dest, have, err, got.Output)
	}
	ev, _ := f.st.DB.Events(rel.Key, 100)
	found := false
	for _, e := range ev {
		found = found || (e.State == station.Done && e.By == who)
	}
	if !found {
		t.Fatalf("release not recorded with who: %+v", ev)
	}

	if code, _ := c.act(fl.Key, "retry", ""); code != http.StatusSeeOther {
		t.Fatalf("retry: %d", code)
	}
	if e := f.lastEvent(fl.Key); e.State != station.Retry || e.By != who {
		t.Fatalf("retry recorded as %+v", e)
	}

	// Wrong state, unknown stop and unknown action are clear errors.
	if code, body := c.act(a.Key, "accept", ""); code != http.StatusConflict || !strings.Contains(body, "not held") {
		t.Fatalf("accept twice: %d\n%s", code, body)
	}
	if code, _ := c.act("no-such-train", "accept", ""); code != http.StatusNotFound {
		t.Fatalf("accept of nothing: %d", code)
	}
	if code, _ := c.act(a.Key, "launch", ""); code != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", code)
	}
	if code, _, _ := c.get("/stop?name=nothing"); code != http.StatusNotFound {
		t.Fatalf("unknown stop page: %d", code)
	}
}

const (
	evil    = `<script>alert("x")</script><img src=x onerror=alert(1)>`
	badName = `<img src=x onerror=alert(1)>.txt`
)

// TestOutputIsEscaped: results, logs and reasons a train or a person wrote
// reach the page as text, never as markup.
func TestOutputIsEscaped(t *testing.T) {
	f := newFixture(t)
	rv := f.review("t-evil", map[string]string{
		"notes.txt":        "first line\n" + evil + "\n",
		"table.csv":        "name,value\n\"" + strings.ReplaceAll(evil, `"`, `""`) + "\",1\n",
		badName:            "a file with a bad name",
		"sub/data.bin":     "\x00\x01\x02binary",
		"sub/deeper/x.txt": "x",
	})
	done := f.stop("t-log", station.Done, f.withLog("stdout line\n"+evil+"\n\x1b[31mred\x1b[0m\n"))
	rej := f.stop("t-rej", station.Rejected, func(s *station.Stop) { s.Reason = evil; s.By = evil; s.Creator = evil })
	c := f.login()
	pages := map[string]string{
		"results":  "/stop/results?name=" + url.QueryEscape(rv.Key),
		"text":     "/stop/results?name=" + url.QueryEscape(rv.Key) + "&file=notes.txt",
		"csv":      "/stop/results?name=" + url.QueryEscape(rv.Key) + "&file=table.csv",
		"bad name": "/stop/results?name=" + url.QueryEscape(rv.Key) + "&file=" + url.QueryEscape(badName),
		"log":      "/stop/log?name=" + url.QueryEscape(done.Key),
		"stop":     "/stop?name=" + url.QueryEscape(rej.Key),
		"history":  "/history",
		"queue":    "/",
	}
	for name, p := range pages {
		code, _, body := c.get(p)
		if code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", name, code, body)
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Fatalf("%s page carries the train's markup:\n%s", name, body)
		}
		want := "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
		if name == "results" || name == "bad name" {
			want = "&lt;img src=x onerror=alert(1)&gt;.txt"
		}
		if name != "queue" && !strings.Contains(body, want) {
			t.Fatalf("%s page does not show the text escaped:\n%s", name, body)
		}
	}
	_, _, body := c.get(pages["csv"])
	if !strings.Contains(body, `<table class="csv">`) || !strings.Contains(body, "<td>name</td><td>value</td>") {
		t.Fatalf("CSV not shown as a table:\n%s", body)
	}
	_, _, body = c.get("/stop/results?name=" + url.QueryEscape(rv.Key) + "&file=sub/data.bin")
	if !strings.Contains(body, "Not text: not shown") || strings.Contains(body, "binary") && strings.Contains(body, "\x01") {
		t.Fatalf("binary preview:\n%s", body)
	}
	_, _, body = c.get(pages["results"])
	for _, want := range []string{`<span class="name">sub/</span> <span class="size">10 B</span>`, "deeper/", "x.txt", "notes.txt", "1 B"} {
		if !strings.Contains(body, want) {
			t.Fatalf("results tree lacks %q:\n%s", want, body)
		}
	}
	_, _, body = c.get(pages["log"])
	if !strings.Contains(body, `\x1b[31mred`) {
		t.Fatalf("log control characters not escaped:\n%s", body)
	}
	// A path out of the results directory is refused, not shown.
	_, _, body = c.get("/stop/results?name=" + url.QueryEscape(rv.Key) + "&file=../../station.db")
	if !strings.Contains(body, `class="error"`) {
		t.Fatalf("escaping path:\n%s", body)
	}
}

func TestPagesShowTheStation(t *testing.T) {
	f := newFixture(t)
	arrived := time.Date(2026, 3, 4, 10, 20, 30, 0, time.UTC)
	held := f.stop("t-held", station.Held, func(s *station.Stop) { s.Arrived = arrived })
	f.stop("t-done", station.Done, func(s *station.Stop) { s.Seconds = 2.5 })
	f.stop("t-failed", station.Failed)
	c := f.login()
	_, _, body := c.get("/")
	for _, want := range []string{"t-held", "alice", "1 of 2", "hospital-a → hospital-b", "ethics-board",
		`<time datetime="2026-03-04T10:20:30Z" title="2026-03-04 10:20:30 UTC">2026-03-04 11:20:30 CET</time>`, "Decide: accept or reject", `data-version="`} {
		if !strings.Contains(body, want) {
			t.Fatalf("queue lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "t-done") {
		t.Fatal("a finished stop is in the queue")
	}
	_, _, body = c.get("/stop?name=" + url.QueryEscape(held.Key))
	for _, want := range []string{`value="accept"`, `<label for="reject-reason">`, `<textarea id="reject-reason" name="reason" rows="2" cols="60" required>`, held.Input, `aria-current="step"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("train page lacks %q:\n%s", want, body)
		}
	}
	_, _, body = c.get("/history?state=failed")
	if !strings.Contains(body, "t-failed") || strings.Contains(body, "t-done") || strings.Contains(body, "t-held") {
		t.Fatalf("history filtered by failed:\n%s", body)
	}
	_, _, body = c.get("/history?train=t-done")
	if !strings.Contains(body, "t-done") || strings.Contains(body, "t-failed") || !strings.Contains(body, "2.5s") {
		t.Fatalf("history filtered by train:\n%s", body)
	}
	if code, _, _ := c.get("/history?state=exploded"); code != http.StatusBadRequest {
		t.Fatalf("unknown state filter: %d", code)
	}
	_, _, body = c.get("/health")
	for _, want := range []string{"hospital-a", "v9.9.9-test", "/pht/stations/hospital-a", "Last poll</dt><dd><time", "Last error</dt><dd>none"} {
		if !strings.Contains(body, want) {
			t.Fatalf("health lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "v0.0.0-unused") {
		t.Fatal("Options.Version shown over the station's own")
	}
	// A station whose status has no version shows Options.Version.
	h, err := console.New(console.Options{Admin: f.st, TokenFile: f.tokf, Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	bare := httptest.NewServer(h)
	defer bare.Close()
	f2 := &fixture{t: t, ctx: f.ctx, st: f.st, rc: f.rc, srv: bare, token: f.token, tokf: f.tokf, loc: f.loc}
	_, _, body = f2.login().get("/health")
	if !strings.Contains(body, "v1.2.3") {
		t.Fatalf("health without a version:\n%s", body)
	}
}

func TestTrainPageShowsTheInspection(t *testing.T) {
	var asked *station.Stop
	f := newFixture(t, func(o *console.Options) {
		o.Inspect = func(_ context.Context, st *station.Stop) (*station.Inspection, error) {
			asked = st
			if st.Train == "t-broken" {
				return nil, fmt.Errorf("pull: %w", station.ErrNoStop)
			}
			return &station.Inspection{Verified: true, ID: st.Train, Creator: "alice", TrainDigest: st.Digest,
				Approval: station.InspectApproval{Digest: digest("approval"), Approvers: []string{"ethics-board"}, Label: "flu study <b>2026</b>", Expires: "2027-01-01T00:00:00Z"},
				Exec:     station.InspectExec{Entrypoint: []string{"/opt/pht_train/aggregate"}, WorkingDir: "/opt/pht_train"},
				Code: station.InspectCode{Files: 2, Dirs: 1, Bytes: 3000, Entries: []station.CodeEntry{
					{Path: "aggregate", Type: "file", Mode: "0755", Size: 2000}, {Path: "lib", Type: "dir", Mode: "0755"},
					{Path: "lib/query.sql", Type: "file", Mode: "0644", Size: 1000}}}}, nil
		}
	})
	held := f.stop("t-held", station.Held)
	broken := f.stop("t-broken", station.Held)
	done := f.stop("t-done", station.Done)
	c := f.login()
	_, _, body := c.get("/stop?name=" + url.QueryEscape(held.Key))
	for _, want := range []string{"Inspection (verified)", "flu study &lt;b&gt;2026&lt;/b&gt;", "/opt/pht_train/aggregate", "lib/", "query.sql", "1000 B", "2.9 KiB", "0755"} {
		if !strings.Contains(body, want) {
			t.Fatalf("inspected train page lacks %q:\n%s", want, body)
		}
	}
	if asked == nil || asked.Key != held.Key {
		t.Fatalf("Inspect asked for %+v", asked)
	}
	// The queue shows what the inspection found.
	_, _, body = c.get("/")
	if !strings.Contains(body, "“flu study &lt;b&gt;2026&lt;/b&gt;”") || !strings.Contains(body, "expires 2027-01-01T00:00:00Z") || !strings.Contains(body, "2.9 KiB<br><small>2 files") {
		t.Fatalf("queue after the inspection:\n%s", body)
	}
	// The same train is inspected once; another input is inspected again.
	asked = nil
	c.get("/stop?name=" + url.QueryEscape(held.Key))
	if asked != nil {
		t.Fatal("the same train was inspected twice")
	}
	held.Input = digest("another copy")
	if err := f.st.DB.Save(held, ""); err != nil {
		t.Fatal(err)
	}
	c.get("/stop?name=" + url.QueryEscape(held.Key))
	if asked == nil {
		t.Fatal("a new input was not inspected")
	}
	for range 2 { // a failure is not kept
		asked = nil
		_, _, body = c.get("/stop?name=" + url.QueryEscape(broken.Key))
		if asked == nil || !strings.Contains(body, "could not be inspected: pull: no such stop") || !strings.Contains(body, `value="accept"`) {
			t.Fatalf("train page with a failed inspection:\n%s", body)
		}
	}
	asked = nil
	c.get("/stop?name=" + url.QueryEscape(done.Key))
	if asked != nil {
		t.Fatal("a finished stop was inspected")
	}
}

// TestRotatedTokenEndsSessions: `station console-token --rotate` logs
// everyone out.
func TestRotatedTokenEndsSessions(t *testing.T) {
	f := newFixture(t)
	c := f.login()
	if _, err := console.Token(f.tokf, true); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := c.get("/"); code != http.StatusSeeOther {
		t.Fatalf("session after rotation: %d", code)
	}
	if code, _, _ := f.client().post("/login", url.Values{"token": {f.token}}); code != http.StatusUnauthorized {
		t.Fatalf("old token after rotation: %d", code)
	}
}

func TestLogout(t *testing.T) {
	f := newFixture(t)
	c := f.login()
	if code, h, _ := c.post("/logout", url.Values{"csrf": {c.csrf}}); code != http.StatusSeeOther || h.Get("Location") != "/login" {
		t.Fatalf("logout: %d", code)
	}
	if code, _, _ := c.get("/"); code != http.StatusSeeOther {
		t.Fatalf("after logout: %d", code)
	}
}

func TestSessionExpires(t *testing.T) {
	f := newFixture(t, func(o *console.Options) { o.SessionTTL = time.Second })
	c := f.client()
	code, h, _ := c.post("/login", url.Values{"token": {f.token}})
	ck := (&http.Response{Header: h}).Cookies()
	if code != http.StatusSeeOther || len(ck) != 1 || ck[0].MaxAge != 1 {
		t.Fatalf("login: %d %+v", code, ck)
	}
	// The browser drops the cookie after Max-Age; the server must not
	// take it after the TTL either, so it is sent by hand here.
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/health", nil)
		req.AddCookie(&http.Cookie{Name: ck[0].Name, Value: ck[0].Value})
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("fresh session: %d", code)
	}
	time.Sleep(1100 * time.Millisecond)
	if code := get(); code != http.StatusSeeOther {
		t.Fatalf("expired session: %d", code)
	}
}

// TestEventsWhenTheQueueChanges: /events sends the queue's fingerprint,
// the same as the page's, and a new one when a train arrives.
func TestEventsWhenTheQueueChanges(t *testing.T) {
	f := newFixture(t)
	c := f.login()
	_, _, page := c.get("/")
	m := regexp.MustCompile(`data-version="([0-9a-f]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("queue page has no version:\n%s", page)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/events", nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() string {
		t.Helper()
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				return v
			}
		}
		t.Fatalf("events ended: %v", sc.Err())
		return ""
	}
	if v := next(); v != m[1] {
		t.Fatalf("first event %q, page %q", v, m[1])
	}
	f.stop("t-new", station.Held)
	v := next()
	if v == m[1] {
		t.Fatal("no new fingerprint after a train arrived")
	}
	_, _, page = c.get("/")
	if !strings.Contains(page, `data-version="`+v+`"`) || !strings.Contains(page, "t-new") {
		t.Fatalf("page after the event does not match it (%s):\n%s", v, page)
	}
	// A rotated token ends the stream.
	if _, err := console.Token(f.tokf, true); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		if sc.Text() == "event: logout" {
			return
		}
	}
	t.Fatal("no logout event after rotation")
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	c := f.login()
	_, h, _ := c.get("/")
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if h.Get(k) != want {
			t.Fatalf("%s: %q", k, h.Get(k))
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}
}

func TestNewNeedsAdminAndToken(t *testing.T) {
	if _, err := console.New(console.Options{TokenFile: filepath.Join(t.TempDir(), "t")}); err == nil {
		t.Fatal("no Admin accepted")
	}
	if _, err := console.New(console.Options{Admin: &station.Station{}}); err == nil {
		t.Fatal("no token file accepted")
	}
	p := filepath.Join(t.TempDir(), "console.token")
	os.WriteFile(p, []byte("abcdefghijklmnopqrstuvwxyz\n"), 0o644)
	if _, err := console.New(console.Options{Admin: &station.Station{}, TokenFile: p}); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable token: %v", err)
	}
}

func TestTokenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "console.token")
	a, err := console.Token(p, false)
	if err != nil || len(a) != 43 {
		t.Fatalf("new token %q: %v", a, err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v", fi.Mode(), err)
	}
	if b, err := console.Token(p, false); err != nil || b != a {
		t.Fatalf("second read %q, %v", b, err)
	}
	c, err := console.Token(p, true)
	if err != nil || c == a || len(c) != 43 {
		t.Fatalf("rotated %q (was %q): %v", c, a, err)
	}
	if d, _ := console.Token(p, false); d != c {
		t.Fatal("rotation not kept")
	}
	os.WriteFile(p, []byte("short\n"), 0o600)
	if _, err := console.Token(p, false); err == nil {
		t.Fatal("a short token accepted")
	}
	os.Chmod(p, 0o640)
	if _, err := console.Token(p, false); err == nil {
		t.Fatal("a group-readable token accepted")
	}
}

func TestPreviewBounds(t *testing.T) {
	lines := strings.Repeat("line\n", 300)
	p := console.MakePreview(strings.NewReader(lines), false)
	if p.Lines != console.PreviewLines || !p.Truncated || p.Binary {
		t.Fatalf("300 lines: %d lines, truncated %v", p.Lines, p.Truncated)
	}
	p = console.MakePreview(strings.NewReader(strings.Repeat("line\n", 200)), false)
	if p.Lines != 200 || p.Truncated {
		t.Fatalf("200 lines: %d lines, truncated %v", p.Lines, p.Truncated)
	}
	p = console.MakePreview(strings.NewReader(strings.Repeat("é", 100<<10)), false)
	if len(p.Text) > console.PreviewBytes || len(p.Text) < console.PreviewBytes-4 || !p.Truncated || p.Binary {
		t.Fatalf("a long line: %d bytes, truncated %v, binary %v", len(p.Text), p.Truncated, p.Binary)
	}
	var csv strings.Builder
	for i := range 80 {
		fmt.Fprintf(&csv, "%d,\"a,b\",x\n", i)
	}
	p = console.MakePreview(strings.NewReader(csv.String()), true)
	if len(p.Rows) != console.PreviewCSVRows || !p.Truncated || p.Rows[3][1] != "a,b" {
		t.Fatalf("csv: %d rows, truncated %v", len(p.Rows), p.Truncated)
	}
	p = console.MakePreview(strings.NewReader("a,b\n1,2\n"), true)
	if len(p.Rows) != 2 || p.Truncated {
		t.Fatalf("small csv: %+v", p)
	}
	p = console.MakePreview(strings.NewReader("\xff\xfe binary"), false)
	if !p.Binary || p.Text != "" {
		t.Fatalf("binary: %+v", p)
	}
}
