package hardened

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// TestStreamGolden: testdata/stream-v1.golden is a sealed stream written by
// the first implementation (random salt, so only opening is pinned): every
// train sealed so far must still open to the same plaintext.
func TestStreamGolden(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	plain := make([]byte, 5000)
	for i := range plain {
		plain[i] = byte(i * 13)
	}
	golden, err := os.ReadFile("testdata/stream-v1.golden")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewOpenReader(bytes.NewReader(golden), key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("golden stream opens to %d bytes, %v", len(got), err)
	}
	bad := bytes.Clone(golden)
	bad[len(bad)-1] ^= 1
	r, _ = NewOpenReader(bytes.NewReader(bad), key)
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("a changed last byte opened")
	}
}
