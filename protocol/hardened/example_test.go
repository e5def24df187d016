package hardened_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/trainyard/trainyard/protocol/hardened"
)

// A whole train over one station: create, pre-run, post-run, and the
// creator reading the results. Errors are ignored for brevity.
func Example() {
	ctx := context.Background()
	work, _ := os.MkdirTemp("", "trainyard-example")
	defer os.RemoveAll(work)

	// The trust store (TUF in production) knows the creator and the station.
	alice, _ := hardened.GenerateKey()
	hospital, _ := hardened.GenerateKey()
	trust := hardened.NewMemoryTrust()
	trust.AddUser("alice", alice.Public())
	trust.AddStation("hospital", hospital.Public())

	// Alice creates the train; the code is sealed into codeBlob.
	code := filepath.Join(work, "code")
	os.MkdirAll(code, 0o755)
	os.WriteFile(filepath.Join(code, "count.sh"), []byte("#!/bin/sh\nwc -l /data/*.csv > /opt/pht_results/count\n"), 0o755)
	exec := hardened.ExecConfig{Entrypoint: []string{"/opt/pht_train/count.sh"}}
	var codeBlob bytes.Buffer
	creator := hardened.Party{ID: "alice", Key: alice, Trust: trust}
	env, err := hardened.Create(ctx, creator,
		hardened.Spec{Route: []string{"hospital"}, Exec: exec, Code: os.DirFS(code)}, &codeBlob)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Before approval, no station runs it.
	_, err = hardened.Verify(ctx, trust, env)
	fmt.Println("before approval:", err != nil)

	// Approvers review the code and approve its digest.
	digest, _ := hardened.ApprovalDigestFS(ctx, os.DirFS(code), exec, "")
	trust.Approve(hardened.Approval{Digest: digest, Approvers: []string{"ethics-board"}})

	// The station verifies and decrypts, runs the train, and seals results.
	station := hardened.Party{ID: "hospital", Key: hospital, Trust: trust}
	s, err := hardened.PreRun(ctx, station,
		hardened.Train{Envelope: env, Code: bytes.NewReader(codeBlob.Bytes())},
		hardened.Dirs{Code: filepath.Join(work, "run", "code"), Results: filepath.Join(work, "run", "results")})
	if err != nil {
		fmt.Println(err)
		return
	}
	os.WriteFile(filepath.Join(work, "run", "results", "count"), []byte("42\n"), 0o644)
	var results bytes.Buffer
	env, _ = s.PostRun(ctx, filepath.Join(work, "run", "results"), &results)

	// Alice reads the final results.
	v, err := hardened.OpenResults(ctx, creator, hardened.Train{Envelope: env, Results: &results}, filepath.Join(work, "out"))
	if err != nil {
		fmt.Println(err)
		return
	}
	out, _ := os.ReadFile(filepath.Join(work, "out", "count"))
	fmt.Printf("complete: %v, count: %s", v.Complete(), out)
	// Output:
	// before approval: true
	// complete: true, count: 42
}
