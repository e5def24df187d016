package hardened

import (
	"archive/tar"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postRunOf runs PreRun for st-a and lets make shape the results directory
// before PostRun, as a hostile train would.
func postRunOf(t *testing.T, make func(t *testing.T, results string), opts ...Option) error {
	_, err := timedPostRun(t, make, opts...)
	return err
}

// timedPostRun is postRunOf that also says how long PostRun took.
func timedPostRun(t *testing.T, make func(t *testing.T, results string), opts ...Option) (time.Duration, error) {
	t.Helper()
	n := newTestNet(t)
	env, code := n.create(t)
	dir := t.TempDir()
	s, err := PreRun(context.Background(), Party{ID: "st-a", Key: n.stations["st-a"], Trust: n.trust}, Train{Envelope: env, Code: bytes.NewReader(code)}, Dirs{Code: filepath.Join(dir, "c"), Results: filepath.Join(dir, "r")}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	make(t, filepath.Join(dir, "r"))
	var out bytes.Buffer
	start := time.Now()
	_, err = s.PostRun(context.Background(), filepath.Join(dir, "r"), &out)
	if err != nil && out.Len() > 1<<20 {
		t.Fatalf("%d bytes sealed before the refusal", out.Len())
	}
	return time.Since(start), err
}

// nest makes n directories named name, each inside the last, through
// os.Root so that no host path is ever longer than PATH_MAX.
func nest(t *testing.T, dir, name string, n int) {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := r.Mkdir(name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := r.OpenRoot(name)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		r = next
	}
	r.Close()
}

func TestPostRunSparseResultRefusedBySize(t *testing.T) {
	took, err := timedPostRun(t, func(t *testing.T, r string) {
		f, err := os.Create(filepath.Join(r, "huge"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(1 << 40); err != nil { // 1 TiB, no blocks
			t.Fatal(err)
		}
		f.Close()
	})
	wantErr(t, err, ErrResultsTooLarge, "huge is 1099511627776 bytes")
	wantErr(t, err, ErrUnsupported, "")
	if took > 2*time.Second {
		t.Fatalf("refusal took %s", took)
	}
}

func TestPostRunByteCap(t *testing.T) {
	fill := func(t *testing.T, r string) {
		writeFile(t, filepath.Join(r, "a.bin"), strings.Repeat("x", 3000), 0o644)
		writeFile(t, filepath.Join(r, "sub", "b.bin"), strings.Repeat("y", 3000), 0o644)
	}
	wantErr(t, postRunOf(t, fill, WithMaxResults(5000)), ErrResultsTooLarge, "more than 5000 bytes")
	if err := postRunOf(t, fill, WithMaxResults(6000)); err != nil {
		t.Fatalf("results exactly at the cap: %v", err)
	}
	if err := postRunOf(t, fill, WithMaxResults(-1)); err != nil {
		t.Fatalf("no cap: %v", err)
	}
}

func TestPostRunDeepTreeRefusedQuickly(t *testing.T) {
	took, err := timedPostRun(t, func(t *testing.T, r string) { nest(t, r, "d", 10000) })
	wantErr(t, err, ErrTreeBounds, "nested deeper than 64")
	// It was 69 s, quadratic in depth, before the bound.
	if took > 2*time.Second {
		t.Fatalf("refusal took %s", took)
	}
	t.Logf("refused in %s", took)
	// 64 levels are fine.
	if err := postRunOf(t, func(t *testing.T, r string) { nest(t, r, "d", maxTreeDepth) }); err != nil {
		t.Fatalf("depth %d: %v", maxTreeDepth, err)
	}
}

func TestPostRunLongPathRefused(t *testing.T) {
	// 21 names of 200 bytes: 4220 bytes, depth 21.
	err := postRunOf(t, func(t *testing.T, r string) { nest(t, r, strings.Repeat("n", 200), 21) })
	wantErr(t, err, ErrTreeBounds, "longer than 4096 bytes")
}

func TestPostRunTooManyEntries(t *testing.T) {
	old := maxTreeEntries
	maxTreeEntries = 50
	defer func() { maxTreeEntries = old }()
	err := postRunOf(t, func(t *testing.T, r string) {
		for i := 0; i < 60; i++ {
			writeFile(t, filepath.Join(r, "f"+strings.Repeat("x", i)), "", 0o644)
		}
	})
	wantErr(t, err, ErrTreeBounds, "more than 50 entries")
}

func TestPostRunRefusesSpecialFiles(t *testing.T) {
	for name, mk := range map[string]func(t *testing.T, p string){
		"fifo": func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"socket": func(t *testing.T, p string) {
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		},
		"device": func(t *testing.T, p string) {
			if err := syscall.Mknod(p, syscall.S_IFCHR|0o600, 1<<8|3); err != nil { // /dev/null's numbers
				t.Skipf("mknod needs root: %v", err)
			}
		},
		"escaping symlink": func(t *testing.T, p string) {
			if err := os.Symlink("../../../etc/shadow", p); err != nil {
				t.Fatal(err)
			}
		},
	} {
		want := map[string]string{"fifo": "fifo", "socket": "socket", "device": "device", "escaping symlink": "symlink"}
		t.Run(name, func(t *testing.T) {
			err := postRunOf(t, func(t *testing.T, r string) { mk(t, filepath.Join(r, "x")) })
			wantErr(t, err, ErrUnsupported, "x is a "+want[name])
		})
	}
}

func TestCheckTreePath(t *testing.T) {
	for p, ok := range map[string]bool{
		"a/b/c":                                               true,
		strings.Repeat("d/", 63) + "f":                        true,
		strings.Repeat("d/", 64) + "f":                        false,
		strings.Repeat("n", 255):                              true,
		"a/" + strings.Repeat("n", 256):                       false,
		strings.Repeat(strings.Repeat("p", 99)+"/", 41) + "x": false, // 4101 bytes
	} {
		if err := checkTreePath(p); (err == nil) != ok {
			t.Errorf("checkTreePath(%.20q... len %d) = %v", p, len(p), err)
		}
	}
}

// A creator cannot be handed a tree deeper than the bound either.
func TestUnpackTreeRefusesDeepPaths(t *testing.T) {
	var hdrs []*tar.Header
	name := "d"
	for i := 0; i < 70; i++ {
		hdrs = append(hdrs, &tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		name += "/d"
	}
	_, err := unpackTree(context.Background(), bytes.NewReader(tarOf(t, hdrs...)), t.TempDir())
	wantErr(t, err, ErrTreeBounds, "nested deeper")
}
