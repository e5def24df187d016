// Package console is a station's web console: one server-rendered site
// where an operator sees the queue, decides on held trains (Accept,
// Reject), reviews results before they leave (Release, Withhold), reads the
// history with each stop's logs and checks the station's health.
//
// Every page is plain HTML from html/template with embedded assets and
// works without JavaScript; a small script adds live refresh of the queue
// from server-sent events (/events). Every action is a call on the
// station's Admin interface, recorded with who made it ("console:" and the
// operator's address). Nothing is served before a login with the token
// kept in the station's state directory (see Token): the session is a
// random id in an HttpOnly, SameSite=Strict cookie (Secure over TLS) and
// every form carries the session's CSRF token.
package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/trainyard/trainyard/station"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Options configure a console.
type Options struct {
	// Admin is the station the console acts on (required).
	Admin station.Admin
	// Inspect, if set, fully inspects the train of a held or accepted stop
	// for its Train page (Station.Inspect on the stop's Source); nil shows
	// what the stop record has.
	Inspect func(ctx context.Context, st *station.Stop) (*station.Inspection, error)
	// TokenFile holds the login token (required); New creates it (0600)
	// when missing. It is read again at every request, so a rotated token
	// ends every session made with the old one.
	TokenFile string
	// Location is the time zone pages show times in (UTC on hover);
	// default time.Local.
	Location *time.Location
	// Version is shown on the Health page when the Admin's status has none.
	Version string
	// SessionTTL is how long a login lasts; default 12 hours.
	SessionTTL time.Duration
	// Poll is how often /events looks at the queue; default 1 second.
	Poll time.Duration
}

// Console is the console's http.Handler.
type Console struct {
	opt   Options
	mux   *http.ServeMux
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]*session

	// inspected caches inspections by stop key and input digest: an
	// inspection pulls and decrypts the train, the same bytes every time.
	imu       sync.Mutex
	inspected map[string]inspected
}

type inspected struct {
	insp *station.Inspection
	at   time.Time
}

const (
	inspectTTL  = 10 * time.Minute
	inspectKeep = 100
)

// inspect returns the (cached) inspection of st's train.
func (c *Console) inspect(ctx context.Context, st *station.Stop) (*station.Inspection, error) {
	k := st.Key + "@" + st.Input
	c.imu.Lock()
	e, ok := c.inspected[k]
	c.imu.Unlock()
	if ok && time.Since(e.at) < inspectTTL {
		return e.insp, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	insp, err := c.opt.Inspect(ctx, st)
	if err != nil || insp == nil {
		return insp, err // failures are not kept: the next view tries again
	}
	c.imu.Lock()
	defer c.imu.Unlock()
	now := time.Now()
	for k, e := range c.inspected {
		if now.Sub(e.at) >= inspectTTL || len(c.inspected) >= inspectKeep {
			delete(c.inspected, k)
		}
	}
	c.inspected[k] = inspected{insp: insp, at: now}
	return insp, nil
}

type session struct {
	csrf     string
	tokenSum [32]byte // of the token logged in with
	expires  time.Time
}

const (
	cookieName  = "trainyard_console"
	maxSessions = 1000
	maxForm     = 64 << 10
	// Caps on what one page shows.
	maxLog         = 1 << 20
	maxTreeEntries = 5000
	historyLimit   = 200
)

// New returns the console for o; it creates the token file when missing.
func New(o Options) (*Console, error) {
	if o.Admin == nil {
		return nil, errors.New("console: Options.Admin is required")
	}
	if o.TokenFile == "" {
		return nil, errors.New("console: Options.TokenFile is required")
	}
	if _, err := Token(o.TokenFile, false); err != nil {
		return nil, err
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	c := &Console{opt: o, sessions: map[string]*session{}, pages: map[string]*template.Template{}, inspected: map[string]inspected{}}
	funcs := template.FuncMap{
		"ts":    c.ts,
		"size":  humanSize,
		"dur":   seconds,
		"join":  strings.Join,
		"plus1": func(i int) int { return i + 1 },
	}
	for _, p := range []string{"login", "queue", "stop", "results", "history", "log", "health", "error"} {
		t, err := template.New(p).Funcs(funcs).ParseFS(assets, "templates/base.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", p, err)
		}
		c.pages[p] = t
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("POST /login", c.login)
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("POST /logout", c.auth(c.logout))
	m.HandleFunc("GET /{$}", c.auth(c.queuePage))
	m.HandleFunc("GET /events", c.auth(c.events))
	m.HandleFunc("GET /stop", c.auth(c.stopPage))
	m.HandleFunc("GET /stop/results", c.auth(c.resultsPage))
	m.HandleFunc("GET /stop/log", c.auth(c.logPage))
	m.HandleFunc("POST /stop/action", c.auth(c.action))
	m.HandleFunc("GET /history", c.auth(c.historyPage))
	m.HandleFunc("GET /health", c.auth(c.healthPage))
	m.HandleFunc("/", c.auth(func(w http.ResponseWriter, r *http.Request, s *session) {
		c.fail(w, r, s, http.StatusNotFound, "no such page: "+r.URL.Path)
	}))
	c.mux = m
	return c, nil
}

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Pages carry decisions about patients' data: never framed, cached or
	// sniffed, and only the console's own scripts and styles run.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	}
	c.mux.ServeHTTP(w, r)
}

// by names the operator for the station's history.
func by(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || host == "" {
		return "console:operator"
	}
	return "console:" + host
}

func randomID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// session returns the request's live session, or nil.
func (c *Console) session(r *http.Request) (*session, error) {
	ck, err := r.Cookie(cookieName)
	if err != nil || ck.Value == "" {
		return nil, nil
	}
	tok, err := readToken(c.opt.TokenFile)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(tok))
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil, nil
	}
	if time.Now().After(s.expires) || s.tokenSum != sum {
		delete(c.sessions, ck.Value)
		return nil, nil
	}
	return s, nil
}

