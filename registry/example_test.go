package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/trainyard/trainyard/registry"
)

// A client pushes and pulls images; loopback registries are plain HTTP.
// PushIfAbsent never replaces what a tag already holds.
func Example() {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	c := registry.NewClient()
	img, _ := random.Image(1024, 1)
	ref := host + "/network/stations/hospital-a:train-1"
	d, err := c.PushIfAbsent(ctx, img, ref)
	if err != nil {
		log.Fatal(err)
	}
	pulled, err := c.Pull(ctx, ref)
	if err != nil {
		log.Fatal(err)
	}
	pd, _ := pulled.Digest()
	fmt.Println("pulled what was pushed:", pd == d)

	// The same image again is a no-op; another image under the tag is refused.
	_, err = c.PushIfAbsent(ctx, img, ref)
	fmt.Println("same image again:", err)
	other, _ := random.Image(1024, 1)
	_, err = c.PushIfAbsent(ctx, other, ref)
	fmt.Println("other image refused:", errors.Is(err, registry.ErrExists))
	// Output:
	// pulled what was pushed: true
	// same image again: <nil>
	// other image refused: true
}
