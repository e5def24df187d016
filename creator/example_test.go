package creator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/train"
)

// A creator builds a train for one station: the code is approved first
// (approvers sign ApprovalDigest), then Create seals it into an image that
// is ready to push to the station's inbox.
func ExampleCreate() {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "creator-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(work)

	// The trust directory (TUF in production, trust.Store) knows the
	// creator and the station.
	alice, _ := hardened.GenerateKey()
	hospital, _ := hardened.GenerateKey()
	trust := hardened.NewMemoryTrust()
	trust.AddUser("alice", alice.Public())
	trust.AddStation("hospital", hospital.Public())

	code := filepath.Join(work, "code")
	if err := os.MkdirAll(code, 0o755); err != nil {
		fmt.Println(err)
		return
	}
	if err := os.WriteFile(filepath.Join(code, "count.sh"), []byte("#!/bin/sh\nwc -l /opt/pht_data/* > /opt/pht_results/count\n"), 0o755); err != nil {
		fmt.Println(err)
		return
	}
	exec := hardened.ExecConfig{Entrypoint: []string{"/opt/pht_train/count.sh"}, WorkingDir: "/opt/pht_train"}
	base := train.ScratchImage()

	// The ethics board approves exactly this code, exec config and base.
	digest, err := creator.ApprovalDigest(ctx, code, exec, base)
	if err != nil {
		fmt.Println(err)
		return
	}
	trust.Approve(hardened.Approval{Digest: digest, Approvers: []string{"ethics-board"}})

	built, err := creator.Create(ctx, creator.Options{
		Creator: hardened.Party{ID: "alice", Key: alice, Trust: trust},
		Spec:    hardened.Spec{ID: "study-1", Route: []string{"hospital"}, Exec: exec},
		CodeDir: code,
		Base:    base,
		TempDir: work,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer built.Release() // after the image is pushed
	cfg, err := built.Image.ConfigFile()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("train", built.Verified.Statement.ID, "goes to", built.Verified.Next())
	fmt.Println("entrypoint", cfg.Config.Entrypoint)

	// Options without a key, code or trust are refused before any work.
	_, err = creator.Create(ctx, creator.Options{Base: base})
	fmt.Println(err)
	// Output:
	// train study-1 goes to hospital
	// entrypoint [/opt/pht_train/count.sh]
	// creator: incomplete options: Creator.ID, Creator.Key, Creator.Trust, CodeDir not set
}
