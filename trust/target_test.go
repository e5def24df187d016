package trust_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/errdefs"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf/repo"
)

// TestParseTarget: every name the directory writes parses back to its kind
// and id; anything else, invalid ids and digests among them, is refused.
func TestParseTarget(t *testing.T) {
	hexd := strings.TrimPrefix(digest, "sha256:")
	for name, want := range map[string][2]string{
		trust.StationTarget("st-1.a_b"): {trust.KindStation, "st-1.a_b"},
		trust.UserTarget("alice"):       {trust.KindUser, "alice"},
		trust.ApprovalTarget(digest):    {trust.KindApproval, digest},
		trust.SettingsTarget:            {trust.KindSettings, ""},
	} {
		kind, id, err := trust.ParseTarget(name)
		if err != nil || kind != want[0] || id != want[1] {
			t.Fatalf("ParseTarget(%q) = %q, %q, %v; want %v", name, kind, id, err, want)
		}
	}
	for _, bad := range []string{
		"", "stations", "stations/", "stations/.pem", "stations/a.json", "stations/a b.pem", "stations/../x.pem",
		"stations/a/b.pem", "users/alice.PEM", "Stations/a.pem", "other/a.pem", "a.pem",
		"approvals/" + hexd, "approvals/" + hexd[:63] + ".json", "approvals/" + strings.ToUpper(hexd) + ".json",
		"approvals/" + hexd[:63] + "g.json", "approvals/sha256:" + hexd + ".json", "directory/settings.json.bak",
		"stations/" + strings.Repeat("a", 129) + ".pem",
	} {
		if kind, id, err := trust.ParseTarget(bad); !errors.Is(err, trust.ErrNotDirectoryTarget) || !errors.Is(err, errdefs.ErrMalformed) || kind != "" || id != "" {
			t.Fatalf("ParseTarget(%q) = %q, %q, %v", bad, kind, id, err)
		}
	}
}

// FuzzParseTarget: a name that parses is exactly the name its kind and id
// build, so no two names mean the same entry.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{trust.StationTarget("a"), trust.UserTarget("b"), trust.ApprovalTarget(digest),
		trust.SettingsTarget, "stations/a/b.pem", "approvals/x.json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		kind, id, err := trust.ParseTarget(name)
		if err != nil {
			return
		}
		var again string
		switch kind {
		case trust.KindStation:
			again = trust.StationTarget(id)
		case trust.KindUser:
			again = trust.UserTarget(id)
		case trust.KindApproval:
			again = trust.ApprovalTarget(id)
		case trust.KindSettings:
			again = trust.SettingsTarget
		default:
			t.Fatalf("kind %q", kind)
		}
		if again != name {
			t.Fatalf("%q parses as %s %q, which names %q", name, kind, id, again)
		}
		if kind != trust.KindSettings && kind != trust.KindApproval && trust.ValidID(id) != nil {
			t.Fatalf("%q: invalid id %q accepted", name, id)
		}
	})
}

// TestList: the listing names the stations, users and approvals published,
// describes each approval, and leaves out targets that are not the
// directory's.
func TestList(t *testing.T) {
	f := setup(t)
	d := &trust.ApprovalDoc{Digest: digest, Stations: []string{"st1"}, Label: "study 1"}
	d.Sign("alice", f.alice)
	must(t, f.admin.Approve(f.ctx, d))
	must(t, f.admin.Publisher().AddTarget(f.ctx, "stations/stray.txt", repo.FromBytes([]byte("not a key"))))
	must(t, f.admin.Publish(f.ctx))
	l, err := f.store.List(f.ctx)
	must(t, err)
	got := fmt.Sprintf("%v %v %d", l.Stations, l.Users, l.ApprovalThreshold)
	if got != "[st1] [alice] 1" {
		t.Fatalf("listing %s", got)
	}
	if len(l.Approvals) != 1 {
		t.Fatalf("approvals %+v", l.Approvals)
	}
	a := l.Approvals[0]
	if a.Digest != digest || a.Label != "study 1" || !a.Valid || fmt.Sprint(a.Approvers) != "[alice]" {
		t.Fatalf("approval %+v", a)
	}
}
