package console_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/station/console"
)

// The browser tests drive a real headless Chromium through the console
// over HTTP, as an operator would. In these the trains do not really run:
// the test moves each stop through the states the station would (held →
// accepted → running → review) with DB.Save, so that every page and state
// can be shown, and Release pushes the kept sealed train to a real
// registry. TestBrowserRealStop (realstop_test.go) runs one real train
// with runc under serve from arrival to release.

type browser struct {
	t     *testing.T
	f     *fixture
	ctx   context.Context
	shots []string // directories screenshots are written to
}

func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.SkipUnlessCI(t, "no chromium installed (Debian: apt-get install chromium)")
	return ""
}

func newBrowser(t *testing.T, f *fixture, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	opts = append(opts, extra...)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses its sandbox as root
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	b := &browser{t: t, f: f, ctx: ctx, shots: []string{t.TempDir()}}
	if d := os.Getenv("TRAINYARD_CONSOLE_SCREENSHOTS"); d != "" {
		b.shots = append(b.shots, d)
	}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// do runs steps, each wait bounded so a missing element fails the test
// with its step instead of the overall timeout.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		body, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("body")))
		b.t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, body)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (b *browser) eval(js string) bool {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// shot saves a screenshot of the whole page as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	for _, d := range b.shots {
		if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// clickLive clicks the link at xpath in the live queue and waits for then.
// The queue is re-rendered on every server-sent update, so a node chromedp
// found may be replaced before its click lands ("Could not find node with
// given id"); the page finds and clicks the link in one step instead.
func (b *browser) clickLive(what, xpath string, then chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.do(what+" (the link is shown)", chromedp.WaitVisible(chromedp.Search(xpath)))
	js := "(() => { const a = document.evaluate(`" + xpath + "`, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue; if (!a) return false; a.click(); return true })()"
	if !b.eval(js) {
		b.t.Fatalf("%s: no %s", what, xpath)
	}
	b.do(what, then)
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.f.srv.URL+path))
}

func (b *browser) login() {
	b.t.Helper()
	b.open("/")
	b.do("login page", chromedp.WaitVisible(chromedp.CSS(`#token`)))
	if !strings.HasSuffix(b.location(), "/login?next=%2F") {
		b.t.Fatalf("no session: at %s", b.location())
	}
	b.shot("login")
	b.do("log in", chromedp.SendKeys(chromedp.CSS(`#token`), b.f.token),
		chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#live`)))
}

func (b *browser) location() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return loc
}

func (b *browser) wantEvent(key string, state station.State, reason string) {
	b.t.Helper()
	e := b.f.lastEvent(key)
	if e.State != state || e.By != "console:127.0.0.1" || e.Reason != reason {
		b.t.Fatalf("last event of %s: %+v; want %s by console:127.0.0.1 (%q)", key, e, state, reason)
	}
}

