package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/trainyard/trainyard/train"
)

// runCLI runs the CLI in-process with env set and returns code, stdout, stderr.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func mustRun(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	code, out, stderr := runCLI(t, env, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	return out
}

// refuse expects a non-zero exit with exactly one "trainyard: " line that
// contains want.
func refuse(t *testing.T, env map[string]string, want string, args ...string) {
	t.Helper()
	code, _, stderr := runCLI(t, env, args...)
	if code == 0 {
		t.Fatalf("%v: exit 0, want a refusal", args)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "trainyard: ") {
		t.Fatalf("%v: stderr %q is not one error line", args, stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Fatalf("%v: stderr %q does not say %q", args, stderr, want)
	}
}

type pki struct{ dir string }

func (p pki) key(n string) string { return filepath.Join(p.dir, n+".pem") }
func (p pki) pub(n string) string { return filepath.Join(p.dir, n+".pub.pem") }

func newPKI(t *testing.T, names ...string) pki {
	p := pki{dir: t.TempDir()}
	for _, n := range names {
		mustRun(t, nil, "train", "keygen", filepath.Join(p.dir, n))
	}
	return p
}

func buildCLITrain(t *testing.T, p pki, out string) {
	t.Helper()
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "entrypoint.py"), []byte("print('hi')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "train", "build", "--dir", code, "--base", "scratch",
		"--route", "s1="+p.pub("s1")+",s2="+p.pub("s2"), "--creator-key", p.key("user"),
		"--train-id", "t1", "--out", out)
}