// auth lets only logged-in requests through, and POSTs only with the
// session's CSRF token.
func (c *Console) auth(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if s == nil {
			switch {
			case r.Method == http.MethodGet && r.URL.Path != "/events":
				http.Redirect(w, r, "/login?next="+urlQuery(r.URL.RequestURI()), http.StatusSeeOther)
			case r.Method == http.MethodGet:
				http.Error(w, "log in first", http.StatusUnauthorized)
			default:
				http.Error(w, "forbidden: no session; log in first", http.StatusForbidden)
			}
			return
		}
		if r.Method == http.MethodPost {
			got := r.PostFormValue("csrf")
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
				c.fail(w, r, s, http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page and try again")
				return
			}
		}
		h(w, r, s)
	}
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	CSRF    string
	Station string
	Data    any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, code int, name, title string, data any) {
	p := page{Title: title, Nav: name, Data: data}
	if s != nil {
		p.CSRF = s.csrf
		if st, err := c.opt.Admin.Status(r.Context()); err == nil {
			p.Station = st.Station
		}
	}
	var b strings.Builder
	if err := c.pages[name].ExecuteTemplate(&b, "base", p); err != nil {
		http.Error(w, "console: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, b.String())
}

type errView struct {
	Code    int
	Message string
	Back    string
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, code int, msg string) {
	back := ""
	if n := r.FormValue("name"); n != "" {
		back = "/stop?name=" + urlQuery(n)
	}
	c.render(w, r, s, code, "error", http.StatusText(code), errView{Code: code, Message: msg, Back: back})
}

// failErr maps an Admin error to a status code.
func (c *Console) failErr(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, station.ErrNoStop), errors.Is(err, fs.ErrNotExist):
		code = http.StatusNotFound
	case errors.Is(err, station.ErrState):
		code = http.StatusConflict
	case strings.Contains(err.Error(), "a reason is required"):
		code = http.StatusBadRequest
	}
	c.fail(w, r, s, code, err.Error())
}

type loginView struct {
	Next  string
	Error string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, nil, http.StatusOK, "login", "Log in", loginView{Next: localNext(r.FormValue("next"))})
}

