package cli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/trainyard/trainyard/internal/kdftest"
)

// switchRegistry is a real registry that can be made to hang (accept and
// never answer) or trickle (headers, then 10 bytes/s).
type switchRegistry struct {
	mode  atomic.Value
	inner http.Handler
	stop  chan struct{}
}

func (s *switchRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch s.mode.Load() {
	case "hang":
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		return
	case "trickle":
		rec := httptest.NewRecorder()
		s.inner.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		for _, c := range rec.Body.Bytes() {
			if _, err := w.Write([]byte{c}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			case <-s.stop:
				return
			}
		}
		return
	}
	s.inner.ServeHTTP(w, r)
}

// TestTUFPullTimesOut: `tuf pull-metadata` and `tuf pull-target` against a
// hanging and a trickling registry fail with one timeout line in bounded
// time instead of hanging forever.
func TestTUFPullTimesOut(t *testing.T) {
	kdftest.Fast()
	sr := &switchRegistry{inner: testutil.QuietRegistry(), stop: make(chan struct{})}
	sr.mode.Store("ok")
	srv := httptest.NewServer(sr)
	defer srv.Close()
	defer close(sr.stop)
	dir := t.TempDir()
	t.Setenv("TRAINYARD_TUF_HOST", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("TRAINYARD_TUF_INSECURE", "1")
	t.Setenv("TRAINYARD_TUF_REPOSITORIES_ROOT", filepath.Join(dir, "state"))
	for _, r := range []string{"ROOT", "TARGETS", "SNAPSHOT", "TIMESTAMP"} {
		t.Setenv("TRAINYARD_TUF_"+r+"_KEY_PASSWORD", "pw")
	}
	t.Setenv("TRAINYARD_TLS_TIMEOUT", "300ms")
	t.Setenv("TRAINYARD_HEADER_TIMEOUT", "300ms")
	t.Setenv("TRAINYARD_STALL_TIMEOUT", "300ms")
	file := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(file, bytes.Repeat([]byte("payload "), 512), 0o644); err != nil {
		t.Fatal(err)
	}
	tuf := func(stdin string, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(append([]string{"tuf"}, args...), strings.NewReader(stdin), &out, &errb)
		return out.String(), errb.String(), code
	}
	for _, args := range [][]string{{"create-root-key", "demo"}, {"create-metadata-keys", "demo"}, {"create-metadata", "demo"},
		{"push-target", "demo", "a.txt", file}, {"push-metadata", "demo"}} {
		if _, errs, code := tuf("", args...); code != 0 {
			t.Fatalf("tuf %v: %d %s", args, code, errs)
		}
	}
	pubs, _ := filepath.Glob(filepath.Join(dir, "state", "*", "master", "keys", "root", "*.pub"))
	pub, err := os.ReadFile(pubs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, errs, code := tuf(string(pub), "pull-metadata", "demo", "-"); code != 0 {
		t.Fatalf("pull-metadata while the registry answers: %s", errs)
	}
	for _, mode := range []string{"hang", "trickle"} {
		sr.mode.Store(mode)
		for _, args := range [][]string{{"pull-metadata", "demo"}, {"pull-target", "demo", "a.txt"}} {
			start := time.Now()
			_, errs, code := tuf("", args...)
			el := time.Since(start)
			if code == 0 || !(strings.Contains(errs, "timeout") || strings.Contains(errs, "stalled")) || strings.Count(errs, "\n") != 1 {
				t.Fatalf("%s registry, tuf %v: exit %d after %v: %q", mode, args, code, el, errs)
			}
			if el > 15*time.Second {
				t.Fatalf("%s registry, tuf %v took %v", mode, args, el)
			}
		}
	}
	sr.mode.Store("ok")
	if out, errs, code := tuf("", "pull-target", "demo", "a.txt"); code != 0 || !strings.HasPrefix(out, "payload") {
		t.Fatalf("pull-target after the outage: %d %s", code, errs)
	}
}