// TestBrowserHeldTrainToHistory: log in, see a held train arrive live,
// open it, accept it, watch it run, review its results, release them and
// find the stop in history with its logs.
func TestBrowserHeldTrainToHistory(t *testing.T) {
	// The serve wiring passes Station.Inspect; here the inspection is made
	// from the stop record, as a verified train would give it.
	f := newFixture(t, func(o *console.Options) { o.Inspect = inspection })
	f.stop("study-38", station.Rejected, func(s *station.Stop) {
		s.Reason, s.By = "the code is not the version the board approved", "console:10.0.4.17"
	})
	f.stop("study-39", station.Withheld, f.withLog("n=4\n"), func(s *station.Stop) {
		s.Reason, s.By, s.Seconds = "fewer than 10 patients: re-identifiable", "olga", 3.1
	})
	f.stop("study-41", station.Done, f.withLog("n=48\n"), func(s *station.Stop) {
		s.Seconds, s.Pushed = 12.3, s.Dest+"@"+digest("out")
		s.Arrived, s.Updated = time.Now().Add(-26*time.Hour), time.Now().Add(-25*time.Hour)
	})
	f.stop("study-40", station.Failed, f.withLog("panic: no column age\n"), func(s *station.Stop) {
		s.Seconds, s.ExitCode, s.Error = 0.8, 2, "the train exited with code 2"
	})
	b := newBrowser(t, f)
	b.login()
	b.do("empty queue", chromedp.WaitVisible(chromedp.CSS(`#live p.empty`)))
	b.eval(`window.__samePage = true`)

	// A train arrives while the page is open: the queue shows it without
	// a reload.
	held := f.stop("study-42", station.Held, f.withLog("reading patients.csv\n"+evil+"\nn=51 mean age 47.2\n"))
	b.do("held train appears live", chromedp.WaitVisible(chromedp.Search(`//section[@id="live"]//a[contains(., "study-42")]`)))
	if !b.eval(`window.__samePage === true`) || f.events.Load() == 0 {
		t.Fatal("the queue was reloaded, not updated live")
	}
	if q := b.text(`#live`); !strings.Contains(q, "held") || !strings.Contains(q, "alice") || !strings.Contains(q, "1 of 2") || !strings.Contains(q, "ethics-board") {
		t.Fatalf("queue row: %s", q)
	}
	b.shot("queue")

	b.clickLive("open the train", `//section[@id="live"]//a[contains(., "study-42")]`,
		chromedp.WaitVisible(chromedp.CSS(`button[value=accept]`)))
	if p := b.text(`main`); !strings.Contains(p, held.Input) || !strings.Contains(p, "hospital-a (this station)") ||
		!strings.Contains(p, "Inspection (verified)") || !strings.Contains(p, "query.sql") || !strings.Contains(p, "flu study 2026") {
		t.Fatalf("train page: %s", p)
	}
	b.shot("train")
	b.do("accept", chromedp.Click(chromedp.CSS(`button[value=accept]`)), chromedp.WaitVisible(chromedp.CSS(`p.done`)))
	if d := b.text(`p.done`); !strings.Contains(d, "Accepted") {
		t.Fatalf("after accept: %s", d)
	}
	b.wantEvent(held.Key, station.Accepted, "")

	// The station runs it (simulated): the queue follows live.
	b.open("/")
	b.eval(`window.__samePage = true`)
	run, _ := f.st.DB.Get(held.Key)
	run.State, run.Time = station.Running, time.Now().UTC()
	if err := f.st.DB.Save(run, ""); err != nil {
		t.Fatal(err)
	}
	b.do("running shows live", chromedp.WaitVisible(chromedp.Search(`//section[@id="live"]//span[contains(@class, "state-running")]`)))
	rv := f.review("study-42", map[string]string{
		"summary.csv":     "site,patients,mean_age\nhospital-a,51,47.2\n",
		"notes.txt":       "computed at hospital-a\n" + evil + "\n",
		"plots/age.svg":   "<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
		"plots/hist.json": `{"bins":[1,4,9,12,8,3]}`,
	})
	rvs, _ := f.st.DB.Get(rv.Key)
	rvs.Log, rvs.Seconds = run.Log, 4.2
	if err := f.st.DB.Save(rvs, ""); err != nil {
		t.Fatal(err)
	}
	b.do("review shows live", chromedp.WaitVisible(chromedp.Search(`//section[@id="live"]//a[contains(., "Review the results")]`)))
	if !b.eval(`window.__samePage === true`) {
		t.Fatal("the queue was reloaded, not updated live")
	}

	b.clickLive("open the review", `//section[@id="live"]//a[contains(., "Review the results")]`,
		chromedp.WaitVisible(chromedp.CSS(`button[value=release]`)))
	if tree := b.text(`ul.tree`); !strings.Contains(tree, "summary.csv") || !strings.Contains(tree, "plots/") || !strings.Contains(tree, "age.svg") {
		t.Fatalf("results tree: %s", tree)
	}
	b.do("preview the CSV", chromedp.Click(chromedp.Search(`//ul[@class="tree"]//a[text()="summary.csv"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.csv`)))
	if cell := b.text(`table.csv tr:nth-child(2) td:nth-child(3)`); cell != "47.2" {
		t.Fatalf("CSV cell %q", cell)
	}
	b.shot("results")
	b.do("preview the svg as text", chromedp.Click(chromedp.Search(`//ul[@class="tree"]//a[text()="age.svg"]`)),
		chromedp.WaitVisible(chromedp.CSS(`pre.preview`)))
	if pre := b.text(`pre.preview`); !strings.Contains(pre, "<script>alert(1)</script>") {
		t.Fatalf("svg preview is not its text: %q", pre)
	}
	if b.eval(`document.querySelectorAll("main script, main svg, main img").length > 0`) {
		t.Fatal("the results' markup became part of the page")
	}
	if _, err := f.rc.Head(f.ctx, rv.Dest); err == nil {
		t.Fatal("results left before release")
	}
	b.do("release", chromedp.Click(chromedp.CSS(`button[value=release]`)), chromedp.WaitVisible(chromedp.CSS(`p.done`)))
	if d := b.text(`p.done`); !strings.Contains(d, "Released") {
		t.Fatalf("after release: %s", d)
	}
	done, _ := f.st.DB.Get(rv.Key)
	if have, err := f.rc.Head(f.ctx, rv.Dest); err != nil || done.State != station.Done || have.String() != done.Output {
		t.Fatalf("released: %s %v, stop %+v", have, err, done)
	}
	b.wantEvent(rv.Key, station.Done, "")

	// History: the stop, then its logs.
	b.open("/history")
	b.do("history", chromedp.WaitVisible(chromedp.Search(`//td/a[text()="study-42"]`)))
	b.shot("history")
	// The filtered page is the one whose select says failed as served.
	b.do("filter failed", chromedp.SetValue(chromedp.CSS(`#state`), "failed"), chromedp.Click(chromedp.CSS(`form.filter button`)),
		chromedp.WaitReady(chromedp.CSS(`#state option[value="failed"][selected]`)),
		chromedp.WaitVisible(chromedp.Search(`//td/a[text()="study-40"]`)))
	if h := b.text(`table`); strings.Contains(h, "study-42") || !strings.Contains(h, "failed") {
		t.Fatalf("history filtered by failed: %s", h)
	}
	b.open("/history?train=study-42")
	b.do("logs of the stop", chromedp.Click(chromedp.Search(`//tr[td/a[text()="study-42"]]//a[text()="logs"]`)),
		chromedp.WaitVisible(chromedp.CSS(`pre.log`)))
	if l := b.text(`pre.log`); !strings.Contains(l, "n=51 mean age 47.2") || !strings.Contains(l, evil) {
		t.Fatalf("log page: %q", l)
	}
	if b.eval(`document.querySelectorAll("main script, main img").length > 0`) {
		t.Fatal("the train's output became part of the page")
	}
	b.shot("log")
	b.open("/stop?name=" + url.QueryEscape(rv.Key))
	b.do("audit trail", chromedp.WaitVisible(chromedp.CSS(`table`)))
	if a := b.text(`table`); strings.Count(a, "console:127.0.0.1") < 2 {
		t.Fatalf("audit trail: %s", a)
	}
	b.shot("stop-done")
	b.open("/health")
	b.do("health", chromedp.WaitVisible(chromedp.CSS(`dl.record`)))
	if h := b.text(`dl.record`); !strings.Contains(h, "v9.9.9-test") || !strings.Contains(h, "hospital-a") {
		t.Fatalf("health: %s", h)
	}
	b.shot("health")
}

