package fsutil

import (
	"os"
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
	ents, _ := os.ReadDir(t.TempDir())
	if len(ents) != 0 {
		t.Fatal("temp files left behind")
	}
}
