package fsutil

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
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

// A WritebackWriter writes exactly what it is given, through Write and
// ReadFrom, across several write-out requests.
func TestWritebackWriter(t *testing.T) {
	want := make([]byte, 3*writebackEvery+12345)
	for i := range want {
		want[i] = byte(i * 7)
	}
	p := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWritebackWriter(f)
	if _, err := w.Write(want[:100]); err != nil {
		t.Fatal(err)
	}
	if n, err := w.ReadFrom(strings.NewReader(string(want[100:]))); err != nil || n != int64(len(want)-100) {
		t.Fatalf("ReadFrom: %d, %v", n, err)
	}
	if w.disabled {
		t.Fatal("write-out requests refused on a regular file")
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("file differs: %d bytes, want %d", len(got), len(want))
	}
}

// Where the write-out request is refused (a pipe), the writer goes on as a
// plain one.
func TestWritebackWriterRefusedRequest(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := int64(writebackEvery + 1)
	done := make(chan int64)
	go func() {
		m, _ := io.Copy(io.Discard, r)
		done <- m
	}()
	w := NewWritebackWriter(pw)
	if _, err := w.ReadFrom(io.LimitReader(zeros{}, n)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if got := <-done; got != n {
		t.Fatalf("read %d bytes, want %d", got, n)
	}
	if runtime.GOOS == "linux" && !w.disabled {
		t.Fatal("a refused request did not turn the requests off")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// RemoveContents empties a directory (files, nested trees) and keeps it;
// a missing directory is an error.
func TestRemoveContents(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"f", "a/g", "a/b/h"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveContents(dir); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 0 {
		t.Fatalf("after RemoveContents: %v entries, %v", len(ents), err)
	}
	if err := RemoveContents(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing directory was emptied")
	}
}
