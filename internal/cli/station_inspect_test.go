package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainrun"
)

// inspectDocSection is the part of docs/cli.md about `station inspect`.
func inspectDocSection(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i := strings.Index(s, "\n## station inspect\n")
	if i < 0 {
		t.Fatal("docs/cli.md has no \"## station inspect\" section")
	}
	s = s[i+2:]
	if j := strings.Index(s, "\n#"); j >= 0 {
		s = s[:j]
	}
	return s
}

// jsonNames lists the JSON field names of t and of every struct it holds.
func jsonNames(t reflect.Type, seen map[reflect.Type]bool, out map[string]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] || t.PkgPath() != "github.com/trainyard/trainyard/station" {
		return
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out[name] = t.Name() + "." + f.Name
		jsonNames(f.Type, seen, out)
	}
}

// TestStationInspectJSONDocumented: every field of `station inspect -o json`,
// nested ones too, is named in its section of docs/cli.md.
func TestStationInspectJSONDocumented(t *testing.T) {
	sec := inspectDocSection(t)
	names := map[string]string{}
	jsonNames(reflect.TypeOf(station.Inspection{}), map[reflect.Type]bool{}, names)
	if len(names) < 30 {
		t.Fatalf("only %d fields found: %v", len(names), names)
	}
	for n, field := range names {
		if n == "" || n == "-" {
			t.Errorf("%s has no JSON name", field)
			continue
		}
		if !strings.Contains(sec, "`"+n+"`") {
			t.Errorf("%s: field %q not in the station inspect section of docs/cli.md", field, n)
		}
	}
}

// TestStationInspectCLI: a v1 train inspected through the CLI, as text and
// -o json, at the station it is due at; refusals (not due here, tampered,
// bad flags) as one line with the exit code `station run` has for them.
func TestStationInspectCLI(t *testing.T) {
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
	t.Setenv("TRAINYARD_KEY_PASSWORD", "alice's passphrase")

	code := p("code")
	os.MkdirAll(filepath.Join(code, "lib"), 0o755)
	os.WriteFile(filepath.Join(code, "run.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	os.WriteFile(filepath.Join(code, "lib", "util.py"), []byte("X = 42\n"), 0o644)
	ok := func(args ...string) string {
		t.Helper()
		c, out, stderr := execRoot(t, "", args...)
		if c != 0 {
			t.Fatalf("%v: exit %d: %s", args, c, stderr)
		}
		return out
	}
	ok("keys", "generate", "--encrypt", p("alice"))
	ok("keys", "generate", p("st1"))
	ok("keys", "generate", p("st2"))
	ok("trust", "init")
	ok("trust", "add-user", "alice", "--key", p("alice.pub"))
	ok("trust", "add-station", "st1", "--key", p("st1.pub"))
	ok("trust", "add-station", "st2", "--key", p("st2.pub"))
	exec := []string{"--entrypoint", "/opt/pht_train/run.sh"}
	digest := strings.TrimSpace(ok(append([]string{"train", "digest", "--code", code}, exec...)...))
	root := "--trust-root=" + p("admin") + "/metadata/root.json"
	ok("trust", "approve-train", "--digest", digest, "--user", "alice", "--key", p("alice.key"),
		"--label", "study 42", "--comment", "reviewed run.sh", "--expires", "2099-01-01T00:00:00Z")
	ok(append([]string{"train", "create", "--code", code, "--route", "st1,st2", "--creator", "alice", "--id", "t1",
		"--key", p("alice.key"), "--trust-dir", p("alice-trust"), root}, exec...)...)
	ref := host + "/net/stations/st1:t1"
	at := func(id string) []string {
		return []string{"--id", id, "--key", p(id + ".key"), "--trust-dir", p(id + "-trust"), root}
	}

	text := ok(append([]string{"station", "inspect", ref}, at("st1")...)...)
	t.Logf("station inspect:\n%s", text)
	for _, want := range []string{"train     t1 (trainyard/v1)", "creator   alice, created ", "route       0 st1  → here\n",
		"            1 st2\n", "next      st2\n", "approval  " + digest + " by alice\n", "study 42, for every station of the route, expires 2099-01-01T00:00:00Z\n",
		"alice: reviewed run.sh\n",
		`entrypoint ["/opt/pht_train/run.sh"]`, "base      scratch", "code      2 files, 1 dir, 24 B",
		"0755         17  run.sh", "0644          7  lib/util.py", "results   none (first stop)", "verified  every check of stop 0 at st1 passed"} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}

	var j map[string]any
	out := ok(append([]string{"station", "inspect", ref, "-o", "json"}, at("st1")...)...)
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	var in station.Inspection
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatal(err)
	}
	if in.Creator != "alice" || in.ID != "t1" || len(in.Route) != 2 || !in.Route[0].Here || in.Approval.Digest != digest ||
		len(in.Approval.Approvers) != 1 || in.Approval.Label != "study 42" || in.Approval.Expires != "2099-01-01T00:00:00Z" || in.Code.Files != 2 || in.Code.Entries[2].Path != "run.sh" || !in.Verified {
		t.Fatalf("-o json: %s", out)
	}
	// Every documented top-level field is there, even when empty.
	names := map[string]string{}
	jsonNames(reflect.TypeOf(station.Inspection{}), map[reflect.Type]bool{}, names)
	for _, k := range []string{"verified", "station", "source", "protocol", "id", "train_digest", "created", "creator", "route",
		"index", "next", "next_kind", "approval", "exec", "base", "code", "results", "image"} {
		if _, present := j[k]; !present {
			t.Errorf("-o json lacks %q", k)
		}
	}

	fail := func(want int, says string, args ...string) int {
		t.Helper()
		c, _, stderr := execRoot(t, "", args...)
		if (want >= 0 && c != want) || c == 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, says) {
			t.Fatalf("%v: exit %d, %q; want exit %d saying %q", args, c, stderr, want, says)
		}
		return c
	}
	fail(4, "route violation", append([]string{"station", "inspect", ref}, at("st2")...)...)
	fail(2, "--output", append([]string{"station", "inspect", ref, "-o", "yaml"}, at("st1")...)...)
	fail(2, "--id is required", "station", "inspect", ref, "--key", p("st1.key"))
	fail(2, "accepts 1 arg", append([]string{"station", "inspect"}, at("st1")...)...)
	fail(2, "inspect supports v1 trains", append([]string{"station", "inspect", ref, "--protocol", "pht-v2"}, at("st1")...)...)

	// A copy with another entrypoint: refused by inspect with the code
	// `station run` refuses it with.
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cfg := cf.Config
	cfg.Entrypoint = []string{"/bin/sh", "-c", "cat /opt/pht_data/*"}
	evil, err := mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	evilRef := host + "/net/stations/st1:evil"
	er, _ := name.ParseReference(evilRef)
	if err := remote.Write(er, evil); err != nil {
		t.Fatal(err)
	}
	inspectCode := fail(4, "train content tampered", append([]string{"station", "inspect", evilRef}, at("st1")...)...)
	if err := trainrun.NewRunc().Available(); err != nil {
		testutil.SkipUnlessCI(t, "runc not usable here, station run not compared: %v", err)
	}
	data := p("data")
	os.MkdirAll(data, 0o755)
	fail(inspectCode, "train content tampered", append([]string{"station", "run", evilRef, "--data", data, "--state-dir", p("state")}, at("st1")...)...)
}

