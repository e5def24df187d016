package train_test

import (
	"fmt"

	"github.com/trainyard/trainyard/train"
)

func ExampleWalkLess() {
	// filepath.Walk order, the order of the PHT results hash.
	fmt.Println(train.WalkLess("a/x", "a.txt"), train.WalkLess("a.txt", "a/x"))
	// Output: true false
}

func ExampleNewIntOrString() {
	// pydantic v1 coerces Union[int, str] ids; hashes use str() of the result.
	fmt.Println(train.NewIntOrString("007"), train.NewIntOrString(" 1_000 "), train.NewIntOrString("s1"))
	// Output: 7 1000 s1
}

func ExampleParseLocation() {
	for _, loc := range []string{"oci:/var/trains/t1", "train.tar", "harbor.example.org/station1/t1:latest", "scratch"} {
		kind, p := train.ParseLocation(loc)
		fmt.Println(kind, p)
	}
	// Output:
	// oci /var/trains/t1
	// archive train.tar
	// registry harbor.example.org/station1/t1:latest
	// scratch
}
