package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/tuf/keys"
)

func TestTUFCommands(t *testing.T) {
	kdftest.Fast()
	srv := testutil.Registry(t)
	defer srv.Close()
	dir := t.TempDir()
	t.Setenv("TRAINYARD_TUF_HOST", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("TRAINYARD_TUF_INSECURE", "1")
	t.Setenv("TRAINYARD_TUF_REPOSITORIES_ROOT", filepath.Join(dir, "state"))
	for _, r := range []string{"ROOT", "TARGETS", "SNAPSHOT", "TIMESTAMP"} {
		t.Setenv("TRAINYARD_TUF_"+r+"_KEY_PASSWORD", "pw")
	}
	t.Setenv("TRAINYARD_TUF_TIMESTAMP_LIFETIME", "2h")
	file := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(file, []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	tuf := func(stdin string, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(append([]string{"tuf"}, args...), strings.NewReader(stdin), &out, &errb)
		return out.String(), errb.String(), code
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, errs, code := tuf("", args...)
		if code != 0 {
			t.Fatalf("tuf %v: exit %d: %s", args, code, errs)
		}
		return out
	}
	mustRun("create-root-key", "demo")
	mustRun("create-metadata-keys", "demo")
	mustRun("create-metadata", "demo")
	mustRun("push-target", "demo", "a.txt", file)
	mustRun("push-target", "demo", "b.txt", "@a.txt")
	mustRun("push-metadata", "demo")
	if got := mustRun("list-master-targets", "demo"); got != "a.txt\nb.txt\n" {
		t.Fatalf("list-master-targets: %q", got)
	}
	pubs, _ := filepath.Glob(filepath.Join(dir, "state", "*", "master", "keys", "root", "*.pub"))
	pub, err := os.ReadFile(pubs[0])
	if err != nil {
		t.Fatal(err)
	}
	out, errs, code := tuf(string(pub), "pull-metadata", "demo", "-")
	if code != 0 || out != "a.txt\nb.txt\n" {
		t.Fatalf("pull-metadata: %d %q %s", code, out, errs)
	}
	if got := mustRun("pull-target", "demo", "b.txt"); got != "payload" {
		t.Fatalf("pull-target: %q", got)
	}
	if got := mustRun("blob-sizes", "demo", "a.txt"); got != "7\n" {
		t.Fatalf("blob-sizes: %q", got)
	}
	mustRun("check-target", "demo", "a.txt", file)
	if _, _, code := tuf("", "check-target", "demo", "a.txt", filepath.Join(dir, "state", "missing")); code == 0 {
		t.Fatal("check-target accepted a missing file")
	}
	if got := mustRun("get-copy-expirations", "demo"); !strings.Contains(got, "timestamp: ") {
		t.Fatalf("expirations: %q", got)
	}
	mustRun("refresh-timestamp", "demo")
	mustRun("pull-metadata", "demo")
	if got := mustRun("list-repos"); got != "demo\n" {
		t.Fatalf("list-repos: %q", got)
	}
	tufJSON(t, mustRun)
	// a multi-part target: two files and a part reused from a.txt
	p1, p3 := filepath.Join(dir, "p1"), filepath.Join(dir, "p3")
	if err := os.WriteFile(p1, []byte("head-"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p3, []byte("-tail"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun("push-target", "demo", "m.bin", p1, "@a.txt", p3)
	mustRun("push-metadata", "demo")
	if got := mustRun("pull-metadata", "demo"); got != "m.bin\n" {
		t.Fatalf("pull-metadata after multi-part push: %q", got)
	}
	if got := mustRun("pull-target", "demo", "m.bin", "a.txt"); got != "head-payload-tailpayload" {
		t.Fatalf("pull-target multi-part: %q", got)
	}
	outFile := filepath.Join(dir, "m.out")
	mustRun("pull-target", "demo", "m.bin", "-o", outFile)
	if b, _ := os.ReadFile(outFile); string(b) != "head-payload-tail" {
		t.Fatalf("pull-target -o: %q", b)
	}
	hexOf := func(s string) string {
		tf, _ := metadata.TargetFile().FromBytes("x", []byte(s), "sha256")
		return tf.Hashes["sha256"].String()
	}
	t.Setenv("TRAINYARD_TUF_BLOB_INFO", "1")
	want := ""
	for _, p := range []string{"head-", "payload", "-tail", "payload"} {
		want += "sha256:" + hexOf(p) + " " + strconv.Itoa(len(p)) + "\n" + p
	}
	if got := mustRun("pull-target", "demo", "m.bin", "b.txt"); got != want {
		t.Fatalf("pull-target with blob info: %q, want %q", got, want)
	}
	t.Setenv("TRAINYARD_TUF_BLOB_INFO", "")
	if got := mustRun("blob-sizes", "demo", "m.bin", "a.txt"); got != "5\n7\n5\n7\n" {
		t.Fatalf("blob-sizes multi-part: %q", got)
	}
	mustRun("check-target", "demo", "m.bin", p1, file, p3)
	for _, files := range [][]string{{p3, file, p1}, {p1, file}, {outFile}} {
		if _, errs, code := tuf("", append([]string{"check-target", "demo", "m.bin"}, files...)...); code != 1 || !strings.Contains(errs, "length or hash mismatch") {
			t.Fatalf("check-target %v: exit %d %s", files, code, errs)
		}
	}
	if _, errs, code := tuf("", "check-target", "demo", "a.txt", file, file); code != 1 || !strings.Contains(errs, "length or hash mismatch") {
		t.Fatalf("check-target with two files for a single-part target: exit %d %s", code, errs)
	}
	// usage error and a target that does not exist
	if _, _, code := tuf("", "push-target", "demo"); code != 2 {
		t.Fatalf("usage error exit %d", code)
	}
	if _, errs, code := tuf("", "pull-target", "demo", "nope"); code != 1 || !strings.Contains(errs, "not found") {
		t.Fatalf("missing target: %d %s", code, errs)
	}
}

// TestTUFConformanceCLI drives `tuf client init|refresh|download` against
// an httptest server serving a static TUF repository, as tuf-conformance does.
func TestTUFConformanceCLI(t *testing.T) {
	k, err := keys.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(24 * time.Hour)
	files := map[string][]byte{}
	sign := func(name string, md interface{ ToBytes(bool) ([]byte, error) }, s func() error) {
		if err := s(); err != nil {
			t.Fatal(err)
		}
		b, err := md.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	root := metadata.Root(expires)
	root.Signed.ConsistentSnapshot = true
	for _, r := range []string{"root", "targets", "snapshot", "timestamp"} {
		if err := root.Signed.AddKey(k.Public(), r); err != nil {
			t.Fatal(err)
		}
	}
	sign("/metadata/1.root.json", root, func() error { return keys.SignMetadata(root, k) })
	content := []byte("target bytes")
	tf, err := metadata.TargetFile().FromBytes("dir/t.txt", content, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	files["/targets/dir/"+tf.Hashes["sha256"].String()+".t.txt"] = content
	tg := metadata.Targets(expires)
	tg.Signed.Targets["dir/t.txt"] = tf
	sign("/metadata/1.targets.json", tg, func() error { return keys.SignMetadata(tg, k) })
	sn := metadata.Snapshot(expires)
	sign("/metadata/1.snapshot.json", sn, func() error { return keys.SignMetadata(sn, k) })
	ts := metadata.Timestamp(expires)
	sign("/metadata/timestamp.json", ts, func() error { return keys.SignMetadata(ts, k) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := files[r.URL.Path]; ok {
			w.Write(b)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root.json")
	if err := os.WriteFile(rootFile, files["/metadata/1.root.json"], 0o644); err != nil {
		t.Fatal(err)
	}
	md, td := filepath.Join(dir, "meta"), filepath.Join(dir, "targets")
	cli := func(args ...string) int {
		var out, errb bytes.Buffer
		code := run(append([]string{"tuf", "client", "--metadata-dir", md}, args...), strings.NewReader(""), &out, &errb)
		t.Logf("%v: %d %s", args, code, errb.String())
		return code
	}
	if cli("init", rootFile) != 0 {
		t.Fatal("init failed")
	}
	if cli("--metadata-url", srv.URL+"/metadata", "refresh") != 0 {
		t.Fatal("refresh failed")
	}
	if _, err := os.Stat(filepath.Join(md, "timestamp.json")); err != nil {
		t.Fatal("timestamp.json not stored unversioned")
	}
	if cli("--metadata-url", srv.URL+"/metadata", "--target-name", "dir/t.txt", "--target-base-url", srv.URL+"/targets", "--target-dir", td, "download") != 0 {
		t.Fatal("download failed")
	}
	got, err := os.ReadFile(filepath.Join(td, "dir%2Ft.txt"))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("target %q %v", got, err)
	}
	later := strconv.FormatInt(time.Now().Add(72*time.Hour).Unix(), 10)
	if cli("--metadata-url", srv.URL+"/metadata", "--time", later, "refresh") != 1 {
		t.Fatal("expired metadata accepted with --time in the future")
	}
	t.Setenv("TRAINYARD_TUF_TIME", later)
	if cli("--metadata-url", srv.URL+"/metadata", "refresh") != 1 {
		t.Fatal("expired metadata accepted with TRAINYARD_TUF_TIME in the future")
	}
	// the suite's `faketime` sets FAKETIME, which a Go binary ignores
	// unless it reads it: relative, absolute, and --time wins over it
	t.Setenv("TRAINYARD_TUF_TIME", "")
	for spec, want := range map[string]int{
		"+3d": 1, "+1h": 0, "@" + time.Now().Add(72*time.Hour).Format("2006-01-02 15:04:05"): 1,
		time.Now().Add(time.Hour).Format("2006-01-02 15:04:05"): 0, "next tuesday": 2,
	} {
		t.Setenv("FAKETIME", spec)
		if got := cli("--metadata-url", srv.URL+"/metadata", "refresh"); got != want {
			t.Fatalf("FAKETIME=%q: exit %d, want %d", spec, got, want)
		}
	}
	t.Setenv("FAKETIME", "+3d")
	if cli("--metadata-url", srv.URL+"/metadata", "--time", strconv.FormatInt(time.Now().Unix(), 10), "refresh") != 0 {
		t.Fatal("--time did not override FAKETIME")
	}
	// What the real faketime wrapper puts in FAKETIME (0.9.10 turns an
	// absolute date into an offset in seconds, "-f" passes it on as is).
	if _, err := exec.LookPath("faketime"); err != nil {
		t.Logf("faketime not installed: wrapper formats not checked (%v)", err)
		return
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"-f", "+3d"}, 1},
		{[]string{"-f", "+1h"}, 0},
		{[]string{time.Now().Add(72 * time.Hour).UTC().Format("2006-01-02 15:04:05+00:00")}, 1},
		{[]string{time.Now().Add(time.Hour).UTC().Format("2006-01-02 15:04:05+00:00")}, 0},
	} {
		out, err := exec.Command("faketime", append(tc.args, "sh", "-c", "printf %s \"$FAKETIME\"")...).Output()
		if err != nil {
			t.Fatalf("faketime %v: %v", tc.args, err)
		}
		t.Setenv("FAKETIME", string(out))
		if got := cli("--metadata-url", srv.URL+"/metadata", "refresh"); got != tc.want {
			t.Fatalf("faketime %v (FAKETIME=%q): exit %d, want %d", tc.args, out, got, tc.want)
		}
	}
}

// TestTUFPublishGuard: create-metadata and push-metadata from a state
// that did not publish the live repository (a fresh checkout, a CI job)
// are refused with what to do, and the registry's tags stay as they were;
// pull-master makes a stale state current.
func TestTUFPublishGuard(t *testing.T) {
	kdftest.Fast()
	srv := testutil.Registry(t)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	t.Setenv("TRAINYARD_TUF_HOST", host)
	t.Setenv("TRAINYARD_TUF_INSECURE", "1")
	for _, r := range []string{"ROOT", "TARGETS", "SNAPSHOT", "TIMESTAMP"} {
		t.Setenv("TRAINYARD_TUF_"+r+"_KEY_PASSWORD", "pw")
	}
	file := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(file, []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := func(state string, args ...string) (int, string) {
		code, _, stderr := execRoot(t, "", append([]string{"tuf", "--repositories-root", filepath.Join(dir, state)}, args...)...)
		return code, stderr
	}
	ok := func(state string, args ...string) {
		t.Helper()
		if code, stderr := in(state, args...); code != 0 {
			t.Fatalf("%s %v: exit %d %s", state, args, code, stderr)
		}
	}
	tags := func() string {
		t.Helper()
		resp, err := http.Get(srv.URL + "/v2/live/tags/list")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out strings.Builder
		var list struct{ Tags []string }
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatal(err)
		}
		for _, tag := range list.Tags {
			req, _ := http.NewRequest(http.MethodHead, srv.URL+"/v2/live/manifests/"+tag, nil)
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			out.WriteString(tag + "=" + r.Header.Get("Docker-Content-Digest") + "\n")
		}
		return out.String()
	}
	setup := func(state string) {
		ok(state, "create-root-key", "live")
		ok(state, "create-metadata-keys", "live")
	}
	setup("early")
	ok("early", "create-metadata", "live") // before anything is live
	setup("a")
	ok("a", "create-metadata", "live")
	ok("a", "push-target", "live", "f", file)
	ok("a", "push-metadata", "live")
	before := tags()
	refusedOneLine := func(state string, args ...string) {
		t.Helper()
		code, stderr := in(state, args...)
		if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "pull-master live") || !strings.Contains(stderr, "--force") {
			t.Fatalf("%s %v: exit %d, %q", state, args, code, stderr)
		}
		if after := tags(); after != before {
			t.Fatalf("%s %v changed the registry:\n%s\n%s", state, args, before, after)
		}
	}
	refusedOneLine("early", "push-metadata", "live")
	setup("fresh")
	refusedOneLine("fresh", "create-metadata", "live")

	// a second publisher with a copy of a's state publishes first
	if out, err := exec.Command("cp", "-a", filepath.Join(dir, "a"), filepath.Join(dir, "b")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	ok("b", "push-target", "live", "g", file)
	ok("b", "push-metadata", "live")
	before = tags()
	refusedOneLine("a", "push-metadata", "live")
	refusedOneLine("a", "refresh-timestamp", "live")
	ok("a", "pull-master", "live")
	ok("a", "push-target", "live", "h", file)
	ok("a", "push-metadata", "live")
	code, out, stderr := execRoot(t, "", "tuf", "--repositories-root", filepath.Join(dir, "a"), "list-master-targets", "live")
	if code != 0 || out != "f\ng\nh\n" {
		t.Fatalf("after pull-master: %d %q %s", code, out, stderr)
	}
}

// tufJSON checks -o json of the listing commands on TestTUFCommands's
// repository "demo" (targets a.txt and b.txt, one 7-byte part each).
func tufJSON(t *testing.T, mustRun func(args ...string) string) {
	t.Helper()
	parse := func(v any, args ...string) {
		t.Helper()
		out := mustRun(append(args, "-o", "json")...)
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%v -o json: %v: %q", args, err, out)
		}
	}
	for _, c := range []string{"list-master-targets", "list-copy-targets"} {
		var ts []TUFTarget
		parse(&ts, c, "demo")
		if len(ts) != 2 || ts[0].Name != "a.txt" || ts[1].Name != "b.txt" {
			t.Fatalf("%s -o json: %+v", c, ts)
		}
	}
	for _, c := range []string{"get-master-expirations", "get-copy-expirations"} {
		var es []TUFExpiration
		parse(&es, c, "demo")
		roles := map[string]bool{}
		for _, e := range es {
			if e.Expires.Before(time.Now()) {
				t.Fatalf("%s -o json: %s expires %v, in the past", c, e.Role, e.Expires)
			}
			roles[e.Role] = true
		}
		for _, r := range []string{"root", "targets", "snapshot", "timestamp"} {
			if !roles[r] {
				t.Fatalf("%s -o json: no role %s in %+v", c, r, es)
			}
		}
	}
	var rs []TUFRepo
	parse(&rs, "list-repos")
	if len(rs) != 1 || rs[0].Name != "demo" {
		t.Fatalf("list-repos -o json: %+v", rs)
	}
	var bs []TUFBlobSize
	parse(&bs, "blob-sizes", "demo", "b.txt", "a.txt")
	if len(bs) != 2 || bs[0] != (TUFBlobSize{Target: "b.txt", Part: 0, Length: 7}) || bs[1] != (TUFBlobSize{Target: "a.txt", Part: 0, Length: 7}) {
		t.Fatalf("blob-sizes -o json: %+v", bs)
	}
}

// TestTUFOutputFlagChecked: an unknown -o is a usage error before any work
// (no repository state exists, so work would fail differently).
func TestTUFOutputFlagChecked(t *testing.T) {
	t.Setenv("TRAINYARD_TUF_REPOSITORIES_ROOT", t.TempDir())
	for _, c := range [][]string{{"list-master-targets", "x"}, {"list-copy-targets", "x"}, {"get-master-expirations", "x"},
		{"get-copy-expirations", "x"}, {"list-repos", "127.0.0.1:1"}, {"blob-sizes", "x", "t"}} {
		code, _, stderr := execRoot(t, "", append(append([]string{"tuf"}, c...), "-o", "yaml")...)
		if code != 2 || !strings.Contains(stderr, `--output "yaml"`) {
			t.Errorf("tuf %v -o yaml: exit %d %q", c, code, stderr)
		}
	}
}