// localNext keeps a post-login redirect on this site.
func localNext(n string) string {
	if !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.HasPrefix(n, "/\\") || strings.HasPrefix(n, "/login") {
		return "/"
	}
	return n
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	next := localNext(r.PostFormValue("next"))
	tok, err := readToken(c.opt.TokenFile)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	got := strings.TrimSpace(r.PostFormValue("token"))
	// Compare digests so neither the content nor the length leaks by time.
	gs, ts := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(tok))
	if got == "" || subtle.ConstantTimeCompare(gs[:], ts[:]) != 1 {
		c.render(w, r, nil, http.StatusUnauthorized, "login", "Log in", loginView{Next: next, Error: "That token is wrong. `trainyard station console-token` prints the right one."})
		return
	}
	id := randomID()
	now := time.Now()
	c.mu.Lock()
	for k, s := range c.sessions {
		if now.After(s.expires) {
			delete(c.sessions, k)
		}
	}
	if len(c.sessions) >= maxSessions {
		// Drop the session that ends first: an attacker with the token
		// cannot grow the map, an operator loses at worst an old login.
		var oldest string
		for k, s := range c.sessions {
			if oldest == "" || s.expires.Before(c.sessions[oldest].expires) {
				oldest = k
			}
		}
		delete(c.sessions, oldest)
	}
	c.sessions[id] = &session{csrf: randomID(), tokenSum: ts, expires: now.Add(c.opt.SessionTTL)}
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(c.opt.SessionTTL / time.Second)})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, _ *session) {
	if ck, err := r.Cookie(cookieName); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// Queue.

// queueStates are the stops waiting for a decision or a run.
var queueStates = []station.State{station.Held, station.Accepted, station.Running, station.Review, station.Retry}

type queueView struct {
	Stops []station.Stop
	// Insp has the inspections already made (Train pages), by stop key:
	// the queue shows their approval terms and code size.
	Insp     map[string]*station.Inspection
	Running  *station.Stop
	Retrying []station.Retrying
	Hold     bool
	Review   bool
	// Version fingerprints what the page shows: /events sends it, the
	// script refreshes the page when it differs.
	Version string
}

func (c *Console) queue(ctx context.Context) (*queueView, error) {
	st, err := c.opt.Admin.Status(ctx)
	if err != nil {
		return nil, err
	}
	stops, err := c.opt.Admin.History(ctx, station.Filter{States: queueStates, Limit: historyLimit})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(stops, func(i, j int) bool { return stops[i].Arrived.Before(stops[j].Arrived) })
	q := &queueView{Stops: stops, Running: st.Running, Retrying: st.Retrying, Hold: st.Hold, Review: st.ReviewResults, Insp: map[string]*station.Inspection{}}
	c.imu.Lock()
	for _, s := range stops {
		if e, ok := c.inspected[s.Key+"@"+s.Input]; ok {
			q.Insp[s.Key] = e.insp
		}
	}
	c.imu.Unlock()
	type fp struct {
		K, S string
		U    time.Time
	}
	var f []any
	for _, s := range stops {
		f = append(f, fp{s.Key, string(s.State), s.Updated})
	}
	if st.Running != nil {
		f = append(f, fp{"running:" + st.Running.Key, string(st.Running.State), st.Running.Updated})
	}
	f = append(f, st.Retrying, st.Hold, st.ReviewResults)
	b, _ := json.Marshal(f)
	sum := sha256.Sum256(b)
	q.Version = hex.EncodeToString(sum[:12])
	return q, nil
}

func (c *Console) queuePage(w http.ResponseWriter, r *http.Request, s *session) {
	q, err := c.queue(r.Context())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "queue", "Queue", q)
}

