package cli

import (
	"sort"
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

// TestEveryCommandHasExamples walks the whole tree: every runnable command
// needs an Example section, listed by path when it lacks one.
func TestEveryCommandHasExamples(t *testing.T) {
	var missing []string
	walk(NewRoot(), func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" || c.HasParent() && c.Parent().Name() == "completion" {
			return
		}
		// A group (no flags of its own; usageExit makes it runnable only to
		// refuse) needs no example; "seal", which runs and has "inspect", does.
		group := c.HasAvailableSubCommands() && !c.LocalNonPersistentFlags().HasFlags()
		if c.Runnable() && !group && strings.TrimSpace(c.Example) == "" {
			missing = append(missing, c.CommandPath())
		}
	})
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%d commands without Example:\n  %s", len(missing), strings.Join(missing, "\n  "))
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
	walk(root, func(c *cobra.Command) { checkExample(t, root, c.CommandPath(), c.Example) })
	// The shared table, also before its commands pick it up.
	for path, ex := range examples {
		c, _, err := root.Find(strings.Fields(path))
		if err != nil || c.CommandPath() != "trainyard "+path {
			t.Errorf("examples[%q]: no such command", path)
		}
		checkExample(t, root, "examples["+path+"]", ex)
	}
}

func checkExample(t *testing.T, root *cobra.Command, where, example string) {
	t.Helper()
	// A line ending in a backslash continues on the next.
	example = strings.ReplaceAll(example, "\\\n", " ")
	for _, line := range strings.Split(example, "\n") {
		line = strings.TrimSpace(line)
		i := strings.Index(line, "trainyard ")
		if i < 0 {
			continue
		}
		// Each command of a list or pipeline, up to a comment.
		if j := strings.Index(line, " # "); j >= 0 {
			line = line[:j]
		}
		for _, seg := range strings.FieldsFunc(line[i:], func(r rune) bool { return r == '|' || r == '&' || r == ';' }) {
			f := strings.Fields(seg)
			if len(f) == 0 || f[0] != "trainyard" {
				continue
			}
			checkArgs(t, root, where, line, f[1:])
		}
	}
}

func checkArgs(t *testing.T, root *cobra.Command, where, line string, args []string) {
	t.Helper()
	found, rest, err := root.Find(args)
	group := found.HasAvailableSubCommands() && !found.LocalNonPersistentFlags().HasFlags()
	if err != nil || found == root || group {
		t.Errorf("%s: example %q: no such command", where, line)
		return
	}
	for _, a := range rest {
		if !strings.HasPrefix(a, "-") || a == "-" || a == "\\" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var fl *pflag.Flag
		switch {
		case strings.HasPrefix(a, "--"):
			if fl = found.Flags().Lookup(name); fl == nil {
				fl = found.InheritedFlags().Lookup(name)
			}
		case len(name) == 1:
			if fl = found.Flags().ShorthandLookup(name); fl == nil {
				fl = found.InheritedFlags().ShorthandLookup(name)
			}
		default:
			continue // -vv and the like
		}
		if fl == nil {
			t.Errorf("%s: example %q: %s has no flag %s", where, line, found.CommandPath(), a)
		}
	}
}
