package trainrun

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needResultsFS is needRunc plus loop devices and mkfs.ext4. With CI=true a
// missing piece fails the test instead of skipping it.
func needResultsFS(t *testing.T) *Runc {
	t.Helper()
	r := NewRunc(WithStateDir(t.TempDir()), WithBundleDir(t.TempDir()))
	err := r.Available()
	if err == nil {
		for _, p := range []string{"/dev/loop-control"} {
			if _, serr := os.Stat(p); serr != nil {
				err = serr
			}
		}
		for _, tool := range []string{"mkfs.ext4", "mount"} {
			if _, lerr := exec.LookPath(tool); lerr != nil {
				err = lerr
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("results filesystem not usable on CI: %v", err)
		}
		t.Skipf("results filesystem not usable here (%v); as root: apt-get install -y runc e2fsprogs", err)
	}
	return r
}

// mountedAt reports whether anything is mounted on dir.
func mountedAt(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && fs[4] == dir {
			return true
		}
	}
	return false
}

// noLeftovers checks that a run left neither a mount on dir nor an image or
// staging directory beside it.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	if mountedAt(t, dir) {
		t.Fatalf("%s is still mounted", dir)
	}
	ents, _ := os.ReadDir(filepath.Dir(dir))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".trainyard-results-") {
			t.Fatalf("left behind: %s", e.Name())
		}
	}
}

// resultsDir is a results directory in a parent of its own, so that
// noLeftovers sees only this test's files.
func resultsDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "results")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRuncResultsCapStopsWritesWhileRunning(t *testing.T) {
	r := needResultsFS(t)
	const limit = 8 << 20
	dir := resultsDir(t)
	o := runProbe(t, r, RunSpec{ResultsDir: dir, MaxResults: limit}, "fill", "/opt/pht_results/big")
	if !errors.Is(o.err, ErrResultsTooLarge) {
		t.Fatalf("a train writing past the cap: want ErrResultsTooLarge, got %v (stderr %q)", o.err, o.stderr)
	}
	if !errors.Is(o.err, ErrExit) {
		t.Fatalf("the train's own failure should be kept in the error: %v", o.err)
	}
	t.Logf("refused: %v", o.err)
	written, err := strconv.ParseInt(strings.TrimSpace(o.stdout), 10, 64)
	if err != nil {
		t.Fatalf("probe output %q", o.stdout)
	}
	// The filesystem stopped the writes at its size (the cap plus ext4's
	// headroom); the cap itself refused the results after the run.
	if written > imageSize(limit) || written <= limit {
		t.Fatalf("the train wrote %d bytes; the cap is %d, the filesystem %d", written, limit, imageSize(limit))
	}
	if !strings.Contains(o.stderr, "no space left") {
		t.Fatalf("the write should have failed with ENOSPC inside: %q", o.stderr)
	}
	noLeftovers(t, dir)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("refused results were kept: %v", ents)
	}
}

