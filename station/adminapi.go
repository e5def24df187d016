package station

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The admin API is HTTP/JSON on a unix socket in the station's state
// directory (0700 directory, 0600 socket): only the station's own user (and
// root) can reach it, and the kernel names the peer (SO_PEERCRED), so every
// decision is recorded with the operator's user name, not a claim.
//
//	GET  /v1/status                 Status
//	GET  /v1/stops?state=S&train=T&limit=N   History
//	GET  /v1/stops/{name}           {"stop": Stop, "events": [Event]}
//	POST /v1/stops/{name}/{action}  accept, reject, release, withhold, retry; body {"reason": "..."}
//	GET  /v1/stops/{name}/results   [ResultFile]
//	GET  /v1/stops/{name}/results/{path...}  the file
//	GET  /v1/stops/{name}/log       the train output, escaped
//	POST /v1/run                    {"ref": "..."}: one stop, as `station run`
//	GET  /v1/backup                 a consistent copy of station.db
//
// Errors are {"error": "...", "code": "not_found"|"state"|"bad_request"|"refused"|"failed"|"internal"}.

// backuper copies the station's database (`station backup`).
type backuper interface {
	Backup(ctx context.Context, w io.Writer) error
}

// Runner of one stop through a running serve (`station run` while serve
// holds the database).
type stopRunner interface {
	Run(ctx context.Context, ref string) (*Stop, error)
}

// serverAdmin is the admin API of a running serve: the station's, with
// serve's status and runs serialized with its polls.
type serverAdmin struct {
	*Station
	srv *Server
}

func (a serverAdmin) Status(ctx context.Context) (*Status, error) { return a.srv.Status(ctx) }

func (a serverAdmin) Run(ctx context.Context, ref string) (*Stop, error) {
	return a.srv.runOne(ctx, ref, "")
}

type peerKey struct{}

// ServeAdmin listens on the unix socket path and serves a's admin API
// until the returned function is called. A stale socket of a dead serve is
// replaced; a live one is refused.
func ServeAdmin(path string, a Admin) (func(), error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: %w (another station serve is running)", path, ErrLocked)
	}
	_ = os.Remove(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	hs := &http.Server{Handler: AdminHandler(a), ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerName(c))
		}}
	go hs.Serve(ln) //nolint:errcheck // closed below
	return func() { hs.Close(); os.Remove(path) }, nil
}

// peerName is the user name (or uid) of the process at the other end.
func peerName(c net.Conn) string {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ""
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ""
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || cred == nil {
		return ""
	}
	uid := strconv.Itoa(int(cred.Uid))
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return "uid " + uid
}

// By returns who the request is from: the socket's peer, or the name the
// caller gives when the transport cannot tell (HTTP handlers used
// directly, e.g. by the console, pass their own).
func By(ctx context.Context, claimed string) string {
	if p, _ := ctx.Value(peerKey{}).(string); p != "" {
		if claimed != "" && claimed != p {
			return p + " (as " + claimed + ")"
		}
		return p
	}
	return claimed
}

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func errCode(err error) (int, string) {
	switch {
	case errors.Is(err, ErrNoStop):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, ErrState):
		return http.StatusConflict, "state"
	}
	switch Classify(err) {
	case ClassRefused:
		return http.StatusUnprocessableEntity, "refused"
	case ClassFailed:
		return http.StatusUnprocessableEntity, "failed"
	case ClassWaiting:
		return http.StatusAccepted, "waiting"
	}
	return http.StatusInternalServerError, "internal"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code, name := errCode(err)
	writeJSON(w, code, apiError{Error: err.Error(), Code: name})
}

