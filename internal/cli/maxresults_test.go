package cli

import (
	"strings"
	"testing"
)

// A bad --max-results or TRAINYARD_MAX_RESULTS is a usage error, one line,
// before anything else happens.
func TestStationMaxResultsFlag(t *testing.T) {
	base := []string{"station", "run", "127.0.0.1:1/x:y", "--id", "s1", "--key", "/nonexistent/key", "--network", "127.0.0.1:1/p"}
	for name, c := range map[string]struct {
		env  map[string]string
		args []string
		want string
	}{
		"flag not a size":   {nil, []string{"--max-results", "lots"}, "want bytes or a number"},
		"flag too small":    {nil, []string{"--max-results", "4k"}, "below the minimum"},
		"env not a size":    {map[string]string{"TRAINYARD_MAX_RESULTS": "12x"}, nil, "TRAINYARD_MAX_RESULTS"},
		"env too small":     {map[string]string{"TRAINYARD_MAX_RESULTS": "1000"}, nil, "below the minimum"},
		"memory not a size": {nil, []string{"--memory", "512Q"}, "want bytes or a number"},
		"negative timeout":  {nil, []string{"--timeout", "-3s"}, "negative"},
		"negative pids":     {nil, []string{"--pids", "-1"}, "must not be negative"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runCLI(t, c.env, append(append([]string{}, base...), c.args...)...)
			if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and one line with %q", code, stderr, c.want)
			}
		})
	}
	// Human sizes are taken; the run then fails on the missing key, not the size.
	code, _, stderr := runCLI(t, map[string]string{"TRAINYARD_MAX_RESULTS": "512M"}, append(append([]string{}, base...), "--memory", "512M", "--timeout", "90m")...)
	if code == 0 || strings.Contains(stderr, "max-results") || strings.Contains(stderr, "MAX_RESULTS") || strings.Contains(stderr, "memory") {
		t.Fatalf("a valid size was refused: exit %d %q", code, stderr)
	}
}
