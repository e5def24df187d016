// Package cli is the thin cobra layer over trainyard's packages: it parses
// flags and environment, calls a library function and prints the result.
// No protocol or security logic lives here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/google/go-containerregistry/pkg/logs"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/spf13/cobra"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/registry"
)

// commands holds the constructors of the top-level command groups; each file
// of this package adds its own in init so that groups never edit a shared list.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }

// ExitError carries a specific exit code (for example 2 for usage errors).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// hintError is a usage error with a suggestion printed on a line of its own.
type hintError struct {
	*ExitError
	hint string
}

func (e *hintError) Unwrap() error { return e.ExitError }

// NewRoot builds the whole command tree.
func NewRoot() *cobra.Command {
	var verbose int
	root := &cobra.Command{
		Use:           "trainyard",
		Short:         "Verified analysis trains for sensitive data, TUF over OCI registries, sealed image delivery",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			setupLogging(cmd.ErrOrStderr(), max(verbose, debugEnv()))
		},
	}
	root.Version = buildVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().CountVarP(&verbose, "verbose", "v", "-v logs debug records of every library to stderr, -vv also an HTTP trace of registry traffic, credentials redacted (also TRAINYARD_DEBUG=1 or 2)")
	addProgressFlag(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &ExitError{Code: 2, Err: err} })
	for _, c := range commands {
		root.AddCommand(c())
	}
	usageExit(root)
	return root
}

// usageExit makes every argument-count error a usage error (exit 2), and
// makes command groups refuse what cobra would otherwise answer with help and
// exit 0: an unknown subcommand (a script must not carry on after a typo) or
// none at all.
func usageExit(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if len(a) == 0 {
				return nil
			}
			err := &ExitError{Code: 2, Err: fmt.Errorf("unknown command %q for %q", a[0], cmd.CommandPath())}
			if cmd.SuggestionsMinimumDistance <= 0 {
				cmd.SuggestionsMinimumDistance = 2 // cobra's default, applied only by its own error path
			}
			if s := cmd.SuggestionsFor(a[0]); len(s) > 0 {
				return &hintError{ExitError: err, hint: fmt.Sprintf("did you mean %q?", s[0])}
			}
			return err
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return &ExitError{Code: 2, Err: fmt.Errorf("%s needs a subcommand (see the list above)", cmd.CommandPath())}
		}
	} else if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageExit(sub)
	}
}

// Main runs the CLI and returns the process exit code. Errors become a single
// line on stderr; a panic anywhere below is turned into one line too.
func Main(args []string) (code int) {
	return run(args, os.Stdin, os.Stdout, os.Stderr)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "trainyard: internal error: %v\n", oneLine(fmt.Sprint(r)))
			code = 70
		}
	}()
	root := NewRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "trainyard: %s\n", oneLine(err.Error()))
	var he *hintError
	if errors.As(err, &he) {
		fmt.Fprintf(stderr, "trainyard: %s\n", he.hint)
	}
	if h := authHint(err); h != "" {
		fmt.Fprintf(stderr, "trainyard: %s\n", h)
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// debugEnv reads TRAINYARD_DEBUG: 2 for the HTTP trace, any other
// non-empty value for debug records.
func debugEnv() int {
	switch v := os.Getenv("TRAINYARD_DEBUG"); v {
	case "":
		return 0
	case "2":
		return 2
	default:
		return 1
	}
}

// setupLogging points slog (trainyard's packages) and go-containerregistry's
// loggers at w. Level 2 turns on ggcr's HTTP trace: every request and
// response with Authorization headers and token responses redacted and blob
// bodies left out.
func setupLogging(w io.Writer, level int) {
	lv := slog.LevelWarn
	logs.Warn.SetOutput(io.Discard)
	logs.Debug.SetOutput(io.Discard)
	// go-tuf's logger is a plain package variable: set once, and filtered
	// by slog's level from then on, since commands that run side by side
	// in one process (the CLI tests) would otherwise race on it.
	tufLoggerOnce.Do(func() { tufmeta.SetLogger(tufSlog{}) })
	if level > 0 {
		lv = slog.LevelDebug
		logs.Warn.SetOutput(w)
	}
	if level > 1 {
		logs.Debug.SetOutput(w)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})))
}

// tufSlog hands go-tuf's records (which metadata it loaded, verified,
// refused) to slog at debug level.
type tufSlog struct{}

var tufLoggerOnce sync.Once

func (tufSlog) Info(msg string, kv ...any) { slog.Debug(msg, append(kv, "component", "go-tuf")...) }
func (tufSlog) Error(err error, msg string, kv ...any) {
	slog.Debug(msg, append(kv, "component", "go-tuf", "err", err)...)
}

// authHint tells what to do when a registry refused access: which
// credentials trainyard reads and how to store them.
func authHint(err error) string {
	var te *transport.Error
	if !errors.As(err, &te) || (te.StatusCode != http.StatusUnauthorized && te.StatusCode != http.StatusForbidden) {
		if !errors.Is(err, registry.ErrUnauthorized) {
			return ""
		}
	}
	return "the registry refused access: log in with `trainyard login REGISTRY -u USER` (or docker login; credentials come from the Docker config, DOCKER_CONFIG); `trainyard tuf` also reads TRAINYARD_TUF_USERNAME/_PASSWORD/_TOKEN"
}

// oneLine keeps an error on one line so that logs and operators see one record.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", "; ")
}

// envOr returns the environment variable's value, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}
