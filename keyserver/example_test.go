package keyserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"

	"github.com/trainyard/trainyard/errdefs"
	"github.com/trainyard/trainyard/keyserver"
)

// The operator stores one key fragment per archive and device and hands
// each device a bearer token; the device's unseal fetches its fragment over
// HTTP. A revoked token gets nothing.
func Example() {
	dir, _ := os.MkdirTemp("", "keyserver-")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	// 1. The operator's side: the database, a fragment, a token.
	store, err := keyserver.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.AddFragment("release-7", "site-a", []byte("fragment for site-a")); err != nil {
		log.Fatal(err)
	}
	secret, tok, err := store.CreateToken("site-a", "release-7", "site-a laptop")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("token for:", tok.Device, tok.Archive)

	// 2. The server (here in-process; keyserver.Serve adds TLS and the
	// admin socket) and the device's client.
	srv := httptest.NewServer(keyserver.NewServer(store, keyserver.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))))
	defer srv.Close()
	c, err := keyserver.NewClient(srv.URL, secret)
	if err != nil {
		log.Fatal(err)
	}
	frag, err := c.Fragment(ctx, "release-7")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("fragment: %q\n", frag)

	// 3. Revoked: the same request is refused, an error callers branch on.
	if err := store.RevokeToken(secret); err != nil {
		log.Fatal(err)
	}
	_, err = c.Fragment(ctx, "release-7")
	fmt.Println("after revocation:", errors.Is(err, keyserver.ErrUnauthorized), errors.Is(err, errdefs.ErrUnauthorized))
	// Output:
	// token for: site-a release-7
	// fragment: "fragment for site-a"
	// after revocation: true true
}
