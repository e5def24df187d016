package train_test

import (
	"fmt"

	"github.com/trainyard/trainyard/train"
)

func ExampleParseImageLocation() {
	for _, loc := range []string{
		"oci:/var/trains/alpine:3.19",
		"oci:/var/trains/t1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"docker-archive:/tmp/images.tar:azaion/annotations:3.1",
		"registry.example.org/net/users/alice:t1",
	} {
		l, err := train.ParseImageLocation(loc)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s path=%s tag=%s digest=%.15s ref=%s\n", l.Kind, l.Path, l.Tag, l.Digest, l.Ref)
	}
	_, err := train.ParseImageLocation("./code")
	fmt.Println(err != nil)
	// Output:
	// oci path=/var/trains/alpine tag=3.19 digest= ref=
	// oci path=/var/trains/t1 tag= digest=sha256:01234567 ref=
	// archive path=/tmp/images.tar tag= digest= ref=azaion/annotations:3.1
	// registry path=registry.example.org/net/users/alice:t1 tag= digest= ref=
	// true
}
