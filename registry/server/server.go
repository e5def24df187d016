// Package server is the embedded registry: distribution/v3 with filesystem
// storage in one data directory, as an http.Handler or a listening server.
// It is apart from the registry client so that a program that only talks to
// registries does not link a registry server (and its redis, otel and grpc
// dependencies); only the CLI's `registry serve`, the demo and tests import it.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // registers the "filesystem" driver
	"github.com/sirupsen/logrus"

	"github.com/trainyard/trainyard/internal/fsutil"
)

// Option configures the embedded registry.
type Option func(*options)

type options struct{ logger *slog.Logger }

// WithLogger sends distribution's logs to l, at debug level (it logs
// ordinary 404s, the HEAD checks before every upload, at error level). The
// default is slog.Default(), where the CLI's -v shows them.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// slogHook forwards a logrus entry to an slog.Logger.
type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	attrs := make([]any, 0, 2*len(e.Data)+2)
	attrs = append(attrs, "component", "registry")
	for k, v := range e.Data {
		attrs = append(attrs, k, v)
	}
	h.log.Debug(e.Message, attrs...)
	return nil
}

// loggerCtx hands distribution a logger of this server's own. distribution
// looks its logger up in the context under a key of its internal dcontext
// package and falls back to logrus's process-wide standard logger; answering
// that key here keeps every other logrus user in the process untouched.
// TestLogsScopedToServer fails if a distribution upgrade renames the key.
type loggerCtx struct {
	context.Context
	entry *logrus.Entry
}

func (c loggerCtx) Value(key any) any {
	if t := reflect.TypeOf(key); t != nil && t.Name() == "loggerKey" &&
		t.PkgPath() == "github.com/distribution/distribution/v3/internal/dcontext" {
		return c.entry
	}
	return c.Context.Value(key)
}

// NewHandler returns the embedded registry (distribution/v3) as an
// http.Handler storing everything under dataDir, and a func that stops its
// background work. Data survives a restart: it is all in dataDir.
func NewHandler(ctx context.Context, dataDir string, opts ...Option) (http.Handler, func(), error) {
	o := options{logger: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	// A logger of this server's own: nothing printed, everything to o.logger.
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.AddHook(slogHook{o.logger})
	entry := logrus.NewEntry(l)
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, nil, fmt.Errorf("registry data dir: %w", err)
	}
	secret, err := httpSecret(abs)
	if err != nil {
		return nil, nil, err
	}
	c := &configuration.Configuration{}
	c.Log.Level = "error"
	c.Log.AccessLog.Disabled = true
	c.Storage = configuration.Storage{
		"filesystem": configuration.Parameters{"rootdirectory": abs},
		"delete":     configuration.Parameters{"enabled": true},
		// Off: its purger logs through logrus's process-wide logger;
		// purgeLoop does the same job (purge.go).
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	c.HTTP.Secret = secret
	// Built in code, the config misses the YAML default: catalog requests
	// (n=1000) would be refused as PAGINATION_NUMBER_INVALID.
	c.Catalog.MaxEntries = 1000
	app := handlers.NewApp(loggerCtx{ctx, entry}, c)
	pctx, stopPurge := context.WithCancel(ctx)
	purged := make(chan struct{})
	go func() {
		defer close(purged)
		purgeLoop(pctx, abs, o.logger)
	}()
	// Requests carry the http.Server's context, not the app's: give each
	// one the logger too.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app.ServeHTTP(w, r.WithContext(loggerCtx{r.Context(), entry}))
	})
	return h, func() {
		stopPurge()
		<-purged
		_ = app.Shutdown()
	}, nil
}

// httpSecret keeps the upload-state secret stable across restarts so that
// an interrupted upload can resume after the server comes back.
func httpSecret(dir string) (string, error) {
	p := filepath.Join(dir, ".http-secret")
	if b, err := os.ReadFile(p); err == nil && len(b) >= 32 {
		return string(b), nil
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	s := hex.EncodeToString(buf)
	if err := fsutil.WriteFileAtomic(p, []byte(s), 0o600); err != nil {
		return "", fmt.Errorf("registry secret: %w", err)
	}
	return s, nil
}

// Serve runs the embedded registry on addr until ctx is cancelled, then
// shuts down cleanly. ready, if not nil, receives the bound address.
func Serve(ctx context.Context, addr, dataDir string, ready func(net.Addr), opts ...Option) error {
	h, stop, err := NewHandler(ctx, dataDir, opts...)
	if err != nil {
		return err
	}
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("registry listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Connections the client opened and never used would hold a plain
	// Shutdown for ~5 s; give it a short deadline, then close the rest.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
