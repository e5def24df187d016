package repo_test

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
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/repo"
)

// A publisher creates keys and signed metadata in its own directory,
// publishes a target to a registry repository, and a client that trusts
// the publisher's root.json downloads and verifies it. A change the
// publisher did not sign is refused.
func Example() {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repository := strings.TrimPrefix(srv.URL, "http://") + "/network/tuf"
	ctx := context.Background()
	rc := registry.NewClient()
	masterDir, _ := os.MkdirTemp("", "master-")
	defer os.RemoveAll(masterDir)
	clientDir, _ := os.MkdirTemp("", "client-")
	defer os.RemoveAll(clientDir)

	// 1. The publisher: one key per top-level role (each encrypted with the
	// role's password), then version 1 of every role.
	pub, err := repo.Open(rc, repository, masterDir,
		repo.WithPasswords(func(role string) ([]byte, error) { return []byte("pw-" + role), nil }))
	if err != nil {
		log.Fatal(err)
	}
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		if _, _, err := pub.CreateKey(role, false); err != nil {
			log.Fatal(err)
		}
	}
	if err := pub.CreateMetadata(ctx, nil); err != nil {
		log.Fatal(err)
	}

	// 2. Stage a target (uploaded at once), then publish: re-sign targets,
	// snapshot, timestamp.
	if err := pub.AddTarget(ctx, "stations/hospital-a.pub", repo.FromBytes([]byte("hospital-a key"))); err != nil {
		log.Fatal(err)
	}
	if err := pub.PushMetadata(ctx); err != nil {
		log.Fatal(err)
	}
	names, _ := pub.ListTargets()
	fmt.Println("published:", names)

	// 3. A client bootstraps from the root.json it got out of band.
	root, err := os.ReadFile(pub.RootPath())
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.Open(rc, repository, clientDir)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Bootstrap(ctx, root); err != nil {
		log.Fatal(err)
	}
	data, err := c.Fetch(ctx, "stations/hospital-a.pub", 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("fetched: %q\n", data)

	// 4. A name that is not a target is an error callers branch on.
	_, err = c.Fetch(ctx, "stations/nobody.pub", 1<<20)
	fmt.Println("unknown target:", errors.Is(err, errdefs.ErrNotFound))
	// Output:
	// published: [stations/hospital-a.pub]
	// fetched: "hospital-a key"
	// unknown target: true
}
