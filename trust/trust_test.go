package trust_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/trainyard/trainyard/internal/kdftest"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf/repo"
)

func init() { kdftest.Fast() } // fast KDF in tests only

type fixture struct {
	reqs  *atomic.Int64 // registry requests so far
	ctx   context.Context
	rc    *registry.Client
	repo  string
	admin *trust.Admin
	store *trust.Store
	alice *hardened.PrivateKey
	st1   *hardened.PrivateKey
}

func setup(t *testing.T, opts ...trust.StoreOption) *fixture {
	return setupWith(t, nil, opts...)
}

func setupWith(t *testing.T, initOpts []trust.InitOption, opts ...trust.StoreOption) *fixture {
	t.Helper()
	reg := testutil.QuietRegistry()
	reqs := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f := &fixture{reqs: reqs, ctx: context.Background(), rc: registry.NewClient(registry.WithInsecure(true)),
		repo: strings.TrimPrefix(srv.URL, "http://") + "/trust/directory"}
	pub, err := repo.Open(f.rc, f.repo, t.TempDir(), repo.WithPasswords(func(string) ([]byte, error) { return []byte("pw"), nil }))
	if err != nil {
		t.Fatal(err)
	}
	if f.admin, err = trust.Init(f.ctx, pub, initOpts...); err != nil {
		t.Fatal(err)
	}
	f.alice, _ = hardened.GenerateKey()
	f.st1, _ = hardened.GenerateKey()
	must(t, f.admin.AddUser(f.ctx, "alice", f.alice.Public()))
	must(t, f.admin.AddStation(f.ctx, "st1", f.st1.Public()))
	must(t, f.admin.Publish(f.ctx))
	root, err := os.ReadFile(pub.RootPath())
	must(t, err)
	f.store, err = trust.OpenStore(f.ctx, f.rc, f.repo, t.TempDir(), root, opts...)
	must(t, err)
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestKeysComeFromTheDirectory(t *testing.T) {
	f := setup(t)
	k, err := f.store.StationKey(f.ctx, "st1")
	must(t, err)
	if !k.Equal(f.st1.Public()) {
		t.Fatal("station key differs from the one published")
	}
	if _, err := f.store.StationKey(f.ctx, "st2"); !errors.Is(err, hardened.ErrUntrusted) {
		t.Fatalf("unknown station: %v", err)
	}
	if _, err := f.store.UserKey(f.ctx, "../st1"); !errors.Is(err, hardened.ErrUntrusted) {
		t.Fatalf("path-like id: %v", err)
	}
	// A user is not a station: the namespaces are separate.
	if _, err := f.store.StationKey(f.ctx, "alice"); !errors.Is(err, hardened.ErrUntrusted) {
		t.Fatalf("user used as station: %v", err)
	}
}

func TestApprovals(t *testing.T) {
	f := setup(t)
	if _, err := f.store.TrainApproval(f.ctx, digest); !errors.Is(err, hardened.ErrUnapproved) {
		t.Fatalf("unapproved train: %v", err)
	}
	d := &trust.ApprovalDoc{Digest: digest, Stations: []string{"st1"}}
	d.Sign("alice", f.alice)
	must(t, f.admin.Approve(f.ctx, d))
	must(t, f.admin.Publish(f.ctx))
	a, err := f.store.TrainApproval(f.ctx, digest)
	must(t, err)
	if len(a.Approvers) != 1 || a.Approvers[0] != "alice" || len(a.Stations) != 1 {
		t.Fatalf("approval = %+v", a)
	}
	// Two approvers needed: one is not enough.
	strict := trust.NewStore(f.store.Client(), trust.WithApprovalThreshold(2))
	if _, err := strict.TrainApproval(f.ctx, digest); !errors.Is(err, hardened.ErrUnapproved) {
		t.Fatalf("threshold 2 met by one signature: %v", err)
	}
}

// TestApprovalTampering: a forged approval is refused by the admin before
// it is staged, and, should one reach the directory anyway (staged around
// the admin's checks), by every station.
func TestApprovalTampering(t *testing.T) {
	f := setup(t, trust.WithMaxAge(0)) // every lookup sees the latest publish
	mallory, _ := hardened.GenerateKey()
	cases := map[string]func(d *trust.ApprovalDoc){
		// Signed by a key that is not alice's.
		"forged signature": func(d *trust.ApprovalDoc) { d.Sign("alice", mallory) },
		// Signed for one station, widened to all after signing.
		"widened stations": func(d *trust.ApprovalDoc) { d.Sign("alice", f.alice); d.Stations = nil },
		// Signed with a one-day expiry, extended after signing.
		"extended expiry": func(d *trust.ApprovalDoc) {
			d.Expires = time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
			d.Sign("alice", f.alice)
			d.Expires = time.Now().Add(1000 * time.Hour).UTC().Format(time.RFC3339)
		},
		// Signed by someone the directory does not know.
		"unknown approver": func(d *trust.ApprovalDoc) { d.Sign("mallory", mallory) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			d := &trust.ApprovalDoc{Digest: digest, Stations: []string{"st1"}}
			mutate(d)
			if err := f.admin.Approve(f.ctx, d); !errors.Is(err, trust.ErrBadApproval) {
				t.Fatalf("admin staged it: %v", err)
			}
			b, err := json.Marshal(d)
			must(t, err)
			must(t, f.admin.Publisher().AddTarget(f.ctx, trust.ApprovalTarget(digest), repo.FromBytes(b)))
			must(t, f.admin.Publish(f.ctx))
			if _, err := f.store.TrainApproval(f.ctx, digest); !errors.Is(err, hardened.ErrUnapproved) {
				t.Fatalf("got %v, want ErrUnapproved", err)
			}
		})
	}
	if err := f.admin.Approve(f.ctx, &trust.ApprovalDoc{Digest: digest}); !errors.Is(err, trust.ErrBadApproval) {
		t.Fatalf("unsigned approval staged: %v", err)
	}
}

