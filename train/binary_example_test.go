package train_test

import (
	"context"
	"fmt"
	"os"

	"github.com/trainyard/trainyard/train"
)

// A train image from a Go main package: built static, placed at
// /opt/pht_train/NAME, with a config file beside it. workDir holds the
// binary the image's layer is read from, so it must outlive the image.
func ExampleImageFromGoPackage() {
	work, err := os.MkdirTemp("", "train-build-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(work) // only once the image is no longer used
	img, err := train.ImageFromGoPackage(context.Background(), "../demo/aggregate", work,
		train.WithFile("/opt/train_config.json", []byte(`{}`), 0o644), train.WithImageUser("1000:1000"))
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Config.Entrypoint, cfg.Config.WorkingDir, cfg.Config.User)
	// Output: [/opt/pht_train/aggregate] /opt/pht_train 1000:1000
}
