package fsutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	p := t.TempDir() + "/f"
	if err := WriteFileAtomic(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "two" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("content %q mode %v", b, fi.Mode())
	}
	if err := WriteFileAtomic(t.TempDir()+"/missing/dir/f", []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing dir succeeded")
	}
	// A write whose rename fails (the target is a non-empty directory) after
	// the temp file was written leaves nothing behind but what was there.
	dir := filepath.Dir(p)
	if err := os.MkdirAll(filepath.Join(dir, "d", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "d"), []byte("x"), 0o600); err == nil {
		t.Fatal("write over a non-empty directory succeeded")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "d f" {
		t.Fatalf("dir holds %q, want only d and f (temp files left behind?)", names)
	}
}
