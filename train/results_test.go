package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nestDirs makes n directories named name, each inside the last, through
// os.Root so that no host path is longer than PATH_MAX.
func nestDirs(t *testing.T, dir, name string, n int) {
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

func TestCheckResultsDir(t *testing.T) {
	cases := map[string]struct {
		make func(t *testing.T, dir string)
		max  int64
		want string // "" = accepted
	}{
		"files and a contained symlink": {func(t *testing.T, d string) {
			os.MkdirAll(filepath.Join(d, "sub"), 0o755)
			os.WriteFile(filepath.Join(d, "sub", "a.csv"), []byte("12345"), 0o644)
			os.Symlink("../sub/a.csv", filepath.Join(d, "sub", "link"))
		}, 5, ""},
		"over the byte cap": {func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, "a"), []byte("123456"), 0o644)
		}, 5, "more than 5 bytes"},
		"sparse 1 TiB": {func(t *testing.T, d string) {
			f, _ := os.Create(filepath.Join(d, "huge"))
			f.Truncate(1 << 40)
			f.Close()
		}, 0, "huge is 1099511627776 bytes"},
		"10000 nested directories": {func(t *testing.T, d string) { nestDirs(t, d, "d", 10000) }, 0, "nested deeper than 64"},
		"path over 4096 bytes":     {func(t *testing.T, d string) { nestDirs(t, d, strings.Repeat("n", 200), 21) }, 0, "longer than 4096"},
		"escaping symlink": {func(t *testing.T, d string) {
			os.Symlink("../../etc/shadow", filepath.Join(d, "leak"))
		}, 0, "points out of the results"},
		"absolute symlink": {func(t *testing.T, d string) {
			os.Symlink("/etc/shadow", filepath.Join(d, "leak"))
		}, 0, "points out of the results"},
		"fifo": {func(t *testing.T, d string) {
			if err := syscall.Mkfifo(filepath.Join(d, "p"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 0, "results hold only"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c.make(t, dir)
			start := time.Now()
			err := CheckResultsDir(context.Background(), dir, c.max)
			took := time.Since(start)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrResultsTooLarge) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want ErrResultsTooLarge (%s), got %v", c.want, err)
			}
			if took > 2*time.Second {
				t.Fatalf("refusal took %s", took)
			}
			t.Logf("refused in %s: %v", took, err)
		})
	}
}

func TestCheckResultsDirEntries(t *testing.T) {
	old := maxResultsEntries
	maxResultsEntries = 10
	defer func() { maxResultsEntries = old }()
	dir := t.TempDir()
	for i := 0; i < 11; i++ {
		os.WriteFile(filepath.Join(dir, strings.Repeat("f", i+1)), nil, 0o644)
	}
	if err := CheckResultsDir(context.Background(), dir, 0); !errors.Is(err, ErrResultsTooLarge) {
		t.Fatalf("11 entries over a bound of 10: %v", err)
	}
}
