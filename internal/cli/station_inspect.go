package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trust"
)

// inspectTextFiles is how many code entries the text output lists; -o json
// lists up to station.MaxInspectEntries.
const inspectTextFiles = 20

// newStationInspectCmd is `station inspect IMAGE`: every check of a stop at
// this station, the code decrypted to be listed, nothing run, marked or
// pushed. It needs the station's id, key and trust directory only; the
// station flags for running (--data, --network, --runtime, limits) are
// ignored.
func newStationInspectCmd(f *stationFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: "inspect IMAGE",
		Example: `  trainyard station inspect 127.0.0.1:5000/net/stations/hospital-a:study42 --id hospital-a --key hospital-a.key
  trainyard station inspect 127.0.0.1:5000/net/stations/hospital-a:study42 --id hospital-a --key hospital-a.key -o json | jq -r '.code.entries[].path'`,
		Short: "Verify a train at this station without running it: creator, route, approval, exec, base, code, sizes",
		Args:  cobra.ExactArgs(1),
	}
	checkOutput := outputFlag(cmd, &output)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(); err != nil {
			return err
		}
		s, err := inspectStation(cmd, f)
		if err != nil {
			return err
		}
		in, err := s.Inspect(cmd.Context(), args[0])
		if err != nil {
			return inspectExit(err)
		}
		if ts, ok := s.Trust.(*trust.Store); ok {
			// The approval's terms beyond what the protocol checks. The
			// train is verified already: a failure here only leaves them out.
			if info, err := ts.Approval(cmd.Context(), in.Approval.Digest); err == nil {
				in.Approval.Label, in.Approval.Expires = info.Label, info.Expires
				if info.Comments != nil {
					in.Approval.Comments = info.Comments
				}
			}
		}
		if output == "json" {
			return writeJSON(cmd.OutOrStdout(), in)
		}
		return writeInspection(cmd.OutOrStdout(), in)
	}
	return cmd
}

// inspectStation builds the part of a station that inspect needs from the
// flags: id, key and trust store, checked as `station run` checks them.
func inspectStation(cmd *cobra.Command, f *stationFlags) (*station.Station, error) {
	for _, fl := range []struct{ name, v string }{{"--id", f.id}, {"--key", f.key}} {
		if fl.v == "" {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("%s is required", fl.name)}
		}
	}
	switch f.protocol {
	case station.ProtocolV1:
	case station.ProtocolPHTv2:
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("%w: inspect supports v1 trains", hardened.ErrUnsupported)}
	default:
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("unknown --protocol %q (v1 or pht-v2)", f.protocol)}
	}
	// The key's mode, as for a stop; there is no data directory to check.
	if err := station.CheckSetup("", f.key); err != nil {
		return nil, err
	}
	key, err := loadPrivateKey(cmd, f.key)
	if err != nil {
		return nil, err
	}
	ts, err := f.trust.store(cmd.Context(), cmd)
	if err != nil {
		return nil, err
	}
	return &station.Station{ID: f.id, Protocol: station.V1{Key: key}, Trust: ts,
		Client: newClient(cmd, f.trust.insecure), WorkDir: inspectWorkDir(f)}, nil
}

// inspectWorkDir is where inspect decrypts the code: --work-dir, else the
// station's STATE/work when it exists (so the station's Recover removes
// what a killed inspect left), else the system temp dir. Inspect never
// creates the state directory: an operator may inspect as another user.
func inspectWorkDir(f *stationFlags) string {
	if f.work != "" {
		return f.work
	}
	if fi, err := os.Stat(f.workDir()); err == nil && fi.IsDir() {
		return f.workDir()
	}
	return ""
}

// inspectExit gives a train that fails a check the exit code `station run`
// has for it (4 refused, 5 failed; 1 for registry and other errors), so a
// script branches on both alike.
func inspectExit(err error) error {
	switch station.Classify(err) {
	case station.ClassRefused:
		return &ExitError{Code: 4, Err: err}
	case station.ClassFailed:
		return &ExitError{Code: 5, Err: err}
	}
	return err
}

