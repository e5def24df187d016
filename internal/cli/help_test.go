package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// walk calls fn on c and every command below it.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, s := range c.Commands() {
		walk(s, fn)
	}
}

// TestFlagValueNames: pflag takes the first back-quoted word of a usage as
// the value name shown in --help; it must be one word, not a command line.
func TestFlagValueNames(t *testing.T) {
	var bad []string
	walk(NewRoot(), func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if n, _ := pflag.UnquoteUsage(f); strings.ContainsAny(n, " \t") {
				bad = append(bad, c.CommandPath()+" --"+f.Name+" "+n)
			}
		})
	})
	if len(bad) > 0 {
		t.Errorf("flag value names with spaces:\n  %s", strings.Join(bad, "\n  "))
	}
}

// TestExamplesUseRealCommands: every example line that starts with
// "trainyard" names an existing command path and only flags it has, so an
// example cannot rot when a command or flag is renamed.
func TestExamplesUseRealCommands(t *testing.T) {
	root := NewRoot()
	walk(root, func(c *cobra.Command) {
		for _, line := range strings.Split(c.Example, "\n") {
			line = strings.TrimSpace(line)
			i := strings.Index(line, "trainyard ")
			if i < 0 {
				continue
			}
			// Only the first command of a pipeline or list, up to a comment.
			seg := line[i:]
			for _, sep := range []string{" | ", " && ", " # ", " > ", " ; "} {
				if j := strings.Index(seg, sep); j >= 0 {
					seg = seg[:j]
				}
			}
			args := strings.Fields(seg)[1:]
			found, rest, err := root.Find(args)
			if err != nil || found == root {
				t.Errorf("%s: example %q: no such command", c.CommandPath(), line)
				continue
			}
			for _, a := range rest {
				if !strings.HasPrefix(a, "-") || a == "-" {
					continue
				}
				name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				var f *pflag.Flag
				if strings.HasPrefix(a, "--") {
					f = found.Flags().Lookup(name)
				} else if len(name) == 1 {
					f = found.Flags().ShorthandLookup(name)
				} else {
					continue // e.g. -vv
				}
				if f == nil {
					t.Errorf("%s: example %q: %s has no flag %s", c.CommandPath(), line, found.CommandPath(), a)
				}
			}
		}
	})
}
