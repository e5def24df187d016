package train

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func writeRandom(t *testing.T, p string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSplicedLayer(t *testing.T) {
	dir := t.TempDir()
	big := writeRandom(t, filepath.Join(dir, "big"), 3<<20+77) // not a multiple of 512
	small := writeRandom(t, filepath.Join(dir, "small"), 512)
	writeRandom(t, filepath.Join(dir, "empty"), 0)

	w, err := NewSpliceWriter(types.OCIUncompressedLayer)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Opaque(TrainDir); err != nil {
		t.Fatal(err)
	}
	if err := w.File("opt/cfg.json", 0o644, 2, strings.NewReader("{}")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"big", "empty", "small"} {
		if err := w.FileAt("opt/blobs/"+n, 0o644, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	l, err := w.Splice()
	if err != nil {
		t.Fatal(err)
	}
	// What go-containerregistry's validate.Layer checks, by hand since it
	// assumes gzip: digest and size of the bytes read, digest = diff id,
	// equal streams.
	checkUncompressedLayer(t, l)
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[hdr.Name] = b
	}
	if !bytes.Equal(got["opt/blobs/big"], big) || !bytes.Equal(got["opt/blobs/small"], small) ||
		len(got["opt/blobs/empty"]) != 0 || string(got["opt/cfg.json"]) != "{}" {
		t.Fatalf("entries: %d, big %d bytes", len(got), len(got["opt/blobs/big"]))
	}
	if _, ok := got[TrainDir+"/"+whiteoutOpaque]; !ok {
		t.Fatalf("no opaque marker in %v", keys(got))
	}

	// A file changed after the layer was written makes a read fail.
	for name, change := range map[string]func(p string) error{
		"truncated": func(p string) error { return os.Truncate(p, 100) },
		"grown": func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("x"))
			return err
		},
	} {
		p := filepath.Join(dir, "big")
		writeRandom(t, p, len(big))
		if err := change(p); err != nil {
			t.Fatal(err)
		}
		rc, _ := l.Compressed()
		_, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err == nil || !strings.Contains(err.Error(), "changed size") {
			t.Fatalf("%s: read = %v", name, err)
		}
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSpliceWriterRefusals(t *testing.T) {
	if _, err := NewSpliceWriter(types.OCILayer); err == nil {
		t.Fatal("a gzip spliced layer was allowed")
	}
	w, _ := NewSpliceWriter(types.DockerUncompressedLayer)
	if _, err := w.Close(); err == nil {
		t.Fatal("Close of a spliced writer succeeded")
	}
	if err := w.FileAt("x", 0o644, t.TempDir()); err == nil {
		t.Fatal("a directory was spliced as a file")
	}
	fw, err := NewLayerWriter(t.TempDir(), types.OCIUncompressedLayer)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Abort()
	if _, err := fw.Splice(); err == nil {
		t.Fatal("Splice of a file-backed writer succeeded")
	}
}

func checkUncompressedLayer(t *testing.T, l v1.Layer) {
	t.Helper()
	read := func(open func() (io.ReadCloser, error)) (v1.Hash, int64) {
		rc, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		h, n, err := v1.SHA256(rc)
		if err != nil {
			t.Fatal(err)
		}
		return h, n
	}
	d, _ := l.Digest()
	diff, _ := l.DiffID()
	size, _ := l.Size()
	cd, cn := read(l.Compressed)
	ud, un := read(l.Uncompressed)
	if cd != d || ud != d || diff != d || cn != size || un != size {
		t.Fatalf("layer says %s/%s %d bytes; reads %s %d and %s %d", d, diff, size, cd, cn, ud, un)
	}
}