// writeInspection prints the block an operator reads before deciding.
// Everything that comes from the train is printed through inspectSafe, so a
// file name cannot carry terminal escapes.
func writeInspection(w io.Writer, in *station.Inspection) error {
	var b strings.Builder
	line := func(label, format string, a ...any) {
		fmt.Fprintf(&b, "%-9s %s\n", label, fmt.Sprintf(format, a...))
	}
	line("train", "%s (%s)", inspectSafe(in.ID), in.Protocol)
	line("digest", "%s", in.TrainDigest)
	line("creator", "%s, created %s", inspectSafe(in.Creator), in.Created.UTC().Format(time.RFC3339))
	for i, r := range in.Route {
		label := ""
		if i == 0 {
			label = "route"
		}
		mark := " "
		var note string
		switch {
		case r.Done:
			mark = "✓"
			if r.Time != nil {
				note = "  " + r.Time.UTC().Format(time.RFC3339)
			}
		case r.Here:
			note = "  → here"
		}
		line(label, "%s %d %s%s", mark, r.Index, inspectSafe(r.Station), note)
	}
	if in.NextKind == "creator" {
		line("next", "%s (the creator: this is the last stop)", inspectSafe(in.Next))
	} else {
		line("next", "%s", inspectSafe(in.Next))
	}
	a := in.Approval
	approvers := "nobody named"
	if len(a.Approvers) > 0 {
		approvers = inspectSafeList(a.Approvers)
	}
	line("approval", "%s by %s", a.Digest, approvers)
	terms := "for every station of the route"
	if len(a.Stations) > 0 {
		terms = "only for " + inspectSafeList(a.Stations)
	}
	if a.Label != "" {
		terms = inspectSafe(a.Label) + ", " + terms
	}
	if a.Expires != "" {
		terms += ", expires " + inspectSafe(a.Expires)
	}
	line("", "%s", terms)
	for _, c := range a.Comments {
		line("", "%s", inspectSafe(c))
	}
	e := in.Exec
	line("exec", "entrypoint %s cmd %s", inspectQuoted(e.Entrypoint), inspectQuoted(e.Cmd))
	line("", "workdir %s user %s env %s", strconv.Quote(e.WorkingDir), strconv.Quote(e.User), inspectQuoted(e.Env))
	line("base", "%s", inspectSafe(in.Base))
	c := in.Code
	line("code", "%s, %s, %s; manifest %s", inspectCount(c.Files, "file"), inspectCount(c.Dirs, "dir"), inspectSize(c.Bytes), c.Manifest)
	line("", "sealed %s, %s", inspectSize(c.Sealed.Size), c.Sealed.Digest)
	for i, ent := range c.Entries {
		if i == inspectTextFiles {
			break
		}
		name := inspectSafe(ent.Path)
		if ent.Type == "dir" {
			name += "/"
		}
		line("", "  %s %10d  %s", ent.Mode, ent.Size, name)
	}
	if more := c.Files + c.Dirs - min(len(c.Entries), inspectTextFiles); more > 0 {
		line("", "  ... and %d more (-o json lists up to %d)", more, station.MaxInspectEntries)
	}
	if in.Results != nil {
		line("results", "sealed %s from stop %d, %s (not decrypted)", inspectSize(in.Results.Size), in.Index-1, in.Results.Digest)
	} else {
		line("results", "none (first stop)")
	}
	line("image", "%s, %s (%d base), %s compressed", in.Image.Digest, inspectCount(in.Image.Layers, "layer"), in.Image.BaseLayers, inspectSize(in.Image.Size))
	line("verified", "every check of stop %d at %s passed; nothing was run, marked or pushed", in.Index, inspectSafe(in.Station))
	_, err := io.WriteString(w, b.String())
	return err
}

// inspectSafe returns s as it is when every rune prints, else quoted.
func inspectSafe(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func inspectSafeList(l []string) string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = inspectSafe(s)
	}
	return strings.Join(out, ", ")
}

func inspectQuoted(l []string) string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(out, " ") + "]"
}

// inspectCount is "1 file", "2 files".
func inspectCount(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// inspectSize is n bytes for a reader: "512 B", "1.5 KiB", "3.2 MiB".
func inspectSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
