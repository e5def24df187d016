package phtv2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/train"
)

// FuzzDecryptedSize: the size read from the last block alone agrees with
// what a full rawCBCDecrypt delivers, and both refuse the same inputs.
func FuzzDecryptedSize(f *testing.F) {
	key := seq(0, 32)
	for _, n := range []int{0, 1, 15, 16, 17, 100} {
		var ct bytes.Buffer
		rawCBCEncrypt(&ct, bytes.NewReader(bytes.Repeat([]byte{'x'}, n)), key, seq(0x20, 16))
		f.Add(ct.Bytes())
	}
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Add(make([]byte, 33))
	f.Add(make([]byte, 48))
	f.Fuzz(func(t *testing.T, data []byte) {
		size, serr := rawCBCDecryptedSize(bytes.NewReader(data), int64(len(data)), key)
		var pt bytes.Buffer
		derr := rawCBCDecrypt(&pt, bytes.NewReader(data), key)
		if (serr == nil) != (derr == nil) {
			t.Fatalf("rawCBCDecryptedSize: %v, rawCBCDecrypt: %v", serr, derr)
		}
		if serr != nil {
			if !errors.Is(serr, ErrDecrypt) {
				t.Fatalf("error without ErrDecrypt: %v", serr)
			}
			return
		}
		if size != int64(pt.Len()) {
			t.Fatalf("rawCBCDecryptedSize %d, rawCBCDecrypt wrote %d", size, pt.Len())
		}
	})
}

// stateLayerOf returns the state layer (the last) of img.
func stateLayerOf(t *testing.T, img v1.Image) v1.Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) == 0 {
		t.Fatalf("layers: %v", err)
	}
	return ls[len(ls)-1]
}

// TestProtocolStateLayersUncompressed: post-run's sealed layer and
// pre-run's decrypted layer are plain tar (no gzip of ciphertext), digest
// = diff id, and the decrypted results read back as the run wrote them.
func TestProtocolStateLayersUncompressed(t *testing.T) {
	ctx := context.Background()
	pre, err := PreRun(ctx, buildTrain(t), station(t, "s1"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	post, err := PostRun(ctx, simulateRun(t, pre.Image, "s1"), station(t, "s1"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()
	next, err := PreRun(ctx, post.Image, station(t, "s2"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	for name, img := range map[string]v1.Image{"pre-run": pre.Image, "post-run": post.Image, "next pre-run": next.Image} {
		l := stateLayerOf(t, img)
		mt, _ := l.MediaType()
		if mt != types.OCIUncompressedLayer && mt != types.DockerUncompressedLayer {
			t.Fatalf("%s: state layer media type %s", name, mt)
		}
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		if d != diff {
			t.Fatalf("%s: digest %s != diff id %s", name, d, diff)
		}
	}
	st, err := train.ReadState(ctx, next.Image, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if len(st.Results.Files()) == 0 {
		t.Fatal("no results after the second pre-run")
	}
	want := resultsOf(t, simulateRun(t, pre.Image, "s1"))
	if got := resultsOf(t, next.Image); got != want {
		t.Fatalf("decrypted results %q, the run wrote %q", got, want)
	}
}

// resultsOf lists every results file with its content.
func resultsOf(t *testing.T, img v1.Image) string {
	t.Helper()
	st, err := train.ReadState(context.Background(), img, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var b strings.Builder
	for _, e := range st.Results.Files() {
		rc, err := st.Results.Open(e)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := io.ReadAll(rc)
		rc.Close()
		b.WriteString(e.Name + "=" + string(c) + ";")
	}
	return b.String()
}

// TestPreRunRefusalLeavesNothing: when a result file is tampered (a flipped
// ciphertext byte changes the plaintext and so the results hash; a cut
// file breaks its padding), pre-run refuses and its temporary directory is
// empty afterwards: the partly written decrypted layer was removed.
func TestPreRunRefusalLeavesNothing(t *testing.T) {
	base := atStation2(t)
	cases := map[string]struct {
		edit func(st *train.State)
		want error
	}{
		"flipped byte": {func(st *train.State) { flip(t, st.Results, "out/log.txt", 20) }, ErrTampered},
		"cut file": {func(st *train.State) {
			e := st.Results.Lookup("out/log.txt")
			if err := st.Results.Rewrite(e, func(dst io.Writer, src io.Reader) error {
				b, _ := io.ReadAll(src)
				_, err := dst.Write(b[:len(b)-16])
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}, ErrTampered},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			img := tamper(t, base, nil, c.edit)
			tmp := t.TempDir()
			out, err := PreRun(context.Background(), img, station(t, "s2"), WithTempDir(tmp))
			if out != nil || err == nil {
				t.Fatal("tampered results passed pre-run")
			}
			if !errors.Is(err, c.want) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("got %v", err)
			}
			left, _ := os.ReadDir(tmp)
			if len(left) != 0 {
				t.Fatalf("refused pre-run left %d entries in its temp dir (%s)", len(left), left[0].Name())
			}
		})
	}
}

// stackedResults returns img with a plain layer on top adding results file
// name: its entries come first in a top-down walk, so when name sorts after
// the state layer's results they arrive out of walk order.
func stackedResults(t *testing.T, img v1.Image, name, content string) v1.Image {
	t.Helper()
	w, err := train.NewLayerWriter(t.TempDir(), train.LayerMediaType(img))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.File(train.ResultsDir+"/"+name, 0o644, int64(len(content)), strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	l, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Remove() })
	out, err := mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "run"}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPostRunResultsOutOfOrder: results spread over two layers so that a
// walk sees them out of order cannot be hashed while streaming; the
// streaming post-run says so before keeping anything, PostRun falls back to
// spooling, and the next station's pre-run verifies what it sealed.
func TestPostRunResultsOutOfOrder(t *testing.T) {
	ctx := context.Background()
	pre, err := PreRun(ctx, buildTrain(t), station(t, "s1"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	ran := stackedResults(t, simulateRun(t, pre.Image, "s1"), "zz-late.txt", "written by a later layer")
	tmp := t.TempDir()
	if _, err := postRunStreaming(ctx, ran, station(t, "s1"), &options{tmpDir: tmp}); !errors.Is(err, errNotInOrder) {
		t.Fatalf("streaming post-run on out-of-order results: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("the abandoned streaming post-run left %s", left[0].Name())
	}
	post, err := PostRun(ctx, ran, station(t, "s1"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()
	next, err := PreRun(ctx, post.Image, station(t, "s2"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if got := resultsOf(t, next.Image); !strings.Contains(got, "zz-late.txt=written by a later layer;") || !strings.Contains(got, "out/log.txt=ran at s1") {
		t.Fatalf("results after the fallback: %q", got)
	}
}

// TestPostRunRefusalLeavesNothing: post-run over train files the run
// changed refuses (ErrTampered) after streaming the results, and removes
// the partial sealed layer and its spool.
func TestPostRunRefusalLeavesNothing(t *testing.T) {
	ctx := context.Background()
	pre, err := PreRun(ctx, buildTrain(t), station(t, "s1"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	changed := tamper(t, simulateRun(t, pre.Image, "s1"), nil, func(st *train.State) { flip(t, st.Train, "entrypoint.py", 0) })
	tmp := t.TempDir()
	out, err := PostRun(ctx, changed, station(t, "s1"), WithTempDir(tmp))
	if !errors.Is(err, ErrTampered) || out != nil {
		t.Fatalf("post-run over changed code: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("refused post-run left %s", left[0].Name())
	}
}