// AdminHandler serves a's admin API.
func AdminHandler(a Admin) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.Status(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /v1/stops", func(w http.ResponseWriter, r *http.Request) {
		f := Filter{Train: r.URL.Query().Get("train")}
		for _, s := range r.URL.Query()["state"] {
			f.States = append(f.States, State(s))
		}
		f.Limit, _ = strconv.Atoi(r.URL.Query().Get("limit"))
		h, err := a.History(r.Context(), f)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, h)
	})
	mux.HandleFunc("GET /v1/stops/{name}", func(w http.ResponseWriter, r *http.Request) {
		st, ev, err := a.Stop(r.Context(), r.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, stopAndEvents{Stop: st, Events: ev})
	})
	mux.HandleFunc("POST /v1/stops/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Reason string `json:"reason"`
			By     string `json:"by"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil && err != io.EOF {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "bad request body: " + err.Error(), Code: "bad_request"})
			return
		}
		name, by := r.PathValue("name"), By(r.Context(), body.By)
		var st *Stop
		var err error
		switch r.PathValue("action") {
		case "accept":
			st, err = a.Accept(r.Context(), name, by)
		case "reject":
			st, err = a.Reject(r.Context(), name, body.Reason, by)
		case "release":
			st, err = a.Release(r.Context(), name, by)
		case "withhold":
			st, err = a.Withhold(r.Context(), name, body.Reason, by)
		case "retry":
			st, err = a.Retry(r.Context(), name, by)
		default:
			writeJSON(w, http.StatusNotFound, apiError{Error: "unknown action " + strconv.Quote(r.PathValue("action")), Code: "bad_request"})
			return
		}
		if err != nil {
			if strings.HasPrefix(err.Error(), "a reason is required") {
				writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Code: "bad_request"})
				return
			}
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /v1/stops/{name}/results", func(w http.ResponseWriter, r *http.Request) {
		fs, err := a.Results(r.Context(), r.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, fs)
	})
	mux.HandleFunc("GET /v1/stops/{name}/results/{path...}", func(w http.ResponseWriter, r *http.Request) {
		f, err := a.OpenResult(r.Context(), r.PathValue("name"), r.PathValue("path"))
		if err != nil {
			code := http.StatusNotFound
			if !errors.Is(err, os.ErrNotExist) {
				code, _ = errCode(err)
			}
			writeJSON(w, code, apiError{Error: err.Error(), Code: "not_found"})
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, f)
	})
	mux.HandleFunc("GET /v1/stops/{name}/log", func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if err := a.Log(r.Context(), r.PathValue("name"), &buf); err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(buf.Bytes())
	})
	mux.HandleFunc("GET /v1/backup", func(w http.ResponseWriter, r *http.Request) {
		b, ok := a.(backuper)
		if !ok {
			writeJSON(w, http.StatusNotFound, apiError{Error: "this admin API cannot back up", Code: "bad_request"})
			return
		}
		// Spooled first: a failure must not leave a truncated copy that
		// looks whole.
		var buf bytes.Buffer
		if err := b.Backup(r.Context(), &buf); err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(buf.Bytes())
	})
	mux.HandleFunc("POST /v1/run", func(w http.ResponseWriter, r *http.Request) {
		sr, ok := a.(stopRunner)
		if !ok {
			writeJSON(w, http.StatusNotFound, apiError{Error: "this admin API cannot run stops", Code: "bad_request"})
			return
		}
		var body struct {
			Ref string `json:"ref"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil || body.Ref == "" {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "body must be {\"ref\": IMAGE}", Code: "bad_request"})
			return
		}
		st, err := sr.Run(r.Context(), body.Ref)
		if err != nil {
			code, name := errCode(err)
			writeJSON(w, code, runAnswer{Stop: st, apiError: &apiError{Error: err.Error(), Code: name}})
			return
		}
		writeJSON(w, http.StatusOK, runAnswer{Stop: st})
	})
	return mux
}

type stopAndEvents struct {
	Stop   *Stop   `json:"stop"`
	Events []Event `json:"events"`
}

type runAnswer struct {
	Stop *Stop `json:"stop"`
	*apiError
}

// AdminClient is the admin API of a running `station serve`, over its
// socket.
type AdminClient struct {
	hc *http.Client
}

// DialAdmin connects to the admin socket at path; it fails (ErrNotServing)
// when no serve answers there.
func DialAdmin(path string) (*AdminClient, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotServing, err)
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &AdminClient{hc: &http.Client{Transport: tr}}, nil
}

// ErrNotServing means no station serve answers on the admin socket.
var ErrNotServing = errors.New("no station serve on the admin socket")

