package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // registers the "filesystem" driver
	"github.com/sirupsen/logrus"

	"github.com/trainyard/trainyard/internal/fsutil"
)

// quietOnce silences distribution's logrus output, which logs ordinary 404s
// (HEAD checks before every upload) at error level.
var quietOnce sync.Once

// NewHandler returns the embedded registry (distribution/v3) as an
// http.Handler storing everything under dataDir, and a func that stops its
// background work. Data survives a restart: it is all in dataDir.
func NewHandler(ctx context.Context, dataDir string) (http.Handler, func(), error) {
	quietOnce.Do(func() { logrus.SetOutput(io.Discard) })
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
	}
	c.HTTP.Secret = secret
	// Built in code, the config misses the YAML default: catalog requests
	// (n=1000) would be refused as PAGINATION_NUMBER_INVALID.
	c.Catalog.MaxEntries = 1000
	app := handlers.NewApp(ctx, c)
	return app, func() { _ = app.Shutdown() }, nil
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
func Serve(ctx context.Context, addr, dataDir string, ready func(net.Addr)) error {
	h, stop, err := NewHandler(ctx, dataDir)
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
