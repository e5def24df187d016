package registry

import (
	"strings"
	"testing"
)

// FuzzParseTimeout: any environment value is either a non-negative
// duration or one error line naming the variable, never a panic.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"30s", "0", "1h2m", "-1s", "soon", "", "9223372036854775807ns", "1e3s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := parseTimeout(EnvStallTimeout, v)
		if err != nil {
			if !strings.HasPrefix(err.Error(), EnvStallTimeout+"=") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q", err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("%q -> negative %v", v, d)
		}
	})
}
