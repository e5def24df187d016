package trust_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/repo"
)

func init() { keys.ScryptN = 1 << 10 } // fast KDF in tests only

type fixture struct {
	ctx   context.Context
	rc    *registry.Client
	repo  string
	admin *trust.Admin
	store *trust.Store
	alice *hardened.PrivateKey
	st1   *hardened.PrivateKey
}

func setup(t *testing.T) *fixture {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	f := &fixture{ctx: context.Background(), rc: registry.NewClient(registry.WithInsecure(true)),
		repo: strings.TrimPrefix(srv.URL, "http://") + "/trust/directory"}
	pub, err := repo.Open(f.rc, f.repo, t.TempDir(), repo.WithPasswords(func(string) ([]byte, error) { return []byte("pw"), nil }))
	if err != nil {
		t.Fatal(err)
	}
	if f.admin, err = trust.Init(f.ctx, pub); err != nil {
		t.Fatal(err)
	}
	f.alice, _ = hardened.GenerateKey()
	f.st1, _ = hardened.GenerateKey()
	must(t, f.admin.AddUser(f.ctx, "alice", f.alice.Public()))
	must(t, f.admin.AddStation(f.ctx, "st1", f.st1.Public()))
	must(t, f.admin.Publish(f.ctx))
	root, err := os.ReadFile(pub.RootPath())
	must(t, err)
	f.store, err = trust.OpenStore(f.ctx, f.rc, f.repo, t.TempDir(), root)
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

func TestApprovalTampering(t *testing.T) {
	f := setup(t)
	mallory, _ := hardened.GenerateKey()
	cases := map[string]func(d *trust.ApprovalDoc){
		// Signed by a key that is not alice's.
		"forged signature": func(d *trust.ApprovalDoc) { d.Sign("alice", mallory) },
		// Signed for one station, widened to all after signing.
		"widened stations": func(d *trust.ApprovalDoc) { d.Sign("alice", f.alice); d.Stations = nil },
		// Signed by someone the directory does not know.
		"unknown approver": func(d *trust.ApprovalDoc) { d.Sign("mallory", mallory) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			d := &trust.ApprovalDoc{Digest: digest, Stations: []string{"st1"}}
			mutate(d)
			must(t, f.admin.Approve(f.ctx, d))
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

func FuzzParseApproval(f *testing.F) {
	f.Add([]byte(`{"digest":"` + digest + `","stations":["a"],"signatures":[{"user":"u","sig":"AA=="}]}`))
	f.Add([]byte(`{"digest":"sha256:x"}`))
	f.Add([]byte(`{}{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := trust.ParseApproval(b)
		if err == nil && (d == nil || !strings.HasPrefix(d.Digest, "sha256:")) {
			t.Fatal("accepted a document without a digest")
		}
	})
}
