package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
)

// Hostile tar and gzip inputs for the tests of every reader of layers. They
// are built by hand: archive/tar refuses to write sparse entries.

// GzipZeros returns gzip members that inflate to n bytes of zeros (n a
// multiple of 1 MiB). One member of 1 MiB is compressed once and repeated:
// gzip readers read concatenated members as one stream, so a 4 GiB bomb is
// about 4 MiB and costs the test nothing to build.
func GzipZeros(n int64) []byte {
	var one bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&one, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	return bytes.Repeat(one.Bytes(), int(n>>20))
}

// GNUSparse is an old-GNU sparse entry ('S') named name: no data blocks and
// one empty region at the end of a file of logical size size. Followed by
// the tar end marker.
func GNUSparse(name string, size int64) []byte {
	b := make([]byte, 512)
	copy(b, name)
	octal(b[100:108], 0o644)
	octal(b[108:116], 0)
	octal(b[116:124], 0)
	octal(b[124:136], 0) // bytes stored in the archive
	octal(b[136:148], 0)
	b[156] = tar.TypeGNUSparse
	copy(b[257:265], "ustar  \x00")
	base256(b[386:398], size) // sparse[0].offset
	octal(b[398:410], 0)      // sparse[0].numbytes
	base256(b[483:495], size) // realsize
	checksum(b)
	return append(b, make([]byte, 1024)...)
}

// PAXSparse is a PAX 1.0 sparse entry named name: a PAX header giving a
// logical size and a one-block sparse map with no data. Followed by the tar
// end marker.
func PAXSparse(name string, size int64) []byte {
	var recs bytes.Buffer
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", name}, {"GNU.sparse.realsize", fmt.Sprint(size)}} {
		recs.WriteString(paxRecord(kv[0], kv[1]))
	}
	x := make([]byte, 512)
	copy(x, "PaxHeaders/sparse")
	octal(x[100:108], 0o644)
	octal(x[124:136], int64(recs.Len()))
	x[156] = tar.TypeXHeader
	copy(x[257:265], "ustar\x0000")
	checksum(x)
	data := append(recs.Bytes(), make([]byte, (512-recs.Len()%512)%512)...)
	h := make([]byte, 512)
	copy(h, "GNUSparseFile.0/sparse")
	octal(h[100:108], 0o644)
	octal(h[124:136], 512) // the sparse map block
	h[156] = tar.TypeReg
	copy(h[257:265], "ustar\x0000")
	checksum(h)
	m := make([]byte, 512)
	copy(m, fmt.Sprintf("1\n%d\n0\n", size))
	out := append(append(append(x, data...), h...), m...)
	return append(out, make([]byte, 1024)...)
}

// paxRecord formats "LEN key=value\n", where LEN counts itself.
func paxRecord(k, v string) string {
	r := " " + k + "=" + v + "\n"
	n := len(r) + 1
	for len(fmt.Sprint(n))+len(r) != n {
		n++
	}
	return fmt.Sprint(n) + r
}

// octal writes a NUL-terminated octal number into a tar header field.
func octal(b []byte, v int64) { copy(b, fmt.Sprintf("%0*o\x00", len(b)-1, v)) }

// base256 writes v as GNU's binary number (for values octal cannot hold).
func base256(b []byte, v int64) {
	for i := len(b) - 1; i > 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	b[0] = 0x80
}

func checksum(b []byte) {
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}
