package registry_test

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/registry/server"
)

func startEmbedded(t *testing.T, dir string) (host string, stop func()) {
	t.Helper()
	h, shutdown, err := server.NewHandler(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	return strings.TrimPrefix(srv.URL, "http://"), func() { srv.Close(); shutdown() }
}

// TestPushPullByDigest pushes an image to the embedded registry and pulls it
// back by digest, checking every layer's content digest.
func TestPushPullByDigest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	host, stop := startEmbedded(t, dir)
	c := registry.NewClient(registry.WithKeychain(authn.NewMultiKeychain()))

	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	dgst, err := c.Push(ctx, img, host+"/pht/train:v1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Pull(ctx, host+"/pht/train@"+dgst.String())
	if err != nil {
		t.Fatal(err)
	}
	gd, err := got.Digest()
	if err != nil || gd != dgst {
		t.Fatalf("digest = %v (%v), want %v", gd, err, dgst)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 3 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	for _, l := range layers {
		want, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		// Reading through ggcr verifies the blob digest; a mismatch fails here.
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer %s: %v", want, err)
		}
		rc.Close()
	}
	tags, err := c.ListTags(ctx, host+"/pht/train")
	if err != nil || len(tags) != 1 || tags[0] != "v1" {
		t.Fatalf("tags = %v, %v", tags, err)
	}

	// Data survives a restart: a new server on the same directory serves it.
	stop()
	host2, stop2 := startEmbedded(t, dir)
	defer stop2()
	again, err := c.Pull(ctx, host2+"/pht/train@"+dgst.String())
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if d, _ := again.Digest(); d != dgst {
		t.Fatalf("after restart digest %v, want %v", d, dgst)
	}
	// The catalog works although the config was built in code.
	reg, _ := name.NewRegistry(host2)
	repos, err := remote.Catalog(ctx, reg)
	if err != nil || len(repos) != 1 || repos[0] != "pht/train" {
		t.Fatalf("catalog = %v, %v", repos, err)
	}
}

func TestPullMissingIsError(t *testing.T) {
	host, stop := startEmbedded(t, t.TempDir())
	defer stop()
	c := registry.NewClient(registry.WithKeychain(authn.NewMultiKeychain()))
	if _, err := c.Pull(context.Background(), host+"/nope/nothing:v1"); err == nil {
		t.Fatal("pull of a missing image succeeded")
	}
	if _, err := c.ParseReference("UPPER/Case::bad"); err == nil {
		t.Fatal("bad reference accepted")
	}
}

// TestServeShutdown runs the real listener and checks that cancelling the
// context (what SIGINT/SIGTERM do in the CLI) stops it cleanly and quickly.
func TestServeShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() { errc <- server.Serve(ctx, "127.0.0.1:0", t.TempDir(), func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatal(err)
	}
	c := registry.NewClient(registry.WithKeychain(authn.NewMultiKeychain()))
	img, _ := random.Image(512, 1)
	if _, err := c.Push(context.Background(), img, addr.String()+"/a/b:c"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop")
	}
}

func TestServeBadAddr(t *testing.T) {
	if err := server.Serve(context.Background(), "256.1.1.1:99999", t.TempDir(), nil); err == nil {
		t.Fatal("bad address accepted")
	}
}