// inspection is what Station.Inspect reports for a verified train like st.
func inspection(_ context.Context, st *station.Stop) (*station.Inspection, error) {
	created := st.Arrived.Add(-2 * time.Hour)
	return &station.Inspection{Verified: true, Station: st.Station, Source: st.Source, Protocol: "trainyard/v1", ID: st.Train,
		TrainDigest: st.Digest, Created: created, Creator: st.Creator, Index: st.Index, Next: st.Next, NextKind: "station",
		Approval: station.InspectApproval{Digest: digest("approval " + st.Train), Approvers: st.Approvers, Label: "flu study 2026",
			Expires: "2027-06-30T00:00:00Z", Comments: []string{"ethics-board: approved in session 2026-11"}},
		Exec: station.InspectExec{Entrypoint: []string{"/opt/pht_train/aggregate"}, Cmd: []string{}, Env: []string{}, WorkingDir: "/opt/pht_train"},
		Base: "scratch",
		Code: station.InspectCode{Manifest: digest("code " + st.Train), Files: 3, Dirs: 1, Bytes: 2140411, Entries: []station.CodeEntry{
			{Path: "aggregate", Type: "file", Mode: "0755", Size: 2134016, SHA256: digest("aggregate")[7:]},
			{Path: "sql", Type: "dir", Mode: "0755"},
			{Path: "sql/cohort.sql", Type: "file", Mode: "0644", Size: 4211, SHA256: digest("cohort")[7:]},
			{Path: "sql/query.sql", Type: "file", Mode: "0644", Size: 2184, SHA256: digest("query")[7:]}},
			Sealed: station.InspectBlob{Digest: digest("sealed code"), Size: 2140672}},
		Image: station.InspectImage{Digest: st.Input, Size: 2143219, Layers: 3, BaseLayers: 0}}, nil
}

