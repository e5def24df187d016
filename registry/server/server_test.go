package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

// recorder is an slog.Handler that keeps every record's message.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// distribution's logs (here: a 404 and the answered requests) go to the
// server's WithLogger, and none to logrus's process-wide logger, whose
// settings the server leaves as they were.
func TestLogsScopedToServer(t *testing.T) {
	var global bytes.Buffer
	std := logrus.StandardLogger()
	out, level := std.Out, std.GetLevel()
	std.SetOutput(&global)
	std.SetLevel(logrus.DebugLevel)
	t.Cleanup(func() { std.SetOutput(out); std.SetLevel(level) })

	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, stop, err := NewHandler(ctx, t.TempDir(), WithLogger(slog.New(rec)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, u := range []string{"/v2/", "/v2/nothing/here/manifests/latest"} {
		resp, err := http.Get(srv.URL + u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if u != "/v2/" && resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: %s", u, resp.Status)
		}
	}
	if rec.count() == 0 {
		t.Error("no distribution log reached WithLogger's logger")
	}
	if global.Len() != 0 {
		t.Errorf("distribution logged through logrus's standard logger:\n%s", global.String())
	}
	if std.Out != &global || std.GetLevel() != logrus.DebugLevel || len(std.Hooks) != 0 {
		t.Error("the server changed logrus's process-wide settings")
	}
}
