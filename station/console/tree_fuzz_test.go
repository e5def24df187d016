package console

import (
	"strings"
	"testing"
)

// FuzzBuildTree: any listing (results paths are a train's choice) nests
// without a panic, keeps every entry once and sums directory sizes.
func FuzzBuildTree(f *testing.F) {
	for _, s := range []string{"a\na/b\na/b/c", "../x\n/y\n.\n\n", "a\na/b\na", "x/y/z\nx", "a//b\n./a/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		var ents []entry
		var sum int64
		for i, p := range strings.Split(list, "\n") {
			ents = append(ents, entry{Path: p, Size: int64(i)})
			sum += int64(i)
		}
		roots, _ := buildTree(ents)
		var total int64
		for _, n := range roots {
			total += n.Size
		}
		// Files only here: every root's size sums its leaves, and
		// duplicates collapse into one entry (the last size wins).
		if total > sum {
			t.Fatalf("tree sums %d, more than the %d listed", total, sum)
		}
	})
}