func digestOf(t *testing.T, loc string) v1.Hash {
	t.Helper()
	img, err := train.Load(context.Background(), loc, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestProtocolCLIRoute(t *testing.T) {
	srv := testutil.Registry(t)
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/station/t1:latest"
	p := newPKI(t, "s1", "s2", "user")
	buildCLITrain(t, p, ref)
	st := func(id string) map[string]string {
		return map[string]string{"STATION_ID": id, "PRIVATE_KEY_PATH": p.key(id)}
	}

	// Wrong station key: refused, registry tag untouched.
	before := digestOf(t, ref)
	refuse(t, map[string]string{"STATION_ID": "s1", "PRIVATE_KEY_PATH": p.key("s2")}, "not wrapped for this private key", "protocol", "pre-run", ref, "--out", "oci:"+t.TempDir())
	if after := digestOf(t, ref); after != before {
		t.Fatalf("refused pre-run changed the image: %s -> %s", before, after)
	}

	// Decrypted output is never pushed back to the registry implicitly.
	refuse(t, st("s1"), "pre-run output is decrypted", "protocol", "pre-run", ref)
	refuse(t, st("s1"), "pre-run output is decrypted", "protocol", "pre-run", ref, "--out", ref)
	local := filepath.Join(t.TempDir(), "s1.tar")
	out := mustRun(t, st("s1"), "protocol", "pre-run", ref, "--out", local)
	if !strings.Contains(out, "pre-run ok") {
		t.Fatalf("pre-run output %q", out)
	}
	mustRun(t, st("s1"), "protocol", "post-run", local, "--out", ref)
	// Flags instead of env, and --out to an OCI layout.
	layout := "oci:" + filepath.Join(t.TempDir(), "layout")
	t.Setenv("STATION_ID", "")
	mustRun(t, nil, "protocol", "pre-run", ref, "--station-id", "s2", "--private-key", p.key("s2"), "--out", layout)
	mustRun(t, nil, "protocol", "post-run", layout, "--station-id", "s2", "--private-key", p.key("s2"))
	res := t.TempDir()
	mustRun(t, nil, "train", "results", layout, "--key", p.key("user"), "--dir", res)
	if _, err := os.Stat(res); err != nil {
		t.Fatal(err)
	}
	show := mustRun(t, nil, "train", "show", layout)
	if !strings.Contains(show, `"result_hash": "`) {
		t.Fatalf("show: %s", show)
	}
}

// imageWith writes a scratch image whose state layer holds files (path ->
// content) to an OCI layout and returns its location.
func imageWith(t *testing.T, files map[string]string) string {
	t.Helper()
	w, err := train.NewStateWriter(t.TempDir(), train.ScratchImage())
	if err != nil {
		t.Fatal(err)
	}
	for n, c := range files {
		if err := w.File(n, 0o644, int64(len(c)), strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
	}
	l, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Remove()
	img, err := train.WithState(train.ScratchImage(), l)
	if err != nil {
		t.Fatal(err)
	}
	loc := "oci:" + filepath.Join(t.TempDir(), "img")
	if err := train.Save(context.Background(), img, loc, nil); err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestProtocolCLIBadInput(t *testing.T) {
	p := newPKI(t, "s1", "s2", "user")
	env := map[string]string{"STATION_ID": "s1", "PRIVATE_KEY_PATH": p.key("s1")}

	refuse(t, env, "train_config.json is missing", "protocol", "pre-run", imageWith(t, map[string]string{"opt/other": "x"}))
	refuse(t, env, "invalid train config", "protocol", "pre-run", imageWith(t, map[string]string{train.ConfigPath: "{not json"}))
	refuse(t, env, `missing field "creator"`, "protocol", "post-run", imageWith(t, map[string]string{train.ConfigPath: `{"@id":"x"}`}))

	// A truncated train file: copy a real train and cut a ciphertext short.
	good := "oci:" + filepath.Join(t.TempDir(), "good")
	buildCLITrain(t, p, good)
	img, err := train.Load(context.Background(), good, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := train.ReadState(context.Background(), img, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := st.Train.Lookup("entrypoint.py")
	if err := st.Train.Rewrite(e, func(dst io.Writer, src io.Reader) error {
		_, err := io.CopyN(dst, src, 20)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cut, layer, err := train.WriteState(img, t.TempDir(), train.StateContent{Config: st.Config, Train: st.Train, Results: st.Results, UserKey: st.UserKey})
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Remove()
	cutLoc := filepath.Join(t.TempDir(), "cut.tar")
	if err := train.Save(context.Background(), cut, cutLoc, nil); err != nil {
		t.Fatal(err)
	}
	before := digestOf(t, cutLoc)
	refuse(t, env, "ciphertext truncated", "protocol", "pre-run", cutLoc)
	if digestOf(t, cutLoc) != before {
		t.Fatal("refused pre-run changed the tarball")
	}

	// A wrong key type: ECDSA.
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ek)
	ecPath := filepath.Join(t.TempDir(), "ec.pem")
	os.WriteFile(ecPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	refuse(t, map[string]string{"STATION_ID": "s1", "PRIVATE_KEY_PATH": ecPath}, "PHT v2 needs RSA", "protocol", "pre-run", good)
	// Garbage key, missing key file, missing env.
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("hello"), 0o600)
	refuse(t, map[string]string{"STATION_ID": "s1", "PRIVATE_KEY_PATH": junk}, "not PEM", "protocol", "pre-run", good)
	refuse(t, map[string]string{"STATION_ID": "s1", "PRIVATE_KEY_PATH": junk + ".nope"}, "no such file", "protocol", "pre-run", good)
	refuse(t, map[string]string{"STATION_ID": "", "PRIVATE_KEY_PATH": p.key("s1")}, "STATION_ID", "protocol", "pre-run", good)
	// Post-run on a train that was never decrypted: the code does not hash.
	refuse(t, env, "post-run needs the decrypted train files", "protocol", "post-run", good)
	// Missing image.
	refuse(t, env, "OCI layout", "protocol", "pre-run", "oci:"+filepath.Join(t.TempDir(), "none"))
	// A bare path is no location: refused before any key is read.
	refuse(t, env, "is a path: write oci:./t1", "protocol", "pre-run", good, "--out", "./t1")
	refuse(t, env, `no image tagged "nope"`, "protocol", "pre-run", good+":nope")
}

func TestTrainBuildOnRegistryBase(t *testing.T) {
	srv := testutil.Registry(t)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	base, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := train.Save(context.Background(), base, host+"/master/python:latest", nil); err != nil {
		t.Fatal(err)
	}
	p := newPKI(t, "s1", "user")
	code := t.TempDir()
	os.WriteFile(filepath.Join(code, "main.py"), []byte("print(1)\n"), 0o644)
	out := "oci:" + filepath.Join(t.TempDir(), "t")
	mustRun(t, nil, "train", "build", "--dir", code, "--base", host+"/master/python:latest",
		"--route", "s1="+p.pub("s1"), "--creator-key", p.key("user"), "--cmd", "python3 -u", "--out", out)
	img, err := train.Load(context.Background(), out, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	cf, _ := img.ConfigFile()
	if len(layers) != 3 || strings.Join(cf.Config.Cmd, " ") != "python3 -u /opt/pht_train/main.py" {
		t.Fatalf("%d layers, CMD %v", len(layers), cf.Config.Cmd)
	}
	refuse(t, nil, "--dir, --route, --creator-key and --out are required", "train", "build", "--dir", code)
	refuse(t, nil, "STATION_ID=PUBLIC_KEY.pem", "train", "build", "--dir", code, "--route", "s1", "--creator-key", p.key("user"), "--out", out)
}

// A train built on REPO:base records it in source, and post-run --rebase
// seals it on that base's layers: the output is the base plus one state
// layer, written to REPO:latest as the PHT container does.
func TestProtocolCLIRebaseAndSource(t *testing.T) {
	srv := testutil.Registry(t)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	baseRef := host + "/station/t1:base"
	baseImg, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := train.Save(context.Background(), baseImg, baseRef, nil); err != nil {
		t.Fatal(err)
	}
	p := newPKI(t, "s1", "s2", "user")
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "entrypoint.py"), []byte("print('hi')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := host + "/station/t1:run-7"
	mustRun(t, nil, "train", "build", "--dir", code, "--base", baseRef,
		"--route", "s1="+p.pub("s1")+",s2="+p.pub("s2"), "--creator-key", p.key("user"),
		"--train-id", "t1", "--out", ref)
	show := mustRun(t, nil, "train", "show", ref)
	if !strings.Contains(show, `"address": "`+host+`/station/t1"`) || !strings.Contains(show, `"tag": "base"`) {
		t.Fatalf("source does not name the base:\n%s", show)
	}

	env := map[string]string{"STATION_ID": "s1", "PRIVATE_KEY_PATH": p.key("s1")}
	local := filepath.Join(t.TempDir(), "s1.tar")
	mustRun(t, env, "protocol", "pre-run", ref, "--out", local)
	refuse(t, env, "needs --base", "protocol", "post-run", local, "--rebase")
	refuse(t, env, "base image", "protocol", "post-run", local, "--rebase", "--base", host+"/station/none:base", "--out", ref)
	mustRun(t, env, "protocol", "post-run", local, "--rebase", "--base", baseRef, "--out", host+"/station/t1:latest")
	img, err := train.Load(context.Background(), host+"/station/t1:latest", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := img.Layers()
	want, _ := baseImg.Layers()
	if len(got) != len(want)+1 {
		t.Fatalf("rebased image has %d layers, want %d", len(got), len(want)+1)
	}
	for i := range want {
		a, _ := got[i].Digest()
		b, _ := want[i].Digest()
		if a != b {
			t.Fatalf("layer %d: %s, base has %s", i, a, b)
		}
	}
	// The registry train post-run --rebase in place: REPO:latest from REPO:base.
	env2 := map[string]string{"STATION_ID": "s2", "PRIVATE_KEY_PATH": p.key("s2")}
	local2 := "oci:" + filepath.Join(t.TempDir(), "s2")
	mustRun(t, env2, "protocol", "pre-run", host+"/station/t1:latest", "--out", local2)
	out := mustRun(t, env2, "protocol", "post-run", local2, "--rebase", "--base", baseRef, "--out", host+"/station/t1:latest")
	if !strings.Contains(out, "post-run ok") {
		t.Fatalf("post-run: %s", out)
	}
	mustRun(t, nil, "train", "results", host+"/station/t1:latest", "--key", p.key("user"), "--dir", t.TempDir())
}

// check-base accepts a train built on its master (OCI layout and docker
// tarball) and refuses it against another master with one error line.
func TestTrainCheckBaseCLI(t *testing.T) {
	dir := t.TempDir()
	master, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	masterLoc, otherLoc := "oci:"+filepath.Join(dir, "master"), filepath.Join(dir, "other.tar")
	if err := train.Save(context.Background(), master, masterLoc, nil); err != nil {
		t.Fatal(err)
	}
	if err := train.Save(context.Background(), other, otherLoc, nil); err != nil {
		t.Fatal(err)
	}
	p := newPKI(t, "s1", "user")
	code := t.TempDir()
	os.WriteFile(filepath.Join(code, "entrypoint.py"), []byte("print(1)\n"), 0o644)
	trainLoc := filepath.Join(dir, "train.tar")
	mustRun(t, nil, "train", "build", "--dir", code, "--base", masterLoc, "--route", "s1="+p.pub("s1"),
		"--creator-key", p.key("user"), "--out", trainLoc)
	if out := mustRun(t, nil, "train", "check-base", trainLoc, "--master", masterLoc); !strings.Contains(out, "is built on") {
		t.Fatalf("check-base: %s", out)
	}
	refuse(t, nil, "not built on the master image", "train", "check-base", trainLoc, "--master", otherLoc)
	refuse(t, nil, "--master is required", "train", "check-base", trainLoc)
}

// A bad Paillier key is refused before any result is written.
func TestTrainResultsBadPaillierKey(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "k.json")
	os.WriteFile(bad, []byte(`{"n": "x"}`), 0o600)
	p := newPKI(t, "user")
	out := filepath.Join(t.TempDir(), "out")
	refuse(t, nil, "paillier", "train", "results", "oci:"+t.TempDir(), "--key", p.key("user"), "--dir", out, "--paillier-key", bad)
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("results written despite a bad key: %v", err)
	}
}
