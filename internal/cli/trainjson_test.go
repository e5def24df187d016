package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainrun"
)

// TestTrainV1ShowAndJSON: train show reads a trainyard/v1 train's public
// facts without keys (before and after a stop), and keys show, train digest,
// train show and train open print JSON that parses into the documented
// fields. The stop runs with real runc.
func TestTrainV1ShowAndJSON(t *testing.T) {
	if err := trainrun.NewRunc().Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run trains: %v", err)
		}
		t.Skip(err)
	}
	kdftest.Fast()
	srv := testutil.Registry(t)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	t.Setenv("TRAINYARD_TRUST_REPO", host+"/net/trust")
	t.Setenv("TRAINYARD_TRUST_ADMIN_DIR", p("admin"))
	t.Setenv("TRAINYARD_TRUST_KEY_PASSWORD", "pw")
	t.Setenv("TRAINYARD_NETWORK", host+"/net")
	code := p("code")
	os.MkdirAll(code, 0o755)
	if err := train.BuildStatic(context.Background(), "../../demo/aggregate", filepath.Join(code, "aggregate")); err != nil {
		t.Fatal(err)
	}
	data := p("data")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "p.csv"), []byte("id,age,diagnosis\n1,30,flu\n"), 0o644)
	ok := func(args ...string) string {
		t.Helper()
		c, out, stderr := execRoot(t, "", args...)
		if c != 0 {
			t.Fatalf("%v: exit %d: %s", args, c, stderr)
		}
		return out
	}
	decode := func(out string, v any) {
		t.Helper()
		d := json.NewDecoder(strings.NewReader(out))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			t.Fatalf("JSON %q: %v", out, err)
		}
	}

	ok("keys", "generate", p("alice"))
	ok("keys", "generate", p("st1"))
	var k KeyIDs
	decode(ok("keys", "show", p("alice.key"), "-o", "json"), &k)
	if !k.Private || !strings.Contains(ok("keys", "show", p("alice.pub")), k.SignKey) || k.EncKey == "" {
		t.Fatalf("keys show -o json: %+v", k)
	}
	ok("trust", "init")
	ok("trust", "add-user", "alice", "--key", p("alice.pub"))
	ok("trust", "add-station", "st1", "--key", p("st1.pub"))
	var dg TrainDigest
	decode(ok("train", "digest", "--code", code, "--entrypoint", "/opt/pht_train/aggregate", "-o", "json"), &dg)
	if !strings.HasPrefix(dg.Digest, "sha256:") || dg.Base != "scratch" || len(dg.Entrypoint) != 1 {
		t.Fatalf("train digest -o json: %+v", dg)
	}
	ok("trust", "approve-train", "--digest", dg.Digest, "--user", "alice", "--key", p("alice.key"))
	root := "--trust-root=" + p("admin") + "/metadata/root.json"
	ok("train", "create", "--code", code, "--route", "st1", "--creator", "alice", "--id", "t9", "--entrypoint", "/opt/pht_train/aggregate",
		"--key", p("alice.key"), "--trust-dir", p("alice-trust"), root)

	// show needs no key and no trust directory, before the first stop ...
	inbox := host + "/net/stations/st1:t9"
	text := ok("train", "show", inbox)
	for _, want := range []string{"train      t9 (trainyard/v1; signatures not checked", "creator    alice", "route      st1", "stops      0 of 1", "next       st1", "approval   " + dg.Digest} {
		if !strings.Contains(text, want) {
			t.Fatalf("train show lacks %q:\n%s", want, text)
		}
	}
	var f TrainFacts
	decode(ok("train", "show", inbox, "-o", "json"), &f)
	if f.Protocol != "trainyard/v1" || f.Verified || f.ID != "t9" || f.Creator != "alice" || len(f.Route) != 1 || len(f.Stops) != 0 || f.Next != "st1" || f.Approval != dg.Digest {
		t.Fatalf("train show -o json: %+v", f)
	}
	if c, _, stderr := execRoot(t, "", "train", "show", inbox, "-o", "yaml"); c != 2 || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("-o yaml: exit %d %q", c, stderr)
	}

	ok("station", "run", inbox, "--id", "st1", "--key", p("st1.key"), "--data", data, "--trust-dir", p("st1-trust"), "--train-logs", p("logs"), root)
	outbox := host + "/net/users/alice:t9"
	f = TrainFacts{}
	decode(ok("train", "show", outbox, "-o", "json"), &f)
	if len(f.Stops) != 1 || f.Stops[0].Station != "st1" || f.Stops[0].Index != 0 || f.Stops[0].Time.IsZero() || f.Next != "" {
		t.Fatalf("train show after the stop: %+v", f)
	}
	var o OpenedTrain
	decode(ok("train", "open", outbox, "--creator", "alice", "--key", p("alice.key"), "--out", p("results"), "--trust-dir", p("alice-trust"), "-o", "json"), &o)
	if o.ID != "t9" || !o.Complete || len(o.Stops) != 1 || o.ResultsDir != p("results") || o.Approval != dg.Digest || !strings.HasPrefix(o.TrainDigest, "sha256:") {
		t.Fatalf("train open -o json: %+v", o)
	}
	if _, err := os.Stat(p("results/aggregate.json")); err != nil {
		t.Fatal(err)
	}
}