// events sends the queue's fingerprint whenever it changes (and a comment
// every 15 s so proxies keep the stream open); "logout" when the session
// ends.
func (c *Console) events(w http.ResponseWriter, r *http.Request, _ *session) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a long-lived stream
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(c.opt.Poll)
	defer tick.Stop()
	last, quiet := "", time.Now()
	for {
		if s, _ := c.session(r); s == nil {
			fmt.Fprint(w, "event: logout\ndata: -\n\n")
			rc.Flush()
			return
		}
		v := "error"
		if q, err := c.queue(r.Context()); err == nil {
			v = q.Version
		}
		msg := ""
		switch {
		case v != last:
			msg = "event: queue\ndata: " + v + "\n\n"
			last = v
		case time.Since(quiet) > 15*time.Second:
			msg = ": keepalive\n\n"
		}
		if msg != "" {
			quiet = time.Now()
			if _, err := io.WriteString(w, msg); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// Train (one stop).

type routeItem struct {
	Pos     int
	Station string
	Here    bool
}

type stopView struct {
	Stop      *station.Stop
	Events    []station.Event
	Route     []routeItem
	Insp      *station.Inspection
	InspErr   string
	Code      []*node
	CodeMore  bool
	Done      string
	CanAccept bool
	CanReject bool
	CanRetry  bool
	InReview  bool
	HasLog    bool
}

// doneText is the notice shown after an action (a fixed set: the query
// parameter never reaches the page as text).
var doneText = map[string]string{
	"accept":   "Accepted: the train runs on the next poll.",
	"reject":   "Rejected: the creator is told the reason.",
	"release":  "Released: the sealed train was pushed to its next hop.",
	"withhold": "Withheld: the results were deleted and the creator is told the reason.",
	"retry":    "Retry: the stop runs again on the next poll.",
}

func (c *Console) stopPage(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.FormValue("name")
	st, ev, err := c.opt.Admin.Stop(r.Context(), name)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	v := &stopView{Stop: st, Events: ev, Done: doneText[r.FormValue("done")], HasLog: st.Log != "",
		CanAccept: st.State == station.Held, CanReject: st.State == station.Held || st.State == station.Accepted,
		CanRetry: st.State == station.Failed || st.State == station.Interrupted, InReview: st.State == station.Review}
	for i, id := range st.Route {
		v.Route = append(v.Route, routeItem{Pos: i + 1, Station: id, Here: i == st.Index})
	}
	if c.opt.Inspect != nil && (st.State == station.Held || st.State == station.Accepted) {
		insp, err := c.inspect(r.Context(), st)
		if err != nil {
			v.InspErr = err.Error()
		} else if insp != nil {
			v.Insp = insp
			files := make([]entry, 0, len(insp.Code.Entries))
			for _, e := range insp.Code.Entries {
				files = append(files, entry{Path: e.Path, Dir: e.Type == "dir", Size: e.Size, Note: e.Mode})
			}
			v.Code, v.CodeMore = buildTree(files)
			v.CodeMore = v.CodeMore || insp.Code.Truncated
		}
	}
	c.render(w, r, s, http.StatusOK, "stop", "Train "+st.Train, v)
}

func (c *Console) action(w http.ResponseWriter, r *http.Request, s *session) {
	name, act, reason := r.PostFormValue("name"), r.PostFormValue("action"), strings.TrimSpace(r.PostFormValue("reason"))
	ctx, who := r.Context(), by(r)
	var err error
	switch act {
	case "accept":
		_, err = c.opt.Admin.Accept(ctx, name, who)
	case "reject":
		_, err = c.opt.Admin.Reject(ctx, name, reason, who)
	case "release":
		_, err = c.opt.Admin.Release(ctx, name, who)
	case "withhold":
		_, err = c.opt.Admin.Withhold(ctx, name, reason, who)
	case "retry":
		_, err = c.opt.Admin.Retry(ctx, name, who)
	default:
		c.fail(w, r, s, http.StatusBadRequest, fmt.Sprintf("unknown action %q", act))
		return
	}
	if err != nil {
		c.failErr(w, r, s, fmt.Errorf("%s: %w", act, err))
		return
	}
	http.Redirect(w, r, "/stop?name="+urlQuery(name)+"&done="+act, http.StatusSeeOther)
}

// Results review.

type resultsView struct {
	Stop       *station.Stop
	Tree       []*node
	More       bool
	Files      int
	Bytes      int64
	File       string
	Preview    *Preview
	PreviewErr string
}

func (c *Console) resultsPage(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.FormValue("name")
	st, _, err := c.opt.Admin.Stop(r.Context(), name)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	files, err := c.opt.Admin.Results(r.Context(), st.Key)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	v := &resultsView{Stop: st}
	ents := make([]entry, 0, len(files))
	for _, f := range files {
		if !f.Dir {
			v.Files++
			v.Bytes += f.Size
		}
		e := entry{Path: f.Path, Dir: f.Dir, Size: f.Size}
		if !f.Dir && f.Path != "…" {
			e.Href = "/stop/results?name=" + urlQuery(st.Key) + "&file=" + urlQuery(f.Path) + "#preview"
		}
		ents = append(ents, e)
	}
	v.Tree, v.More = buildTree(ents)
	if p := r.FormValue("file"); p != "" {
		v.File = p
		rc, err := c.opt.Admin.OpenResult(r.Context(), st.Key, p)
		if err != nil {
			v.PreviewErr = err.Error()
		} else {
			pv := MakePreview(rc, strings.EqualFold(path.Ext(p), ".csv"))
			rc.Close()
			v.Preview = &pv
		}
	}
	c.render(w, r, s, http.StatusOK, "results", "Results of "+st.Train, v)
}

// History and logs.

type historyView struct {
	Stops  []station.Stop
	States []station.State
	State  string
	Train  string
}

// allStates are the states History filters on.
var allStates = []station.State{station.Held, station.Accepted, station.Running, station.Review, station.Retry,
	station.Interrupted, station.Done, station.Failed, station.Refused, station.Rejected, station.Withheld}

func (c *Console) historyPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := &historyView{States: allStates, State: r.FormValue("state"), Train: strings.TrimSpace(r.FormValue("train"))}
	f := station.Filter{Train: v.Train, Limit: historyLimit}
	if v.State != "" {
		ok := false
		for _, st := range allStates {
			ok = ok || string(st) == v.State
		}
		if !ok {
			c.fail(w, r, s, http.StatusBadRequest, fmt.Sprintf("unknown state %q", v.State))
			return
		}
		f.States = []station.State{station.State(v.State)}
	}
	stops, err := c.opt.Admin.History(r.Context(), f)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	v.Stops = stops
	c.render(w, r, s, http.StatusOK, "history", "History", v)
}

type logView struct {
	Stop      *station.Stop
	Text      string
	Truncated bool
}

// capWriter keeps the first n bytes and notes that more came.
type capWriter struct {
	b    strings.Builder
	n    int
	more bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	if left := w.n - w.b.Len(); left < len(p) {
		w.b.Write(p[:max(left, 0)])
		w.more = true
		return len(p), nil
	}
	w.b.Write(p)
	return len(p), nil
}

func (c *Console) logPage(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.FormValue("name")
	st, _, err := c.opt.Admin.Stop(r.Context(), name)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	cw := &capWriter{n: maxLog}
	if err := c.opt.Admin.Log(r.Context(), st.Key, cw); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "log", "Log of "+st.Train, logView{Stop: st, Text: cw.b.String(), Truncated: cw.more})
}