// The station's way: the caller mounts the filesystem, the run uses it, and
// post-run reads it in place before Close.
func TestMountResultsCallerOwned(t *testing.T) {
	r := needResultsFS(t)
	dir := resultsDir(t)
	// Previous results are moved onto the filesystem and seen by the train.
	if err := os.MkdirAll(filepath.Join(dir, "prev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prev", "in.txt"), []byte("from stop 0"), 0o644); err != nil {
		t.Fatal(err)
	}
	rf, err := MountResults(context.Background(), dir, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	if !mountedAt(t, dir) {
		t.Fatal("not mounted")
	}
	o := runProbe(t, r, RunSpec{ResultsDir: dir, MaxResults: 8 << 20}, "read", "/opt/pht_results/prev/in.txt")
	wantOK(t, o)
	if o.stdout != "from stop 0" {
		t.Fatalf("train read %q", o.stdout)
	}
	wantOK(t, runProbe(t, r, RunSpec{ResultsDir: dir, MaxResults: 8 << 20}, "write", "/opt/pht_results/out.txt", "stop 1"))
	// Still mounted for post-run.
	if b, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(b) != "stop 1" {
		t.Fatalf("result = %q, %v", b, err)
	}
	// A run may not ask for a smaller cap than the filesystem has.
	if o := runProbe(t, r, RunSpec{ResultsDir: dir, MaxResults: 2 << 20}, "exit", "0"); !errors.Is(o.err, ErrInvalidSpec) {
		t.Fatalf("smaller cap than the mounted filesystem: %v", o.err)
	}

	o = runProbe(t, r, RunSpec{ResultsDir: dir, MaxResults: 8 << 20}, "fill", "/opt/pht_results/big")
	if !errors.Is(o.err, ErrResultsTooLarge) {
		t.Fatalf("want ErrResultsTooLarge, got %v", o.err)
	}
	fi, err := os.Stat(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > imageSize(8<<20) {
		t.Fatalf("the file in the results filesystem is %d bytes, over the filesystem's %d", fi.Size(), imageSize(8<<20))
	}
	if err := rf.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rf.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	noLeftovers(t, dir)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("after Close the directory holds %v", ents)
	}
}

func TestMountResultsRefusesOversizedInput(t *testing.T) {
	needResultsFS(t)
	dir := resultsDir(t)
	f, err := os.Create(filepath.Join(dir, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil { // 1 TiB, sparse
		t.Fatal(err)
	}
	f.Close()
	start := time.Now()
	if _, err := MountResults(context.Background(), dir, 8<<20); !errors.Is(err, ErrResultsTooLarge) {
		t.Fatalf("want ErrResultsTooLarge, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusal took %s", d)
	}
	noLeftovers(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "huge")); err != nil {
		t.Fatalf("input changed by a refused mount: %v", err)
	}
	if _, err := MountResults(context.Background(), dir, 4096); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("cap below the minimum: %v", err)
	}
}

// Trees the post-run copy refuses, quickly, whatever the train made: each
// probe op succeeds inside the container, the copy-out refuses it.
func TestRuncResultsShapeBounds(t *testing.T) {
	r := needResultsFS(t)
	cases := map[string]struct {
		max  int64
		args []string
		want string
	}{
		"sparse 1 TiB":        {16 << 20, []string{"sparse", "/opt/pht_results/huge", strconv.FormatInt(1<<40, 10)}, "huge is 1099511627776 bytes"},
		"10000 nested dirs":   {128 << 20, []string{"nest", "/opt/pht_results", "10000"}, "nested deeper than 64"},
		"path over 4096":      {16 << 20, []string{"longpath", "/opt/pht_results", "4200"}, "longer than 4096"},
		"over the inode room": {16 << 20, []string{"many", "/opt/pht_results", "100000"}, "used every entry"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := resultsDir(t)
			start := time.Now()
			o := runProbe(t, r, RunSpec{ResultsDir: dir, MaxResults: c.max}, c.args...)
			if !errors.Is(o.err, ErrResultsTooLarge) || !strings.Contains(o.err.Error(), c.want) {
				t.Fatalf("want ErrResultsTooLarge (%s), got %v (stderr %q)", c.want, o.err, o.stderr)
			}
			t.Logf("refused in %s: %v", time.Since(start).Round(time.Millisecond), o.err)
			if d := time.Since(start); d > 60*time.Second {
				t.Fatalf("took %s", d)
			}
			noLeftovers(t, dir)
		})
	}
}

func TestRuncResultsUncapped(t *testing.T) {
	r := needRunc(t)
	dir := resultsDir(t)
	wantOK(t, runProbe(t, r, RunSpec{ResultsDir: dir, MaxResults: -1}, "write", "/opt/pht_results/x", "y"))
	if mountedAt(t, dir) {
		t.Fatal("MaxResults < 0 mounted a filesystem")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "x")); string(b) != "y" {
		t.Fatalf("result %q", b)
	}
}

