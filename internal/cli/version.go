package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() { register(newVersionCmd) }

// VersionInfo is what `trainyard version -o json` prints; the field names are
// stable so that scripts can depend on them.
type VersionInfo struct {
	Version   string `json:"version"`            // module version, "(devel)" for a source build
	Revision  string `json:"revision,omitempty"` // VCS revision the binary was built from
	Time      string `json:"time,omitempty"`     // VCS commit time (RFC 3339)
	Modified  bool   `json:"modified"`           // the work tree had uncommitted changes
	GoVersion string `json:"go_version"`         // toolchain that built the binary
	Platform  string `json:"platform"`           // GOOS/GOARCH
}

// buildVersion reads what the Go toolchain stamped into the binary; nothing
// has to be passed with -ldflags for a `go build` from a clone.
func buildVersion() VersionInfo {
	v := VersionInfo{Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one line of `trainyard --version`.
func (v VersionInfo) String() string {
	s := "trainyard " + v.Version
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " (" + rev
		if v.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + " " + v.GoVersion + " " + v.Platform
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print trainyard's version, VCS revision and Go version",
		Example: `  trainyard version
  trainyard version -o json | jq -r .revision`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printVersion(cmd.OutOrStdout(), output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printVersion(w io.Writer, format string) error {
	v := buildVersion()
	switch format {
	case "text", "":
		_, err := fmt.Fprintln(w, v)
		return err
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	default:
		return &ExitError{Code: 2, Err: fmt.Errorf("unknown output format %q: use text or json", format)}
	}
}