// Health.

type healthView struct {
	S         *station.Status
	Version   string
	Uptime    string
	TrustExp  time.Time
	TrustRole string
	TrustLeft string
	TrustErr  string
	States    []stateCount
}

type stateCount struct {
	State station.State
	N     int
}

func (c *Console) healthPage(w http.ResponseWriter, r *http.Request, s *session) {
	st, err := c.opt.Admin.Status(r.Context())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	v := &healthView{S: st, Version: st.Version, Uptime: (time.Duration(st.UptimeSeconds) * time.Second).String()}
	if v.Version == "" {
		v.Version = c.opt.Version
	}
	if st.Trust != nil {
		if e, ok := st.Trust["expires"].(string); ok {
			v.TrustExp, _ = time.Parse(time.RFC3339, e)
		}
		v.TrustRole, _ = st.Trust["first_expiring_role"].(string)
		v.TrustErr, _ = st.Trust["error"].(string)
		if !v.TrustExp.IsZero() {
			v.TrustLeft = time.Until(v.TrustExp).Round(time.Minute).String()
		}
	}
	for _, k := range allStates {
		if n := st.Counts[k]; n > 0 {
			v.States = append(v.States, stateCount{k, n})
		}
	}
	c.render(w, r, s, http.StatusOK, "health", "Health", v)
}

// Helpers for the templates.

type timeView struct {
	Zero  bool
	ISO   string
	UTC   string
	Local string
}

// ts shows t in the console's time zone, with UTC for the title.
func (c *Console) ts(t time.Time) timeView {
	if t.IsZero() {
		return timeView{Zero: true}
	}
	return timeView{ISO: t.UTC().Format(time.RFC3339), UTC: t.UTC().Format("2006-01-02 15:04:05 UTC"),
		Local: t.In(c.opt.Location).Format("2006-01-02 15:04:05 MST")}
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func seconds(s float64) string {
	if s <= 0 {
		return "—"
	}
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}
