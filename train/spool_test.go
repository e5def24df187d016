package train

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

func readEntry(t *testing.T, tr *Tree, e *Entry) string {
	t.Helper()
	rc, err := tr.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A thousand files cost one spool file; a failed rewrite keeps the old
// content and leaves the next write whole.
func TestSpoolOneFile(t *testing.T) {
	sp, err := NewSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	tr := NewTree(sp, ResultsDir)
	var es []*Entry
	for i := 0; i < 1000; i++ {
		e, err := tr.AddFile(fmt.Sprintf("f%04d", i), 0o644, strings.NewReader(fmt.Sprintf("content %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	ents, err := os.ReadDir(sp.Dir())
	if err != nil || len(ents) != 1 {
		t.Fatalf("spool dir holds %d files (%v), want 1", len(ents), err)
	}
	for _, i := range []int{0, 1, 500, 999} {
		if got, want := readEntry(t, tr, es[i]), fmt.Sprintf("content %d", i); got != want {
			t.Fatalf("entry %d = %q, want %q", i, got, want)
		}
	}

	boom := errors.New("decrypt failed")
	err = tr.Rewrite(es[1], func(dst io.Writer, src io.Reader) error {
		io.WriteString(dst, "half of the new cont")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Rewrite = %v", err)
	}
	if got := readEntry(t, tr, es[1]); got != "content 1" {
		t.Fatalf("after a failed rewrite: %q", got)
	}
	if err := tr.Rewrite(es[1], func(dst io.Writer, src io.Reader) error {
		b, _ := io.ReadAll(src)
		_, err := io.WriteString(dst, strings.ToUpper(string(b)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	e, err := tr.AddFile("last", 0o644, strings.NewReader("the last one"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readEntry(t, tr, es[1]); got != "CONTENT 1" {
		t.Fatalf("rewritten: %q", got)
	}
	if got := readEntry(t, tr, e); got != "the last one" {
		t.Fatalf("after a failed rewrite the next file is %q", got)
	}
	// Content is random access (a CBC size comes from the last block).
	rc, _ := tr.Open(es[2])
	var b [1]byte
	if _, err := rc.(io.ReaderAt).ReadAt(b[:], 8); err != nil || b[0] != '2' {
		t.Fatalf("ReadAt = %q, %v", b[:], err)
	}
	if _, err := tr.Open(&Entry{Name: "dir"}); err == nil {
		t.Fatal("a directory opened as a file")
	}
}
