package trust_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/trainyard/trainyard/errdefs"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/trust"
	"github.com/trainyard/trainyard/tuf/repo"
)

// The network's administrator creates the trust directory, registers a
// user and a station, and publishes. The user approves a train; the
// station, trusting only the directory's root.json, reads the station and
// user keys and the approval from it.
func Example() {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repository := strings.TrimPrefix(srv.URL, "http://") + "/network/trust"
	ctx := context.Background()
	rc := registry.NewClient()
	adminDir, _ := os.MkdirTemp("", "admin-")
	defer os.RemoveAll(adminDir)
	stationDir, _ := os.MkdirTemp("", "station-")
	defer os.RemoveAll(stationDir)

	// 1. The administrator: a TUF publisher for the directory, then Init
	// (keys, metadata, settings) and the participants.
	pub, err := repo.Open(rc, repository, adminDir,
		repo.WithPasswords(func(role string) ([]byte, error) { return []byte("pw-" + role), nil }))
	if err != nil {
		log.Fatal(err)
	}
	admin, err := trust.Init(ctx, pub)
	if err != nil {
		log.Fatal(err)
	}
	alice, _ := hardened.GenerateKey()
	hospital, _ := hardened.GenerateKey()
	if err := admin.AddUser(ctx, "alice", alice.Public()); err != nil {
		log.Fatal(err)
	}
	if err := admin.AddStation(ctx, "hospital-a", hospital.Public()); err != nil {
		log.Fatal(err)
	}

	// 2. alice approves one train definition for hospital-a
	// (the digest is hardened.ApprovalDigest of its code and exec config).
	digest := "sha256:" + strings.Repeat("ab", 32)
	approval := &trust.ApprovalDoc{Digest: digest, Stations: []string{"hospital-a"}, Label: "study 42"}
	approval.Sign("alice", alice)
	if err := admin.Approve(ctx, approval); err != nil {
		log.Fatal(err)
	}
	if err := admin.Publish(ctx); err != nil {
		log.Fatal(err)
	}

	// 3. The station: a Store that trusts the directory's root.json only.
	root, err := os.ReadFile(pub.RootPath())
	if err != nil {
		log.Fatal(err)
	}
	store, err := trust.OpenStore(ctx, rc, repository, stationDir, root)
	if err != nil {
		log.Fatal(err)
	}
	k, err := store.StationKey(ctx, "hospital-a")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("station key is the registered one:", k.Equal(hospital.Public()))
	a, err := store.TrainApproval(ctx, digest)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved by:", a.Approvers, "for:", a.Stations)

	// 4. Unknown code is not approved; an unknown station is not listed.
	_, err = store.TrainApproval(ctx, "sha256:"+strings.Repeat("cd", 32))
	fmt.Println("other code:", errors.Is(err, errdefs.ErrUnapproved))
	_, err = store.StationKey(ctx, "lab-z")
	fmt.Println("unknown station:", errors.Is(err, errdefs.ErrUntrusted))
	// Output:
	// station key is the registered one: true
	// approved by: [alice] for: [hospital-a]
	// other code: true
	// unknown station: true
}
