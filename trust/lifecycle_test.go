package trust_test

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf"
	tufclient "github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/repo"
)

// approverDoc is what an approver produces alone (trust approve-train
// --out): terms plus their own signature, no admin key involved.
func approverDoc(user, comment string, key *hardened.PrivateKey, expires string) *trust.ApprovalDoc {
	d := &trust.ApprovalDoc{Digest: digest, Stations: []string{"st1"}, Label: "study 42", Expires: expires}
	d.SignWithComment(user, comment, key)
	return d
}

// TestDetachedApprovalsThreshold: threshold 2; two approvers sign
// separately; the admin merges their documents; one signature is not
// enough, two are; a wrong-key or unknown signer is refused without
// touching the existing approval.
func TestDetachedApprovalsThreshold(t *testing.T) {
	f := setupWith(t, []trust.InitOption{trust.WithInitApprovalThreshold(2)}, trust.WithMaxAge(0))
	bob, _ := hardened.GenerateKey()
	must(t, f.admin.AddUser(f.ctx, "bob", bob.Public()))
	must(t, f.admin.Publish(f.ctx))

	exp := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	must(t, f.admin.Approve(f.ctx, approverDoc("alice", "reviewed the code", f.alice, exp)))
	must(t, f.admin.Publish(f.ctx))
	if _, err := f.store.TrainApproval(f.ctx, digest); !errors.Is(err, hardened.ErrUnapproved) {
		t.Fatalf("1 of 2 accepted: %v", err)
	}
	must(t, f.admin.Approve(f.ctx, approverDoc("bob", "ethics ok", bob, exp)))
	must(t, f.admin.Publish(f.ctx))
	a, err := f.store.TrainApproval(f.ctx, digest)
	must(t, err)
	if !slices.Equal(a.Approvers, []string{"alice", "bob"}) {
		t.Fatalf("approvers %v", a.Approvers)
	}
	info, err := f.store.Approval(f.ctx, digest)
	must(t, err)
	if !info.Valid || info.Label != "study 42" || info.Needed != 2 || info.Expires != exp || len(info.Comments) != 2 {
		t.Fatalf("info %+v", info)
	}

	before, err := f.admin.Publisher().ReadTarget(f.ctx, trust.ApprovalTarget(digest), 1<<20)
	must(t, err)
	// "--user alice --key bob.key": refused, nothing staged
	if err := f.admin.Approve(f.ctx, approverDoc("alice", "", bob, exp)); !errors.Is(err, trust.ErrBadApproval) {
		t.Fatalf("wrong key: %v", err)
	}
	// "--user nobody"
	if err := f.admin.Approve(f.ctx, approverDoc("nobody", "", bob, exp)); !errors.Is(err, trust.ErrBadApproval) {
		t.Fatalf("unknown signer: %v", err)
	}
	// other terms (a longer expiry) do not merge into the approval
	if err := f.admin.Approve(f.ctx, approverDoc("alice", "", f.alice, "")); !errors.Is(err, trust.ErrExists) {
		t.Fatalf("other terms merged: %v", err)
	}
	// a valid re-signature by alice keeps her first one
	must(t, f.admin.Approve(f.ctx, approverDoc("alice", "second thoughts", f.alice, exp)))
	after, err := f.admin.Publisher().ReadTarget(f.ctx, trust.ApprovalTarget(digest), 1<<20)
	must(t, err)
	if !bytes.Equal(before, after) {
		t.Fatalf("approval changed:\n%s\n%s", before, after)
	}
	if _, err := f.store.TrainApproval(f.ctx, digest); err != nil {
		t.Fatalf("approval broken: %v", err)
	}

	// threshold lowered: a 1-of-n directory
	must(t, f.admin.SetApprovalThreshold(f.ctx, 1))
	must(t, f.admin.Publish(f.ctx))
	if n, err := f.store.Threshold(f.ctx); err != nil || n != 1 {
		t.Fatalf("threshold %d %v", n, err)
	}
}

// TestApprovalExpiry: a station refuses an approval once it has expired.
func TestApprovalExpiry(t *testing.T) {
	now := time.Now()
	f := setup(t, trust.WithMaxAge(0), trust.WithStoreClock(func() time.Time { return now }))
	exp := now.Add(time.Hour).UTC().Format(time.RFC3339)
	must(t, f.admin.Approve(f.ctx, approverDoc("alice", "", f.alice, exp)))
	must(t, f.admin.Publish(f.ctx))
	if _, err := f.store.TrainApproval(f.ctx, digest); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	_, err := f.store.TrainApproval(f.ctx, digest)
	if !errors.Is(err, hardened.ErrUnapproved) || !errors.Is(err, trust.ErrApprovalExpired) {
		t.Fatalf("expired approval: %v", err)
	}
}