// TestStationInspectText: the text block for a train at its last stop,
// with a done stop, approval terms, more entries than it lists and a file
// name that would move the cursor.
func TestStationInspectText(t *testing.T) {
	done := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	in := &station.Inspection{Verified: true, Station: "st2", Protocol: "trainyard/v1", ID: "t1", TrainDigest: "sha256:aa",
		Created: done.Add(-time.Hour), Creator: "alice", Index: 1, Next: "alice", NextKind: "creator", Base: "scratch",
		Route: []station.RouteStop{{Index: 0, Station: "st1", Done: true, Time: &done}, {Index: 1, Station: "st2", Here: true}},
		Approval: station.InspectApproval{Digest: "sha256:bb", Approvers: []string{"board", "dpo"}, Stations: []string{"st1", "st2"},
			Label: "study 42", Expires: "2027-01-01T00:00:00Z", Comments: []string{"dpo: ok"}},
		Exec:    station.InspectExec{Entrypoint: []string{"/opt/pht_train/run"}, Env: []string{"A=1"}},
		Results: &station.InspectBlob{Digest: "sha256:cc", Size: 3 << 20},
		Image:   station.InspectImage{Digest: "sha256:dd", Size: 5 << 30, Layers: 1}}
	in.Code = station.InspectCode{Manifest: "sha256:ee", Files: 30, Bytes: 1536, Sealed: station.InspectBlob{Digest: "sha256:ff", Size: 2048}}
	in.Code.Entries = append(in.Code.Entries, station.CodeEntry{Path: "evil\x1b[2J.sh", Type: "file", Mode: "0755", Size: 1})
	for i := 1; i < 30; i++ {
		in.Code.Entries = append(in.Code.Entries, station.CodeEntry{Path: fmt.Sprintf("f%02d", i), Type: "file", Mode: "0644", Size: 1})
	}
	var b strings.Builder
	if err := writeInspection(&b, in); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{"route     ✓ 0 st1  2026-12-01T10:00:00Z\n", "            1 st2  → here\n",
		"next      alice (the creator: this is the last stop)", "approval  sha256:bb by board, dpo\n",
		"          study 42, only for st1, st2, expires 2027-01-01T00:00:00Z\n", "          dpo: ok\n",
		"code      30 files, 0 dirs, 1.5 KiB", "sealed 2.0 KiB", `"evil\x1b[2J.sh"`, "  f19\n", "... and 10 more (-o json lists up to 10000)",
		"results   sealed 3.0 MiB from stop 0, sha256:cc (not decrypted)", "1 layer (0 base), 5.0 GiB compressed",
		"verified  every check of stop 1 at st2 passed"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "\x1b") || strings.Contains(text, "f20") {
		t.Errorf("escape printed raw or more than %d entries listed:\n%s", inspectTextFiles, text)
	}
}