func TestResultsWalkerBounds(t *testing.T) {
	fi := func(t *testing.T, dir, name string) os.FileInfo {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		info, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	dir := t.TempDir()
	file := fi(t, dir, "f")
	deep := strings.Repeat("d/", MaxResultsDepth) + "f"
	for name, rel := range map[string]string{
		"depth": deep,
		"path":  strings.Repeat("abcdefgh/", 500) + "f",
		"name":  strings.Repeat("n", 256),
	} {
		w := &resultsWalker{max: 1 << 20}
		if err := w.visit(rel, file); !errors.Is(err, ErrResultsTooLarge) {
			t.Errorf("%s: want ErrResultsTooLarge, got %v", name, err)
		}
	}
	w := &resultsWalker{max: 1 << 20}
	if err := w.visit(strings.Repeat("d/", MaxResultsDepth-1)+"f", file); err != nil {
		t.Errorf("depth %d refused: %v", MaxResultsDepth, err)
	}
	w = &resultsWalker{max: 1 << 20, entries: MaxResultsEntries}
	if err := w.visit("one-too-many", file); !errors.Is(err, ErrResultsTooLarge) {
		t.Errorf("entries: %v", err)
	}
	// Devices, FIFOs and sockets are never results.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Lstat(fifo)
	if err := (&resultsWalker{max: 1}).visit("fifo", info); !errors.Is(err, ErrUnsafeImage) {
		t.Errorf("fifo: %v", err)
	}
}

func TestSymlinkEscapes(t *testing.T) {
	for _, c := range []struct {
		rel, target string
		out         bool
	}{
		{"l", "x", false},
		{"a/l", "../x", false},
		{"a/b/l", "../../x", false},
		{"l", "../x", true},
		{"a/l", "../../x", true},
		{"l", "/etc/passwd", true},
		{"l", "", true},
		{"a/l", "./../b/../../x", true},
		{"a/l", "b/../../x", false},
	} {
		if got := escapes(c.rel, c.target); got != c.out {
			t.Errorf("escapes(%q, %q) = %v, want %v", c.rel, c.target, got, c.out)
		}
	}
}

// copyResults refuses an escaping symlink and copies a contained one as a link.
func TestCopyResultsSymlinks(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	os.Symlink("f", filepath.Join(src, "ok"))
	if err := copyResults(context.Background(), src, dst, 1<<20); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "ok")); err != nil || l != "f" {
		t.Fatalf("link %q %v", l, err)
	}
	os.Symlink("../../etc/shadow", filepath.Join(src, "bad"))
	if err := copyResults(context.Background(), src, t.TempDir(), 1<<20); !errors.Is(err, ErrUnsafeImage) {
		t.Fatalf("escaping symlink: %v", err)
	}
}

