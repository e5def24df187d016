package trainimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/train"
)

// FuzzReadState feeds arbitrary state layers (uncompressed tar) to the
// state-layer reader: it must never panic, never keep more than
// the bound, and keep a code blob only when it is the signed one.
func FuzzReadState(f *testing.F) {
	env := []byte(`{"protocol":"trainyard/v1","train":{"payloadType":"x","payload":"","signatures":[]},"stops":[]}`)
	code := bytes.Repeat([]byte("sealed"), 100)
	sum := sha256.Sum256(code)
	ref := hardened.BlobRef{Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(code))}
	verify := func(*hardened.Envelope) (*hardened.Verified, error) {
		return &hardened.Verified{Statement: &hardened.Statement{Code: hardened.CodeRef{Blob: ref}}}, nil
	}
	layer := func(entries ...tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			tw.WriteHeader(&h)
			switch h.Name {
			case train.ConfigPath:
				tw.Write(env)
			case CodeBlob:
				tw.Write(code)
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	cfg := tar.Header{Typeflag: tar.TypeReg, Name: train.ConfigPath, Size: int64(len(env)), Mode: 0o644}
	blob := tar.Header{Typeflag: tar.TypeReg, Name: CodeBlob, Size: int64(len(code)), Mode: 0o644}
	f.Add(layer(tar.Header{Typeflag: tar.TypeDir, Name: "opt/", Mode: 0o755}, cfg, blob))
	f.Add(layer(blob, cfg))
	f.Add(layer(cfg, tar.Header{Typeflag: tar.TypeSymlink, Name: CodeBlob, Linkname: "/etc/shadow"}))
	f.Add(layer(cfg, tar.Header{Typeflag: tar.TypeChar, Name: "opt/pht_results/x", Devmajor: 1, Devminor: 3}))
	f.Add([]byte("not a tar"))
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		// One directory per input under a shared base: t.TempDir per exec
		// costs more than the reader.
		dir, err := os.MkdirTemp(base, "")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		st := &Sealed{dir: dir}
		plain := &boundedReader{r: bytes.NewReader(b), limit: maxEnvelopeSize + stateSlack}
		if _, err := readState(context.Background(), tar.NewReader(plain), plain, st, verify); err != nil {
			return
		}
		got, rerr := os.ReadFile(st.Code)
		if rerr != nil || !bytes.Equal(got, code) {
			t.Fatalf("accepted a code blob that is not the signed one (%v)", rerr)
		}
	})
}