// TestManifestInspectOutput: -o json is the default and parses; -o text is
// a summary; anything else is a usage error before the file is read.
func TestManifestInspectOutput(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.json")
	raw := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},` +
		`"layers":[]}`
	os.WriteFile(f, []byte(raw), 0o644)
	for _, args := range [][]string{{"manifest", "inspect", f}, {"manifest", "inspect", f, "-o", "json"}} {
		c, out, stderr := execRoot(t, "", args...)
		var s struct {
			Kind   string `json:"kind"`
			Digest string `json:"digest"`
		}
		if c != 0 || json.Unmarshal([]byte(out), &s) != nil || s.Kind == "" || !strings.HasPrefix(s.Digest, "sha256:") {
			t.Fatalf("%v: %d %q %q", args, c, out, stderr)
		}
	}
	if c, out, _ := execRoot(t, "", "manifest", "inspect", f, "-o", "text"); c != 0 || !strings.Contains(out, "config     sha256:44136fa3") {
		t.Fatalf("-o text: %d %q", c, out)
	}
	if c, _, stderr := execRoot(t, "", "manifest", "inspect", "/nonexistent.json", "-o", "xml"); c != 2 || !strings.Contains(stderr, "--output") {
		t.Fatalf("-o xml: %d %q", c, stderr)
	}
}

// TestJSONFieldsDocumented: every field name of the -o json outputs is
// listed in docs/cli.md, so a renamed field cannot slip past the docs.
func TestJSONFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{TrainFacts{}, TrainStop{}, OpenedTrain{}, KeyIDs{}, TrainDigest{}, VersionInfo{}, TUFTarget{}, TUFExpiration{}, TUFRepo{}, TUFBlobSize{},
		station.Stop{}, station.Event{}, station.ResultFile{}, station.Status{}, station.Retrying{}} {
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("%s.%s: field %q not in docs/cli.md", rt.Name(), rt.Field(i).Name, name)
			}
		}
	}
}

// TestTrainShowPHTAndMalformed: a pht-v2 train built into oci:DIR:TAG shows
// its config as text and as {"protocol":"pht-v2",...}; a v1 envelope that
// does not parse is one error line, exit 1.
func TestTrainShowPHTAndMalformed(t *testing.T) {
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	ok := func(args ...string) string {
		t.Helper()
		c, out, stderr := execRoot(t, "", args...)
		if c != 0 {
			t.Fatalf("%v: exit %d: %s", args, c, stderr)
		}
		return out
	}
	os.MkdirAll(p("code"), 0o755)
	os.WriteFile(p("code/entrypoint.py"), []byte("print('hi')\n"), 0o644)
	ok("train", "keygen", p("s1"))
	ok("train", "keygen", p("user"))
	loc := "oci:" + p("layout") + ":t1"
	ok("train", "build", "--dir", p("code"), "--route", "s1="+p("s1.pub.pem"), "--creator-key", p("user.pem"), "--train-id", "t1", "--out", loc)
	if text := ok("train", "show", loc); !strings.Contains(text, `"@id": "t1"`) {
		t.Fatalf("pht-v2 text: %s", text)
	}
	var j struct {
		Protocol string          `json:"protocol"`
		ID       string          `json:"id"`
		Config   json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal([]byte(ok("train", "show", loc, "-o", "json")), &j); err != nil || j.Protocol != "pht-v2" || j.ID != "t1" || !strings.Contains(string(j.Config), `"route"`) {
		t.Fatalf("pht-v2 json: %+v %v", j, err)
	}

	// A config that claims trainyard/v1 but is no envelope.
	img, err := mutate.Append(train.ScratchImage(), mutate.Addendum{Layer: tarLayer(t, map[string]string{
		"opt/train_config.json": `{"protocol":"trainyard/v1","train":{"payload":"!!","payloadType":"x","signatures":[]},"stops":[]}`})})
	if err != nil {
		t.Fatal(err)
	}
	if err := train.Save(context.Background(), img, "oci:"+p("bad"), nil); err != nil {
		t.Fatal(err)
	}
	c, _, stderr := execRoot(t, "", "train", "show", "oci:"+p("bad"))
	if c != 1 || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("malformed envelope: exit %d %q", c, stderr)
	}
}

func tarLayer(t *testing.T, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}