// TestDirectoryHygiene: remove a station, remove a user (their signature
// stops counting), revoke an approval, rotate a key, and refuse a key
// registered under another id.
func TestDirectoryHygiene(t *testing.T) {
	f := setup(t, trust.WithMaxAge(0))
	must(t, f.admin.Approve(f.ctx, approverDoc("alice", "", f.alice, "")))
	must(t, f.admin.Publish(f.ctx))
	if _, err := f.store.TrainApproval(f.ctx, digest); err != nil {
		t.Fatal(err)
	}

	// duplicate key and duplicate id
	if err := f.admin.AddStation(f.ctx, "hospital-c", f.st1.Public()); !errors.Is(err, trust.ErrDuplicateKey) {
		t.Fatalf("another id's key: %v", err)
	}
	if err := f.admin.AddUser(f.ctx, "carol", f.st1.Public()); !errors.Is(err, trust.ErrDuplicateKey) {
		t.Fatalf("a station's key as a user's: %v", err)
	}
	other, _ := hardened.GenerateKey()
	if err := f.admin.AddStation(f.ctx, "st1", other.Public()); !errors.Is(err, trust.ErrExists) {
		t.Fatalf("existing id re-added: %v", err)
	}
	if err := f.admin.ReplaceStation(f.ctx, "st9", other.Public()); !errors.Is(err, trust.ErrNotListed) {
		t.Fatalf("replace of an unknown id: %v", err)
	}
	if err := f.admin.ReplaceStation(f.ctx, "st1", f.alice.Public()); !errors.Is(err, trust.ErrDuplicateKey) {
		t.Fatalf("rotation to another id's key: %v", err)
	}
	// rotation
	must(t, f.admin.ReplaceStation(f.ctx, "st1", other.Public()))
	must(t, f.admin.Publish(f.ctx))
	k, err := f.store.StationKey(f.ctx, "st1")
	must(t, err)
	if !k.Equal(other.Public()) {
		t.Fatal("rotated key not served")
	}

	// removing alice invalidates her approval signature
	must(t, f.admin.RemoveUser(f.ctx, "alice"))
	must(t, f.admin.Publish(f.ctx))
	if _, err := f.store.TrainApproval(f.ctx, digest); !errors.Is(err, hardened.ErrUnapproved) {
		t.Fatalf("removed user's approval counted: %v", err)
	}
	if _, err := f.store.UserKey(f.ctx, "alice"); !errors.Is(err, hardened.ErrUntrusted) {
		t.Fatalf("removed user: %v", err)
	}
	// revoke and remove station
	must(t, f.admin.RevokeApproval(f.ctx, digest))
	must(t, f.admin.RemoveStation(f.ctx, "st1"))
	must(t, f.admin.Publish(f.ctx))
	if _, err := f.store.TrainApproval(f.ctx, digest); !errors.Is(err, hardened.ErrUnapproved) {
		t.Fatalf("revoked approval: %v", err)
	}
	if _, err := f.store.StationKey(f.ctx, "st1"); !errors.Is(err, hardened.ErrUntrusted) {
		t.Fatalf("removed station: %v", err)
	}
	if err := f.admin.RemoveStation(f.ctx, "st1"); !errors.Is(err, trust.ErrNotListed) {
		t.Fatalf("second removal: %v", err)
	}
}

// TestInitRefusesLiveDirectory: trust init from another admin state
// against a live directory is refused and the directory keeps working.
func TestInitRefusesLiveDirectory(t *testing.T) {
	f := setup(t, trust.WithMaxAge(0))
	other, err := repo.Open(f.rc, f.repo, t.TempDir(), repo.WithPasswords(func(string) ([]byte, error) { return []byte("pw"), nil }))
	must(t, err)
	if _, err := trust.Init(f.ctx, other); !errors.Is(err, tuf.ErrConflict) {
		t.Fatalf("init over a live directory: %v", err)
	}
	if _, err := f.store.StationKey(f.ctx, "st1"); err != nil {
		t.Fatalf("directory broken by the refused init: %v", err)
	}
	// and init in the live admin state itself keeps its keys
	if _, err := trust.Init(f.ctx, f.admin.Publisher()); err == nil {
		t.Fatal("second init in the same admin state")
	}
	must(t, f.admin.AddUser(f.ctx, "dave", mustKey(t).Public()))
	must(t, f.admin.Publish(f.ctx))
}

func mustKey(t *testing.T) *hardened.PrivateKey {
	k, err := hardened.GenerateKey()
	must(t, err)
	return k
}

// TestStationOutlivesTimestamp: a station reading the directory keeps
// working long past the timestamp's lifetime while the admin refreshes,
// and fails loudly (tuf.ErrExpired, not a silent stale answer) when
// nobody does.
func TestStationOutlivesTimestamp(t *testing.T) {
	f := setup(t)
	now := time.Now().UTC()
	clock := func() time.Time { return now }
	// the admin's publisher with a fake clock and a one-hour timestamp
	pub, err := repo.Open(f.rc, f.repo, f.admin.Publisher().Dir(), repo.WithClock(clock),
		repo.WithLifetime(repo.Timestamp, time.Hour), repo.WithPasswords(func(string) ([]byte, error) { return []byte("pw"), nil }))
	must(t, err)
	_, err = pub.Refresh(f.ctx) // nothing due, or the first hour-long timestamp
	must(t, err)
	root, err := os.ReadFile(pub.RootPath())
	must(t, err)
	c, err := tufclient.Open(f.rc, f.repo, t.TempDir(), tufclient.WithClock(clock))
	must(t, err)
	_, err = c.Bootstrap(f.ctx, root)
	must(t, err)
	st := trust.NewStore(c, trust.WithMaxAge(0), trust.WithStoreClock(clock))
	for h := 0; h < 72; h++ { // three days, hourly refresh
		now = now.Add(time.Hour)
		_, err := pub.Refresh(f.ctx)
		must(t, err)
		if _, err := st.StationKey(f.ctx, "st1"); err != nil {
			t.Fatalf("hour %d: %v", h, err)
		}
	}
	now = now.Add(25 * time.Hour) // no refresh for a day
	if _, err := st.StationKey(f.ctx, "st1"); !errors.Is(err, tuf.ErrExpired) {
		t.Fatalf("stale directory answered: %v", err)
	}
}
