package phtv2_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/trainyard/trainyard/protocol/phtv2"
)

func ExampleImmutableHash() {
	files := map[string]string{"entrypoint.py": "print('hello pht')\n", "lib/util.py": "X = 42\n"}
	open := func(n string) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(files[n])), nil }
	sid := make([]byte, 64)
	for i := range sid {
		sid[i] = byte(i)
	}
	h, err := phtv2.ImmutableHash("test-user-id", []string{"./entrypoint.py", "./lib/util.py"}, open, sid, []byte(`{"query":{"resource":"Patient"}}`))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%x\n", h[:8])
	// Output: d7cd1d1699082b14
}

func ExampleStationDigest() {
	sid := make([]byte, 64)
	ed := make([]byte, 64)
	d0 := phtv2.StationDigest(sid, nil, ed)          // first stop: SHA512(sid || e_d)
	d1 := phtv2.StationDigest(sid, [][]byte{d0}, ed) // later: SHA512(D0 || e_d)
	fmt.Println(len(d0), len(d1))
	// Output: 64 64
}
