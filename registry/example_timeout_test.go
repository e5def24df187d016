package registry_test

import (
	"fmt"
	"time"

	"github.com/trainyard/trainyard/registry"
)

// A client with tighter network bounds than the defaults, e.g. for a
// station polling a registry on the same site.
func ExampleWithTimeouts() {
	t := registry.DefaultTimeouts()
	t.ResponseHeader = 10 * time.Second
	t.Stall = 20 * time.Second
	c := registry.NewClient(registry.WithTimeouts(t))
	_ = c // c.Pull, c.Push, c.RemoteOptions(ctx) and c.HTTPClient() all carry t
	fmt.Println(t.Dial, t.TLSHandshake, t.ResponseHeader, t.Stall, t.StallBytes)
	// Output: 10s 10s 10s 20s 1024
}
