package seal

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// TestExpectMatchesHeaderNames: an expectation names an image the way the
// archive's header does once both are canonical, whatever registry either
// came from: a one-part name from a private registry is not lost to Docker
// Hub's "library/" (found by FuzzParseExpect).
func TestExpectMatchesHeaderNames(t *testing.T) {
	for _, c := range []struct{ sealed, expect, version string }{
		{"myreg.example:5000/busybox:1", "busybox", "1"},
		{"myreg.example:5000/busybox:1", "myreg.example:5000/busybox:1", ""},
		{"busybox:1", "busybox:1", ""},
		{"index.docker.io/library/busybox:1", "library/busybox", "1"},
		{"myreg.example/azaion/annotations:1.2", "azaion/annotations", "1.2"},
	} {
		ref, err := name.NewTag(c.sealed)
		if err != nil {
			t.Fatal(err)
		}
		header, _ := NameFor(ref)
		e, err := ParseExpect(c.expect, c.version)
		if err != nil {
			t.Fatal(err)
		}
		if canonicalName(header) != e.Name || canonicalName(e.Name) != e.Name {
			t.Errorf("sealed %s (header %q) vs expect %s %s (%q)", c.sealed, header, c.expect, c.version, e.Name)
		}
	}
}