// remoteError is an admin API error, matching the station's sentinels by
// its code.
type remoteError struct {
	msg, code string
}

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Is(target error) bool {
	switch e.code {
	case "not_found":
		return target == ErrNoStop
	case "state":
		return target == ErrState
	}
	return false
}

func (c *AdminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://station"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var ae apiError
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &ae) != nil || ae.Error == "" {
			ae.Error = fmt.Sprintf("admin API: %s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return &remoteError{msg: ae.Error, code: ae.Code}
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func stopPath(name string, rest ...string) string {
	return "/v1/stops/" + url.PathEscape(name) + strings.Join(rest, "")
}

func (c *AdminClient) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
}

func (c *AdminClient) History(ctx context.Context, f Filter) ([]Stop, error) {
	q := url.Values{}
	for _, s := range f.States {
		q.Add("state", string(s))
	}
	if f.Train != "" {
		q.Set("train", f.Train)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out []Stop
	return out, c.do(ctx, http.MethodGet, "/v1/stops?"+q.Encode(), nil, &out)
}

func (c *AdminClient) Stop(ctx context.Context, name string) (*Stop, []Event, error) {
	var out stopAndEvents
	err := c.do(ctx, http.MethodGet, stopPath(name), nil, &out)
	return out.Stop, out.Events, err
}

func (c *AdminClient) action(ctx context.Context, name, action, reason, by string) (*Stop, error) {
	var st Stop
	err := c.do(ctx, http.MethodPost, stopPath(name, "/", action), map[string]string{"reason": reason, "by": by}, &st)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

func (c *AdminClient) Accept(ctx context.Context, name, by string) (*Stop, error) {
	return c.action(ctx, name, "accept", "", by)
}

func (c *AdminClient) Reject(ctx context.Context, name, reason, by string) (*Stop, error) {
	return c.action(ctx, name, "reject", reason, by)
}

func (c *AdminClient) Release(ctx context.Context, name, by string) (*Stop, error) {
	return c.action(ctx, name, "release", "", by)
}

func (c *AdminClient) Withhold(ctx context.Context, name, reason, by string) (*Stop, error) {
	return c.action(ctx, name, "withhold", reason, by)
}

func (c *AdminClient) Retry(ctx context.Context, name, by string) (*Stop, error) {
	return c.action(ctx, name, "retry", "", by)
}

func (c *AdminClient) Results(ctx context.Context, name string) ([]ResultFile, error) {
	var out []ResultFile
	return out, c.do(ctx, http.MethodGet, stopPath(name, "/results"), nil, &out)
}

func (c *AdminClient) OpenResult(ctx context.Context, name, path string) (io.ReadCloser, error) {
	var buf bytes.Buffer
	if err := c.do(ctx, http.MethodGet, stopPath(name, "/results/", path), nil, &buf); err != nil {
		return nil, err
	}
	return io.NopCloser(&buf), nil
}

func (c *AdminClient) Log(ctx context.Context, name string, w io.Writer) error {
	return c.do(ctx, http.MethodGet, stopPath(name, "/log"), nil, w)
}

// Backup copies the serving station's database to w.
func (c *AdminClient) Backup(ctx context.Context, w io.Writer) error {
	return c.do(ctx, http.MethodGet, "/v1/backup", nil, w)
}

// Run runs one stop in the serving station (`station run` while serve
// holds the database); the error carries the stop's class.
func (c *AdminClient) Run(ctx context.Context, ref string) (*Stop, error) {
	req, _ := json.Marshal(map[string]string{"ref": ref})
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://station/v1/run", bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	var ans struct {
		Stop  *Stop  `json:"stop"`
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&ans); err != nil {
		return nil, fmt.Errorf("admin API: %s", resp.Status)
	}
	if ans.Error != "" {
		return ans.Stop, &RunError{Msg: ans.Error, Class: Class(ans.Code)}
	}
	return ans.Stop, nil
}

// RunError is a stop's error as the serving station reported it.
type RunError struct {
	Msg   string
	Class Class
}

func (e *RunError) Error() string { return e.Msg }

var _ Admin = (*AdminClient)(nil)
