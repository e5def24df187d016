package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/ocistore"
	"github.com/trainyard/trainyard/tuf/repo"
)

// Publish a small trust document and fetch it verified, as the trust
// directory does.
func Example() {
	ctx := context.Background()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	store, _ := ocistore.New(registry.NewClient(registry.WithInsecure(true)), strings.TrimPrefix(srv.URL, "http://")+"/trust/dir")
	masterDir, _ := os.MkdirTemp("", "master")
	copyDir, _ := os.MkdirTemp("", "copy")
	defer os.RemoveAll(masterDir)
	defer os.RemoveAll(copyDir)

	pub := repo.New(store, masterDir, repo.WithPasswords(func(role string) ([]byte, error) { return []byte("secret"), nil }))
	for _, role := range []string{repo.Root, repo.Targets, repo.Snapshot, repo.Timestamp} {
		pub.CreateKey(role, false)
	}
	pub.CreateMetadata(ctx, nil)
	pub.AddTarget(ctx, "stations.json", repo.FromBytes([]byte(`{"stations":["a","b"]}`)))
	if err := pub.PushMetadata(ctx); err != nil {
		fmt.Println(err)
		return
	}

	root, _ := os.ReadFile(pub.RootPath())
	c := client.New(store, copyDir)
	changed, _ := c.Bootstrap(ctx, root)
	fmt.Println("new:", changed)
	doc, err := c.Fetch(ctx, "stations.json", 1<<20)
	fmt.Println(string(doc), err)

	// replace the document; the client sees the new signed version
	pub.AddTarget(ctx, "stations.json", repo.FromBytes([]byte(`{"stations":["a","b","c"]}`)))
	pub.PushMetadata(ctx)
	doc, err = c.Fetch(ctx, "stations.json", 1<<20)
	fmt.Println(string(doc), err)
	// Output:
	// new: [stations.json]
	// {"stations":["a","b"]} <nil>
	// {"stations":["a","b","c"]} <nil>
}
