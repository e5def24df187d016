package ids

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for s, want := range map[string]bool{
		"hospital-a": true, "a": true, "A.b_c-9": true, strings.Repeat("x", 128): true,
		"": false, "-a": false, ".a": false, "_a": false, "a/b": false, "a b": false, "a:b": false,
		strings.Repeat("x", 129): false, "ä": false, "a\n": false,
	} {
		if got := Valid(s); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	f.Add("hospital-a")
	f.Fuzz(func(t *testing.T, s string) {
		if Valid(s) && (len(s) > 128 || strings.ContainsAny(s, "/: \\\n\t\x1b")) {
			t.Fatalf("accepted %q", s)
		}
	})
}
