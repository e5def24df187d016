// Package demo runs trainyard's whole story on embedded defaults: it starts
// the embedded registry in-process and walks a train through it, printing
// each step. It is what `trainyard demo` and `make demo` run.
package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/registry/server"
)

// Options configures a demo run.
type Options struct {
	// Dir holds all demo state (registry data, keys, station data). Empty
	// means a temp dir removed at the end.
	Dir string
	// Out receives the step-by-step narration.
	Out io.Writer
}

// env is what every step of the demo shares.
type env struct {
	out    io.Writer
	dir    string
	host   string // embedded registry host:port
	client *registry.Client
	step   int
	start  time.Time
}

func (e *env) say(format string, a ...any) {
	e.step++
	fmt.Fprintf(e.out, "[%2d %5.1fs] %s\n", e.step, time.Since(e.start).Seconds(), fmt.Sprintf(format, a...))
}

// Run executes the demo.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "trainyard-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	e := &env{out: o.Out, dir: dir, start: time.Now(),
		client: registry.NewClient(registry.WithKeychain(authn.NewMultiKeychain()))}

	h, stop, err := server.NewHandler(ctx, dir+"/registry")
	if err != nil {
		return err
	}
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // closed below
	defer srv.Close()
	e.host = ln.Addr().String()
	e.say("embedded registry (distribution/v3) on %s, data in %s", e.host, dir+"/registry")

	for _, s := range steps {
		if err := s(ctx, e); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "demo finished in %.1fs\n", time.Since(e.start).Seconds())
	return nil
}

// steps are the demo's chapters, in order.
var steps = []func(context.Context, *env) error{registryRoundTrip, trainRoute}
