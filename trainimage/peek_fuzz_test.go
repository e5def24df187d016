package trainimage

import (
	"archive/tar"
	"bytes"
	"testing"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/train"
)

// FuzzPeekState: arbitrary state layers never panic PeekEnvelope's reader,
// and what it accepts is a parsed envelope that re-encodes and re-parses.
func FuzzPeekState(f *testing.F) {
	env := []byte(`{"protocol":"trainyard/v1","train":{"payloadType":"x","payload":"","signatures":[]},"stops":[]}`)
	layer := func(entries ...tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			tw.WriteHeader(&h)
			if h.Name == train.ConfigPath {
				tw.Write(env)
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	cfg := tar.Header{Typeflag: tar.TypeReg, Name: train.ConfigPath, Size: int64(len(env)), Mode: 0o644}
	f.Add(layer(tar.Header{Typeflag: tar.TypeDir, Name: "opt/", Mode: 0o755}, tar.Header{Typeflag: tar.TypeReg, Name: train.TrainDir + "/.wh..wh..opq"}, cfg))
	f.Add(layer(tar.Header{Typeflag: tar.TypeReg, Name: CodeBlob, Size: 0}, cfg))
	f.Add(layer(tar.Header{Typeflag: tar.TypeSymlink, Name: train.ConfigPath, Linkname: "/etc/shadow"}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := peekState(tar.NewReader(&boundedReader{r: bytes.NewReader(b), limit: maxEnvelopeSize + stateSlack}))
		if err != nil {
			return
		}
		out, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hardened.ParseEnvelope(out); err != nil {
			t.Fatalf("accepted envelope does not re-parse: %v", err)
		}
	})
}
