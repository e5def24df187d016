package seal_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trainyard/trainyard/keyserver"
	"github.com/trainyard/trainyard/registry/server"
	"github.com/trainyard/trainyard/seal"
)

// TestSealKeyServerUnsealRegistry is the round trip: three images
// sealed for two devices, fragments served by the real key server over
// HTTP, unsealed with a device key + fetched fragment and loaded into the
// embedded distribution/v3 registry, then checked with --expect digests.
// Revoked and missing tokens and a revoked fragment load nothing.
func TestSealKeyServerUnsealRegistry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var srcs []seal.Source
	var expects []seal.Expect
	for _, n := range []string{"azaion/annotations:2.0", "azaion/flights:2.0", "azaion/autopilot:2.0"} {
		img, err := random.Image(20000, 3)
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, seal.Source{Name: n, Image: img})
		d, _ := img.Digest()
		e, err := seal.ParseExpect(n+"@"+d.String(), "")
		if err != nil {
			t.Fatal(err)
		}
		expects = append(expects, e)
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "images.sealed")
	sealed, err := seal.SealFile(ctx, archive, srcs, seal.WithDevices("site-a", "site-b"), seal.WithChunkSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	id := sealed.Header.ArchiveID

	// Key server data dir prepared the way `trainyard keyserver fragment add`
	// and `token create` do it, then served over a real TCP listener.
	data := filepath.Join(dir, "ks")
	st, err := keyserver.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sealed.Shares {
		if err := st.AddFragment(id, s.Device, s.Fragment); err != nil {
			t.Fatal(err)
		}
	}
	tokA, tA, err := st.CreateToken("site-a", "", "")
	if err != nil {
		t.Fatal(err)
	}
	tokB, _, err := st.CreateToken("site-b", id, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeToken(tA.ID); err != nil {
		t.Fatal(err)
	}
	tokA2, _, err := st.CreateToken("site-a", "", "")
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		errc <- keyserver.Serve(ctx, keyserver.Listen{Addr: "127.0.0.1:0", DataDir: data, Ready: func(a net.Addr) { addrc <- a }}, keyserver.WithLogger(quiet))
	}()
	var ksURL string
	select {
	case a := <-addrc:
		ksURL = "http://" + a.String()
	case err := <-errc:
		t.Fatal(err)
	}

	newRegistry := func() string {
		h, closeFn, err := server.NewHandler(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewServer(h)
		t.Cleanup(func() { s.Close(); closeFn() })
		return strings.TrimPrefix(s.URL, "http://")
	}
	fetch := func(tok string) ([]byte, error) {
		c, err := keyserver.NewClient(ksURL, tok)
		if err != nil {
			t.Fatal(err)
		}
		return c.Fragment(ctx, id)
	}

	// Both devices unseal with their own share.
	for _, dev := range []struct {
		tok   string
		share seal.Share
	}{{tokA2, sealed.Shares[0]}, {tokB, sealed.Shares[1]}} {
		frag, err := fetch(dev.tok)
		if err != nil {
			t.Fatalf("%s: %v", dev.share.Device, err)
		}
		host := newRegistry()
		res, err := seal.Unseal(ctx, archive, seal.Keys{DeviceKey: dev.share.DeviceKey, Fragment: frag},
			seal.NewRegistryTarget(host, nil), seal.WithExpect(expects...))
		if err != nil {
			t.Fatalf("%s: %v", dev.share.Device, err)
		}
		for _, im := range res.Images {
			ref, _ := name.ParseReference(host + "/" + im.Name)
			img, err := remote.Image(ref)
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := img.Digest(); d.String() != im.Digest {
				t.Fatalf("%s: digest %s != %s", im.Name, d, im.Digest)
			}
		}
	}

	// Refusals at the key server: revoked token, missing token, another
	// device's token for a fragment of a different device share.
	if _, err := fetch(tokA); !errors.Is(err, keyserver.ErrUnauthorized) {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := fetch(""); !errors.Is(err, keyserver.ErrUnauthorized) {
		t.Fatalf("missing token: %v", err)
	}
	// site-b's fragment with site-a's device key: wrong key, nothing loaded.
	fragB, err := fetch(tokB)
	if err != nil {
		t.Fatal(err)
	}
	host := newRegistry()
	_, err = seal.Unseal(ctx, archive, seal.Keys{DeviceKey: sealed.Shares[0].DeviceKey, Fragment: fragB}, seal.NewRegistryTarget(host, nil))
	if !errors.Is(err, seal.ErrWrongKey) {
		t.Fatalf("mixed shares: %v", err)
	}
	ref, _ := name.ParseReference(host + "/" + srcs[0].Name)
	if _, err := remote.Head(ref); err == nil {
		t.Fatal("image loaded after a refused unseal")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
