package seal

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// TestStreamGolden pins the archive body's bytes: testdata/stream-v1.golden
// was sealed by the first implementation (fixed key, nonce prefix, header
// hash and plaintext). The chunk layer must still produce exactly these
// bytes and open them, or archives on disk and in transit stop opening.
func TestStreamGolden(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	prefix := []byte{1, 2, 3, 4}
	var hh [32]byte
	for i := range hh {
		hh[i] = byte(i)
	}
	plain := make([]byte, 5000)
	for i := range plain {
		plain[i] = byte(i * 7)
	}
	golden, err := os.ReadFile("testdata/stream-v1.golden")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := newChunkWriter(&out, key, prefix, hh, 1024)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	if !bytes.Equal(out.Bytes(), golden) {
		t.Fatal("the sealed body's bytes changed")
	}
	r, err := newChunkReader(bytes.NewReader(golden), key, prefix, hh, 1024)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("golden body opens to %d bytes, %v", len(got), err)
	}
}