// FuzzLimitResultsTar: whatever the archive, the filter never panics, and
// what it lets through is a tar stream within the bounds.
func FuzzLimitResultsTar(f *testing.F) {
	mk := func(entries ...tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range entries {
			tw.WriteHeader(&h)
			if h.Typeflag == tar.TypeReg {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	f.Add(mk(tar.Header{Name: "pht_results/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "pht_results/a.csv", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644},
		tar.Header{Name: "pht_results/l", Typeflag: tar.TypeSymlink, Linkname: "a.csv"}))
	f.Add(mk(tar.Header{Name: "pht_results/" + strings.Repeat("d/", 70), Typeflag: tar.TypeDir, Mode: 0o755}))
	f.Add(mk(tar.Header{Name: "pht_results/l", Typeflag: tar.TypeSymlink, Linkname: "../../etc/passwd"}))
	f.Add(mk(tar.Header{Name: "pht_results/p", Typeflag: tar.TypeFifo}))
	f.Add([]byte("not a tar"))
	const max = 1 << 10
	f.Fuzz(func(t *testing.T, in []byte) {
		rc := limitResultsTar(context.Background(), bytes.NewReader(in), max)
		defer rc.Close()
		tr := tar.NewReader(rc)
		var total int64
		for {
			hdr, err := tr.Next()
			if err != nil {
				return // io.EOF or the filter's refusal
			}
			if hdr.Typeflag == tar.TypeReg {
				total += hdr.Size
			}
			if total > max {
				t.Fatalf("%d bytes let through a %d-byte cap", total, max)
			}
			if n := strings.Count(strings.Trim(hdr.Name, "/"), "/"); n > MaxResultsDepth {
				t.Fatalf("depth %d let through", n)
			}
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return
			}
		}
	})
}

// The copy-out filter without a daemon: what passes and what is refused.
func TestLimitResultsTar(t *testing.T) {
	mk := func(hs ...tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hs {
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	top := tar.Header{Name: "pht_results/", Typeflag: tar.TypeDir, Mode: 0o755}
	file := func(name string, n int64) tar.Header {
		return tar.Header{Name: "pht_results/" + name, Typeflag: tar.TypeReg, Size: n, Mode: 0o644}
	}
	for name, c := range map[string]struct {
		in   []byte
		want error
	}{
		"within the cap":     {mk(top, file("a", 600), file("b", 424)), nil},
		"over the cap":       {mk(top, file("a", 600), file("b", 425)), ErrResultsTooLarge},
		"too deep":           {mk(top, tar.Header{Name: "pht_results/" + strings.Repeat("d/", 65), Typeflag: tar.TypeDir, Mode: 0o755}), ErrResultsTooLarge},
		"file at the top":    {mk(tar.Header{Name: "pht_results", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}), ErrUnsafeImage},
		"dot-dot name":       {mk(top, file("../x", 1)), ErrUnsafeImage},
		"escaping symlink":   {mk(top, tar.Header{Name: "pht_results/l", Typeflag: tar.TypeSymlink, Linkname: "../../x"}), ErrUnsafeImage},
		"fifo":               {mk(top, tar.Header{Name: "pht_results/p", Typeflag: tar.TypeFifo}), ErrUnsafeImage},
		"not a tar":          {[]byte(strings.Repeat("garbage!", 100)), nil},
		"contained symlink":  {mk(top, file("a", 1), tar.Header{Name: "pht_results/l", Typeflag: tar.TypeSymlink, Linkname: "a"}), nil},
		"sparse by its size": {mk(top, file("s", 2048)), ErrResultsTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			rc := limitResultsTar(context.Background(), bytes.NewReader(c.in), 1024)
			defer rc.Close()
			_, err := io.Copy(io.Discard, rc)
			if c.want == nil && name != "not a tar" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
			if name == "not a tar" && err == nil {
				t.Fatal("garbage passed as a tar stream")
			}
		})
	}
}

// BenchmarkMountResults measures the per-run cost of the results
// filesystem (docs/runtime.md quotes it): sparse image, mkfs.ext4, mount,
// unmount, remove, for a 1 GiB cap.
func BenchmarkMountResults(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	parent := b.TempDir()
	dir := filepath.Join(parent, "results")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		rf, err := MountResults(context.Background(), dir, DefaultMaxResults)
		if err != nil {
			b.Fatal(err)
		}
		if err := rf.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// The results filesystem's loop device does direct I/O on its image (the
// written results are cached once, not again as the image's pages, which on
// a slow disk throttles every writer of a stop) and is set to clear itself:
// Close leaves no loop device behind.
func TestResultsFSLoopDevice(t *testing.T) {
	needResultsFS(t)
	dir := filepath.Join(t.TempDir(), "results")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rf, err := MountResults(context.Background(), dir, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,DIO,AUTOCLEAR", "--associated", rf.image).Output()
	if err != nil {
		rf.Close()
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	if len(got) != 3 || got[1] != "1" || got[2] != "1" {
		rf.Close()
		t.Fatalf("loop device: NAME, DIO, AUTOCLEAR = %q, want a device, 1, 1", out)
	}
	if err := rf.Close(); err != nil {
		t.Fatal(err)
	}
	// The kernel clears an autoclear device when its last user goes.
	backing := filepath.Join("/sys/block", filepath.Base(got[0]), "loop", "backing_file")
	for i := 0; ; i++ {
		if _, err := os.Stat(backing); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if i == 40 {
			t.Fatalf("%s is still set up after Close", got[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