// TestStoreMaxAge shows the store's freshness rule: within the max age a
// lookup costs no registry request; after it, the directory is read again
// and a replaced key is seen.
func TestStoreMaxAge(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	f := setup(t, trust.WithStoreClock(func() time.Time { return now }))
	if _, err := f.store.StationKey(f.ctx, "st1"); err != nil {
		t.Fatal(err)
	}
	before := f.reqs.Load()
	for i := 0; i < 5; i++ {
		k, err := f.store.StationKey(f.ctx, "st1")
		if err != nil || !k.Equal(f.st1.Public()) {
			t.Fatalf("cached lookup: %v", err)
		}
	}
	if n := f.reqs.Load() - before; n != 0 {
		t.Fatalf("%d registry requests within the max age", n)
	}
	// The station's key is replaced; once the max age has passed, the
	// store must answer with the new key.
	st1b, _ := hardened.GenerateKey()
	must(t, f.admin.ReplaceStation(f.ctx, "st1", st1b.Public()))
	must(t, f.admin.Publish(f.ctx))
	now = now.Add(trust.DefaultMaxAge)
	k, err := f.store.StationKey(f.ctx, "st1")
	must(t, err)
	if !k.Equal(st1b.Public()) {
		t.Fatal("old key served after the max age")
	}
	if _, err := f.store.StationKey(f.ctx, "nobody"); !errors.Is(err, hardened.ErrUntrusted) {
		t.Fatalf("unknown station: %v", err)
	}
}

func FuzzParseApproval(f *testing.F) {
	f.Add([]byte(`{"digest":"` + digest + `","stations":["a"],"signatures":[{"user":"u","sig":"AA=="}]}`))
	f.Add([]byte(`{"digest":"sha256:x"}`))
	f.Add([]byte(`{}{}`))
	f.Add([]byte(`{"digest":"` + digest + `","label":"study\n42","expires":"2030-01-01T00:00:00Z","signatures":[{"user":"u","comment":"ok","sig":"AA=="}]}`))
	f.Add([]byte(`{"digest":"` + digest + `","expires":"soon","signatures":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := trust.ParseApproval(b)
		if err == nil && (d == nil || !strings.HasPrefix(d.Digest, "sha256:")) {
			t.Fatal("accepted a document without a digest")
		}
		if err == nil && (strings.ContainsAny(d.Label, "\n\r") || (d.Expires != "" && d.ExpiresAt().IsZero())) {
			t.Fatalf("accepted label %q / expires %q", d.Label, d.Expires)
		}
	})
}

func FuzzParseSettings(f *testing.F) {
	f.Add([]byte(`{"approval_threshold":2}`))
	f.Add([]byte(`{"approval_threshold":-1}`))
	f.Add([]byte(`{"approval_threshold":1}{}`))
	f.Add([]byte(`{"other":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := trust.ParseSettings(b)
		if err == nil && (s.ApprovalThreshold < 0 || s.ApprovalThreshold > 1000) {
			t.Fatalf("accepted threshold %d", s.ApprovalThreshold)
		}
	})
}
