package phtv2

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/train"
)

// atStation2 returns a train that s1 has run: the input of s2's pre-run.
func atStation2(t *testing.T) v1.Image {
	t.Helper()
	ctx := context.Background()
	pre, err := PreRun(ctx, buildTrain(t), station(t, "s1"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pre.Close() })
	post, err := PostRun(ctx, simulateRun(t, pre.Image, "s1"), station(t, "s1"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { post.Close() })
	return post.Image
}

// tamper rewrites the state of img: editCfg gets the config as generic JSON,
// editFiles the spooled trees.
func tamper(t *testing.T, img v1.Image, editCfg func(m map[string]any), editFiles func(st *train.State)) v1.Image {
	t.Helper()
	st, err := train.ReadState(context.Background(), img, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	raw := st.Config
	if editCfg != nil {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		editCfg(m)
		if raw, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	if editFiles != nil {
		editFiles(st)
	}
	out, layer, err := train.WriteState(img, t.TempDir(), train.StateContent{Config: raw, Train: st.Train, Results: st.Results, UserKey: st.UserKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { layer.Remove() })
	return out
}

// flip changes one byte of a spooled file (offset from the start; in the IV
// of a ciphertext it changes the first plaintext block and keeps the padding).
func flip(t *testing.T, tr *train.Tree, name string, off int) {
	t.Helper()
	e := tr.Lookup(name)
	if e == nil {
		t.Fatalf("no %s in %s", name, tr.Root)
	}
	err := tr.Rewrite(e, func(dst io.Writer, src io.Reader) error {
		b, err := io.ReadAll(src)
		if err != nil {
			return err
		}
		b[off] ^= 0x01
		_, err = dst.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func route(m map[string]any, i int) map[string]any {
	return m["route"].([]any)[i].(map[string]any)
}

func TestPreRunTamper(t *testing.T) {
	base := atStation2(t)
	cases := []struct {
		name  string
		cfg   func(m map[string]any)
		files func(st *train.State)
		st    Station
		want  error
		msg   string
	}{
		{name: "code file changed", files: func(st *train.State) { flip(t, st.Train, "entrypoint.py", 3) }, want: ErrTampered, msg: "immutable files changed"},
		{name: "code file added", files: func(st *train.State) {
			if _, err := st.Train.AddFile("sitecustomize.py", 0o644, strings.NewReader("x")); err != nil {
				t.Fatal(err)
			}
		}, want: ErrTampered, msg: "not in file_list"},
		{name: "query changed", files: func(st *train.State) { flip(t, st.Train, "query.json", 0) }, want: ErrTampered},
		{name: "creator id changed", cfg: func(m map[string]any) { m["creator"].(map[string]any)["id"] = "mallory" }, want: ErrTampered},
		{name: "session id changed", cfg: func(m map[string]any) { m["session_id"] = strings.Repeat("00", 64) }, want: ErrTampered},
		{name: "file_list reordered", cfg: func(m map[string]any) {
			l := m["file_list"].([]any)
			l[0], l[1] = l[1], l[0]
		}, want: ErrTampered},
		{name: "user signature", cfg: func(m map[string]any) { m["signature"] = flipHex(m["signature"].(string)) }, want: ErrSignature, msg: "user signature"},
		{name: "build signature", cfg: func(m map[string]any) {
			b := m["build"].(map[string]any)
			b["signature"] = flipHex(b["signature"].(string))
		}, want: ErrSignature, msg: "build signature"},
		{name: "results changed", files: func(st *train.State) { flip(t, st.Results, "out/log.txt", 0) }, want: ErrTampered, msg: "previous results changed"},
		{name: "result hash changed", cfg: func(m map[string]any) { m["result_hash"] = flipHex(m["result_hash"].(string)) }, want: ErrTampered},
		{name: "result signature", cfg: func(m map[string]any) { m["result_signature"] = flipHex(m["result_signature"].(string)) }, want: ErrSignature, msg: "result signature"},
		{name: "chain signature", cfg: func(m map[string]any) {
			s := route(m, 0)["signature"].(map[string]any)
			s["signature"] = flipHex(s["signature"].(string))
		}, want: ErrSignature, msg: "chain signature of stop 0"},
		{name: "chain signature removed", cfg: func(m map[string]any) { route(m, 0)["signature"] = nil }, want: ErrSignature},
		{name: "result hash stripped", cfg: func(m map[string]any) { m["result_hash"], m["result_signature"] = nil, nil }, want: ErrTampered, msg: "result_hash is null"},
		{name: "wrong station key", st: Station{ID: "s2", Key: testKeys(t)["s3"]}, want: ErrDecrypt, msg: "not wrapped for this private key"},
		{name: "station not on route", st: Station{ID: "s9", Key: testKeys(t)["s2"]}, want: ErrStation},
		{name: "eco system aac", cfg: func(m map[string]any) { route(m, 1)["eco_system"] = "aac" }, want: train.ErrConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := base
			if c.cfg != nil || c.files != nil {
				img = tamper(t, base, c.cfg, c.files)
			}
			st := c.st
			if st.Key == nil {
				st = station(t, "s2")
			}
			out, err := PreRun(context.Background(), img, st, WithTempDir(t.TempDir()))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if out != nil {
				t.Fatal("an image came back from a refused pre-run")
			}
			if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not say %q", err, c.msg)
			}
			// Stored in an OCI layout, the refused image stays byte for byte.
			loc := "oci:" + filepath.Join(t.TempDir(), "train")
			if err := train.Save(context.Background(), img, loc, nil); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(strings.TrimPrefix(loc, "oci:"), "index.json"))
			if _, _, err := Run(context.Background(), PreRun, loc, "", st, nil, WithTempDir(t.TempDir())); !errors.Is(err, c.want) {
				t.Fatalf("Run: got %v, want %v", err, c.want)
			}
			after, _ := os.ReadFile(filepath.Join(strings.TrimPrefix(loc, "oci:"), "index.json"))
			if string(before) != string(after) {
				t.Fatal("a refused pre-run changed the stored image")
			}
		})
	}
	// The untouched train still passes: the cases above fail for their reason.
	out, err := PreRun(context.Background(), base, station(t, "s2"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	out.Close()
}

func flipHex(s string) string {
	b := []byte(s)
	if b[0] == '0' {
		b[0] = '1'
	} else {
		b[0] = '0'
	}
	return string(b)
}

func TestPostRunRefusesChangedCodeAndWrongKey(t *testing.T) {
	ctx := context.Background()
	pre, err := PreRun(ctx, buildTrain(t), station(t, "s1"), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	changed := tamper(t, pre.Image, nil, func(st *train.State) { flip(t, st.Train, "lib/util.py", 0) })
	if _, err := PostRun(ctx, changed, station(t, "s1")); !errors.Is(err, ErrTampered) {
		t.Fatalf("changed code at post-run: %v", err)
	}
	if _, err := PostRun(ctx, pre.Image, Station{ID: "s1", Key: testKeys(t)["s2"]}); !errors.Is(err, ErrKey) {
		t.Fatalf("post-run with another station's key: %v", err)
	}
}