// TestBrowserRejectAndWithhold: a reason is required (the browser will
// not send the form without one), and both decisions are recorded with it.
func TestBrowserRejectAndWithhold(t *testing.T) {
	f := newFixture(t)
	held := f.stop("study-43", station.Held)
	rv := f.review("study-44", map[string]string{"counts.csv": "site,patients\nhospital-a,3\n"})
	b := newBrowser(t, f)
	b.login()
	b.open("/stop?name=" + url.QueryEscape(held.Key))
	b.do("train page", chromedp.WaitVisible(chromedp.CSS(`button[value=reject]`)), chromedp.Click(chromedp.CSS(`button[value=reject]`)))
	time.Sleep(300 * time.Millisecond)
	if f.state(held.Key) != station.Held || !b.eval(`document.querySelector("#reject-reason").matches(":invalid")`) {
		t.Fatal("a reject without a reason was sent")
	}
	b.do("reject", chromedp.SendKeys(chromedp.CSS(`#reject-reason`), "the code is not the version the board approved"),
		chromedp.Click(chromedp.CSS(`button[value=reject]`)), chromedp.WaitVisible(chromedp.CSS(`p.done`)))
	if p := b.text(`main`); !strings.Contains(p, "Rejected") || !strings.Contains(p, "not the version the board approved") {
		t.Fatalf("after reject: %s", p)
	}
	b.wantEvent(held.Key, station.Rejected, "the code is not the version the board approved")
	b.shot("rejected")

	b.open("/stop/results?name=" + url.QueryEscape(rv.Key))
	b.do("withhold without a reason", chromedp.WaitVisible(chromedp.CSS(`button[value=withhold]`)), chromedp.Click(chromedp.CSS(`button[value=withhold]`)))
	time.Sleep(300 * time.Millisecond)
	if f.state(rv.Key) != station.Review {
		t.Fatal("a withhold without a reason was sent")
	}
	b.do("withhold", chromedp.SendKeys(chromedp.CSS(`#withhold-reason`), "fewer than 10 patients: re-identifiable"),
		chromedp.Click(chromedp.CSS(`button[value=withhold]`)), chromedp.WaitVisible(chromedp.CSS(`p.done`)))
	if p := b.text(`p.done`); !strings.Contains(p, "Withheld") {
		t.Fatalf("after withhold: %s", p)
	}
	b.wantEvent(rv.Key, station.Withheld, "fewer than 10 patients: re-identifiable")
	if _, err := f.rc.Head(f.ctx, rv.Dest); err == nil {
		t.Fatal("withheld results left the station")
	}
}

// TestBrowserWithoutJavaScript: with scripts off every page still reads
// and every decision still works, as plain forms.
func TestBrowserWithoutJavaScript(t *testing.T) {
	f := newFixture(t)
	held := f.stop("study-46", station.Held)
	rv := f.review("study-47", map[string]string{"counts.csv": "site,patients\nhospital-a,30\n"})
	b := newBrowser(t, f, chromedp.Flag("blink-settings", "scriptEnabled=false"))
	b.login()
	if q := b.text(`#live`); !strings.Contains(q, "study-46") || !strings.Contains(q, "study-47") {
		t.Fatalf("queue without JavaScript: %s", q)
	}
	b.do("accept", chromedp.Click(chromedp.Search(`//section[@id="live"]//a[contains(., "study-46")]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value=accept]`)), chromedp.Click(chromedp.CSS(`button[value=accept]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.done`)))
	b.wantEvent(held.Key, station.Accepted, "")
	b.open("/stop/results?name=" + url.QueryEscape(rv.Key))
	b.do("preview and release", chromedp.Click(chromedp.Search(`//ul[@class="tree"]//a[text()="counts.csv"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.csv`)), chromedp.Click(chromedp.CSS(`button[value=release]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.done`)))
	b.wantEvent(rv.Key, station.Done, "")
	b.open("/history")
	b.do("history", chromedp.WaitVisible(chromedp.Search(`//td/a[text()="study-47"]`)))
	if n := f.events.Load(); n != 0 {
		t.Fatalf("scripts ran: %d live-update requests", n)
	}
}

// TestBrowserRefusesForgedForms: a form with a wrong CSRF token is refused
// (403) and changes nothing; a browser without a session sees the login.
func TestBrowserRefusesForgedForms(t *testing.T) {
	f := newFixture(t)
	held := f.stop("study-45", station.Held)
	b := newBrowser(t, f)
	b.login()
	b.open("/stop?name=" + url.QueryEscape(held.Key))
	b.do("forge the form", chromedp.WaitVisible(chromedp.CSS(`button[value=accept]`)))
	b.eval(`document.querySelectorAll("input[name=csrf]").forEach(function (e) { e.value = "forged" }); true`)
	b.do("send it", chromedp.Click(chromedp.CSS(`button[value=accept]`)), chromedp.WaitVisible(chromedp.CSS(`p.error`)))
	if e := b.text(`p.error`); !strings.Contains(e, "CSRF") {
		t.Fatalf("forged form: %s", e)
	}
	if f.state(held.Key) != station.Held {
		t.Fatal("a forged form accepted the train")
	}
	b.open("/")
	b.do("log out", chromedp.WaitVisible(chromedp.CSS(`#live`)), chromedp.Click(chromedp.CSS(`form.logout button`)), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	b.open("/history")
	b.do("history without a session", chromedp.WaitVisible(chromedp.CSS(`#token`)))
	if p := b.text(`body`); strings.Contains(p, "study-45") {
		t.Fatal("history shown without a session")
	}
}
