package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/station"
)

// TestTrainStatusCLI: a train created through the CLI waits at stop 0;
// after its station pushes a failed notice, `train status` shows the
// outcome and reason (escaped) as text and as JSON; an unknown train and
// missing flags are one error line.
func TestTrainStatusCLI(t *testing.T) {
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
	t.Setenv("TRAINYARD_USER", "")
	ok := func(args ...string) string {
		t.Helper()
		code, out, stderr := execRoot(t, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		return out
	}
	code := p("code")
	os.MkdirAll(code, 0o755)
	os.WriteFile(filepath.Join(code, "run.sh"), []byte("#!/bin/sh\nexit 3\n"), 0o755)
	for _, k := range []string{"alice", "hospital-a", "hospital-b"} {
		ok("keys", "generate", p(k))
	}
	ok("trust", "init")
	ok("trust", "add-user", "alice", "--key", p("alice.pub"))
	ok("trust", "add-station", "hospital-a", "--key", p("hospital-a.pub"))
	ok("trust", "add-station", "hospital-b", "--key", p("hospital-b.pub"))
	exec := []string{"--entrypoint", "/opt/pht_train/run.sh"}
	digest := strings.TrimSpace(ok(append([]string{"train", "digest", "--code", code}, exec...)...))
	ok("trust", "approve-train", "--digest", digest, "--user", "alice", "--key", p("alice.key"))
	reader := []string{"--trust-dir", p("alice-trust"), "--trust-root", p("admin/metadata/root.json")}
	ok(append(append([]string{"train", "create", "--code", code, "--route", "hospital-a,hospital-b", "--creator", "alice", "--id", "t1",
		"--key", p("alice.key")}, exec...), reader...)...)

	status := append([]string{"train", "status", "t1", "--creator", "alice"}, reader...)
	out := ok(status...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "train t1 is in the inbox of station hospital-a (stop 0 of 2)" ||
		!strings.HasPrefix(lines[1], "hospital-a  stop 0  waiting  20") || lines[2] != "hospital-b  stop 1  pending" {
		t.Fatalf("status of a new train:\n%s", out)
	}

	key, err := hardened.LoadPrivateKey(p("hospital-a.key"))
	if err != nil {
		t.Fatal(err)
	}
	box := station.Outbox{Client: registry.NewClient(), Network: station.Network{Prefix: host + "/net"}, User: "alice"}
	if _, err := box.PushNotice(context.Background(), key,
		hardened.Notice{Train: "t1", Station: "hospital-a", Index: 0, Outcome: "failed", Reason: "train exited with status 3\x1b[2J", ExitCode: 3}); err != nil {
		t.Fatal(err)
	}
	out = ok(status...)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "train t1 is in the inbox of station hospital-a (stop 0 of 2)" ||
		!strings.HasPrefix(lines[1], `hospital-a  stop 0  failed  train exited with status 3\x1b[2J (20`) || strings.Contains(out, "\x1b") {
		t.Fatalf("status after a failed stop:\n%s", out)
	}
	var s creator.TrainStatus
	if err := json.Unmarshal([]byte(ok(append(status, "-o", "json")...)), &s); err != nil {
		t.Fatal(err)
	}
	if s.Where != "station:hospital-a" || len(s.Stops) != 2 || s.Stops[0].State != "failed" || s.Stops[0].ExitCode != 3 ||
		s.Stops[1].State != "pending" || strings.Join(s.Route, ",") != "hospital-a,hospital-b" || s.Creator != "alice" {
		t.Fatalf("json status %+v", s)
	}

	// Bob's train t2 in hospital-a's inbox is no train of alice's.
	ok("keys", "generate", p("bob"))
	ok("trust", "add-user", "bob", "--key", p("bob.pub"))
	ok(append(append([]string{"train", "create", "--code", code, "--route", "hospital-a", "--creator", "bob", "--id", "t2",
		"--key", p("bob.key"), "--trust-dir", p("bob-trust")}, exec...), reader[2:]...)...)

	for _, c := range []struct {
		args []string
		exit int
		want string
	}{
		{append([]string{"train", "status", "nope", "--creator", "alice"}, reader...), 1, `train nope not found`},
		{append([]string{"train", "status", "t2", "--creator", "alice"}, reader...), 1, `train t2: no copy found is a verified train of alice, and no station sent a notice: ` + host + `/net/stations/hospital-a:t2 is a train of creator "bob"`},
		{append([]string{"train", "status", "t1"}, reader...), 2, "--creator"},
		{append([]string{"train", "status", "t1", "--creator", "alice", "-o", "yaml"}, reader...), 2, "--output"},
		{[]string{"train", "status", "--creator", "alice"}, 2, "arg"},
	} {
		code, _, stderr := execRoot(t, "", c.args...)
		if code != c.exit || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line with %q", c.args, code, stderr, c.exit, c.want)
		}
	}
}

// TestTrainStatusJSONDocumented: every -o json field of train status is in
// docs/train-status.md.
func TestTrainStatusJSONDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/train-status.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{creator.TrainStatus{}, creator.StopStatus{}} {
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("%s.%s: field %q not in docs/train-status.md", rt.Name(), rt.Field(i).Name, name)
			}
		}
	}
}
