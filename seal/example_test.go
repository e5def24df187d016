package seal_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/trainyard/trainyard/seal"
)

func ExampleParseExpect() {
	e, _ := seal.ParseExpect("azaion/annotations", "1.2")
	fmt.Println(e)
	e, _ = seal.ParseExpect("busybox:1.36", "")
	fmt.Println(e.Name)
	// Output:
	// azaion/annotations:1.2
	// library/busybox:1.36
}

// Seal an image for one device, then unseal it into an OCI layout with the
// device key and the fragment (which would normally come from the key server).
func ExampleSeal() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "seal-example")
	defer os.RemoveAll(dir)
	img, _ := random.Image(1024, 1)
	archive := filepath.Join(dir, "images.sealed")
	sealed, err := seal.SealFile(ctx, archive, []seal.Source{{Name: "azaion/flights:1.0", Image: img}},
		seal.WithArchiveID("example"), seal.WithDevices("site-a"))
	if err != nil {
		fmt.Println(err)
		return
	}
	share := sealed.Shares[0]
	res, err := seal.Unseal(ctx, archive, seal.Keys{DeviceKey: share.DeviceKey, Fragment: share.Fragment},
		seal.NewLayoutTarget(filepath.Join(dir, "layout")))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Header.ArchiveID, res.Images[0].Name)
	// Output: example azaion/flights:1.0
}

// Seal for one site and hand out its shares as files (with
// Delivery.Store = a *keyserver.Store the fragments go to the key server
// instead); the site then unseals with its device key file and the
// fragment, here from its file (normally a *keyserver.Client).
func ExampleSealAndDeliver() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "seal-example")
	defer os.RemoveAll(dir)
	img, _ := random.Image(1024, 1)
	archive := filepath.Join(dir, "images.sealed")
	d, err := seal.SealAndDeliver(ctx, archive, []seal.Source{{Name: "azaion/flights:1.0", Image: img}},
		seal.Delivery{KeysDir: filepath.Join(dir, "keys")}, seal.WithArchiveID("example"), seal.WithDevices("site-a"))
	if err != nil {
		fmt.Println(err)
		return
	}
	site := d.Devices[0]
	fmt.Println(filepath.Base(site.DeviceKeyFile), filepath.Base(site.FragmentFile))
	res, err := seal.UnsealFrom(ctx, archive, seal.KeySource{DeviceKeyFile: site.DeviceKeyFile, Fragments: seal.FragmentFile(site.FragmentFile)},
		seal.NewLayoutTarget(filepath.Join(dir, "layout")))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Header.ArchiveID, res.Images[0].Name)
	// Output:
	// site-a.device-key.json site-a.fragment
	// example azaion/flights:1.0
}
