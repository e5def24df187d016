package trainrun

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trainyard/trainyard/errdefs"
	"github.com/trainyard/trainyard/internal/fsutil"
)

// DefaultMaxResults is the byte cap on a train's results when
// RunSpec.MaxResults is 0.
const DefaultMaxResults int64 = 1 << 30

// MinMaxResults is the smallest cap a results filesystem can be made with
// (ext4 needs room for its own metadata).
const MinMaxResults int64 = 1 << 20

// Bounds on the shape of a results tree, checked whenever results are
// copied (and again by the protocols' packers). Linux itself allows 255
// bytes per name and 4096 per path; the depth bound stops a train from
// making every later walk quadratic with thousands of nested directories.
const (
	MaxResultsDepth   = 64
	MaxResultsPath    = 4096
	MaxResultsName    = 255
	MaxResultsEntries = 1 << 20
)

// ErrResultsTooLarge: the results exceed the byte cap (counted by apparent
// size, so a sparse file counts as big as it claims to be), or their tree
// exceeds a bound on depth, path length or entry count.
var ErrResultsTooLarge = errdefs.New("results too large", errdefs.ErrResultsTooLarge)

// ResultsFS is a size-capped filesystem mounted on a host results directory,
// so that a train cannot write more than the cap while it runs: a write past
// it fails inside the container with ENOSPC and the station's own disk never
// holds more than the cap for it.
//
// The filesystem is ext4 on a loop device over a sparse image file created
// beside the directory, sized to the cap and made fresh for every run. Why
// this and not the alternatives:
//   - a size-limited tmpfs costs memory, not disk: its pages are charged to
//     the memory cgroup of the writer, so the train's --memory limit would
//     silently become the results cap as well (and a 1 GiB cap would pin
//     1 GiB of the station's RAM until post-run is done);
//   - project quotas need the work directory on xfs (or ext4) mounted with
//     prjquota, which a station cannot assume;
//   - a loop ext4 needs only mkfs.ext4 and loop devices, costs disk only for
//     what is written (the image is sparse), and its per-run cost is small
//     next to a train's: about 25 ms for mkfs, 20 ms to mount and 10 ms to
//     unmount a 1 GiB image on an idle 2-core VM, 150-250 ms for the cycle
//     under heavy load (BenchmarkMountResults).
//
// mkfs.ext4 runs without a journal (the filesystem lives for one stop and a
// crash discards it) and without reserved blocks. The filesystem is a little
// larger than the cap (ext4's metadata and block reserve take about 5%), so
// the station's disk holds at most cap + 1/12 + 4 MiB for a run; results
// over the cap itself are refused by their apparent size after the run.
type ResultsFS struct {
	dir   string
	image string
	max   int64
	own   bool // mounted by Run for one run only (copied back out after it)

	once     sync.Once
	closeErr error
}

// mounted records the results filesystems of this process by directory, so
// that Run uses a caller's filesystem instead of making its own.
var mounted sync.Map // dir -> *ResultsFS

// Dir is the directory the filesystem is mounted on.
func (r *ResultsFS) Dir() string { return r.dir }

// Max is the cap the filesystem was made with.
func (r *ResultsFS) Max() int64 { return r.max }

// MountResults moves the contents of dir (for example the previous stop's
// results) onto a fresh filesystem of maxBytes mounted on dir, and returns
// it; Close unmounts it and removes its image. maxBytes 0 means
// DefaultMaxResults. The image file is created in dir's parent directory,
// which therefore needs room for up to maxBytes. When dir already holds more
// than maxBytes the error matches ErrResultsTooLarge and dir is unchanged.
// Needs root, loop devices and mkfs.ext4 (e2fsprogs).
func MountResults(ctx context.Context, dir string, maxBytes int64) (*ResultsFS, error) {
	return mountResults(ctx, dir, maxBytes, false)
}

func mountResults(ctx context.Context, dir string, maxBytes int64, own bool) (_ *ResultsFS, err error) {
	if maxBytes == 0 {
		maxBytes = DefaultMaxResults
	}
	if maxBytes < MinMaxResults {
		return nil, fmt.Errorf("%w: results cap %d is below the minimum %d bytes", ErrInvalidSpec, maxBytes, MinMaxResults)
	}
	dir, err = checkDir(dir, "results directory")
	if err != nil {
		return nil, err
	}
	// Claimed before anything is made, so two mounts on one dir cannot race.
	if _, busy := mounted.LoadOrStore(dir, (*ResultsFS)(nil)); busy {
		return nil, fmt.Errorf("%w: %s already has a results filesystem", ErrInvalidSpec, dir)
	}
	defer func() {
		if err != nil {
			mounted.Delete(dir)
		}
	}()
	for _, tool := range []string{"mkfs.ext4", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: results filesystem: %s not found (apt-get install e2fsprogs mount)", ErrUnavailable, tool)
		}
	}
	// Refuse what is already too large before making anything.
	if err := checkResultsTree(ctx, dir, maxBytes); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(dir)
	img, err := os.CreateTemp(parent, ".trainyard-results-*.img")
	if err != nil {
		return nil, fmt.Errorf("results filesystem: %w", err)
	}
	r := &ResultsFS{dir: dir, image: img.Name(), max: maxBytes, own: own}
	defer func() {
		if err != nil {
			os.Remove(r.image)
		}
	}()
	// Sparse: the image takes disk only for what is written into it. The
	// headroom (1/12 + 4 MiB, measured) covers ext4's metadata and block
	// reserve so that the whole cap is usable; the exact cap is then checked
	// by apparent size after the run.
	err = img.Truncate(imageSize(maxBytes))
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("results filesystem: %w", err)
	}
	// -i 8192: one inode per 8 KiB, so a cap of 1 GiB allows 131072 entries.
	if err := command(ctx, "mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", "-i", "8192",
		"-E", "lazy_itable_init=1,nodiscard", "-L", "trainyard-res", r.image); err != nil {
		return nil, fmt.Errorf("results filesystem: %w", err)
	}

	// The old contents move aside (same filesystem, a rename), dir becomes
	// the mount point, and they are copied in through the cap.
	aside := filepath.Join(parent, ".trainyard-results-old-"+randomHex(6))
	if err := os.Rename(dir, aside); err != nil {
		return nil, fmt.Errorf("results filesystem: %w", err)
	}
	restore := func() {
		_ = unmount(dir)
		_ = os.Remove(dir)
		_ = os.Rename(aside, dir)
	}
	if err := os.Mkdir(dir, fi.Mode().Perm()); err != nil {
		_ = os.Rename(aside, dir)
		return nil, fmt.Errorf("results filesystem: %w", err)
	}
	// The loop device is set to clear itself: it is released by the
	// unmount, so a failed run leaves no loop device behind.
	if err := mountLoop(ctx, r.image, dir); err != nil {
		restore()
		return nil, fmt.Errorf("results filesystem: %w", err)
	}
	// The train must see only its results, not ext4's lost+found.
	if err := os.Remove(filepath.Join(dir, "lost+found")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		restore()
		return nil, fmt.Errorf("results filesystem: %w", err)
	}
	if err := os.Chmod(dir, fi.Mode().Perm()); err != nil {
		restore()
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(dir, int(st.Uid), int(st.Gid)); err != nil {
			restore()
			return nil, err
		}
	}
	if err := copyResults(ctx, aside, dir, maxBytes); err != nil {
		restore()
		return nil, err
	}
	if err := os.RemoveAll(aside); err != nil {
		restore()
		return nil, fmt.Errorf("results filesystem: %w", err)
	}
	mounted.Store(dir, r)
	return r, nil
}

// mountLoop mounts the ext4 image on dir through a loop device that does
// direct I/O on the image: written results are then cached once, as the
// filesystem's pages, not a second time as the image file's. A stop writes
// its results twice over (the previous ones by pre-run, the new ones by the
// train), and this halves the dirty pages, which on a slow disk throttle
// every other writer of the stop (measured: a stop of 256 MiB in and out,
// 3.2-3.8 s before, 2.9-3.0 s after). Where losetup or direct I/O is not
// available it falls back to mount -o loop.
func mountLoop(ctx context.Context, image, dir string) error {
	out, err := exec.CommandContext(ctx, "losetup", "--direct-io=on", "--find", "--show", image).Output()
	if err != nil {
		return command(ctx, "mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noexec", image, dir)
	}
	dev := strings.TrimSpace(string(out))
	err = command(ctx, "mount", "-t", "ext4", "-o", "nosuid,nodev,noexec", dev, dir)
	// Detaching a device in use marks it autoclear, as mount -o loop does:
	// it goes with the unmount.
	_ = command(ctx, "losetup", "-d", dev)
	return err
}

// imageSize is the size of the filesystem made for a cap.
func imageSize(maxBytes int64) int64 { return (maxBytes + maxBytes/12 + 4<<20) &^ 4095 }

// Close unmounts the filesystem and removes its image; what was in it is
// gone. dir stays, empty. Safe to call more than once.
func (r *ResultsFS) Close() error {
	r.once.Do(func() {
		mounted.Delete(r.dir)
		// Emptied first: unlinking drops the files' dirty pages unwritten,
		// where an unmount would write all of them through the loop device
		// to an image deleted right after (0.4-0.6 s for 256 MiB here), and
		// the pages freed now are warm for the writes that follow.
		_ = fsutil.RemoveContents(r.dir) // best effort: what is left goes with the filesystem
		r.closeErr = unmount(r.dir)
		if err := os.Remove(r.image); err != nil && !errors.Is(err, fs.ErrNotExist) && r.closeErr == nil {
			r.closeErr = err
		}
	})
	return r.closeErr
}

// unmount retries a busy unmount briefly (a process of the finished
// container may still be exiting) and then detaches it lazily, which frees
// the loop device as soon as the last user is gone.
func unmount(dir string) error {
	var err error
	for i := 0; i < 20; i++ {
		err = unix.Unmount(dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) { // EINVAL: not mounted
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lerr := unix.Unmount(dir, unix.MNT_DETACH); lerr == nil {
		return nil
	}
	return fmt.Errorf("unmounting results filesystem %s: %w", dir, err)
}

// capResults finds or makes the capped results filesystem of a run: the
// caller's when it mounted one with MountResults, otherwise one for this run
// only (see afterRun). nil when the spec asks for no cap.
func capResults(ctx context.Context, s RunSpec) (*ResultsFS, error) {
	if s.MaxResults < 0 {
		return nil, nil
	}
	if v, ok := mounted.Load(s.ResultsDir); ok {
		rf := v.(*ResultsFS)
		if rf == nil {
			return nil, fmt.Errorf("%w: %s is being given a results filesystem", ErrInvalidSpec, s.ResultsDir)
		}
		if rf.max > s.MaxResults {
			return nil, fmt.Errorf("%w: %s has a results filesystem of %d bytes, more than the run's cap %d", ErrInvalidSpec, s.ResultsDir, rf.max, s.MaxResults)
		}
		return rf, nil
	}
	return mountResults(ctx, s.ResultsDir, s.MaxResults, true)
}

// outOfInodes reports whether the train used up the filesystem's inodes,
// that is, hit its bound on entries (blocks are not checked the same way:
// ext4 keeps a reserve, so a full filesystem still reports free blocks; the
// byte cap is checked by apparent size instead).
func (r *ResultsFS) outOfInodes() bool {
	var st unix.Statfs_t
	return unix.Statfs(r.dir, &st) == nil && st.Ffree == 0
}

// afterRun is called once the container is gone. Results over the cap (by
// apparent size, so a 1 TiB sparse file is refused before a byte of it is
// read) or over the bounds on their shape are refused with
// ErrResultsTooLarge. A filesystem Run made for itself is copied back into
// the plain directory through the same bounds and unmounted; the caller's
// stays mounted for post-run.
func (r *ResultsFS) afterRun(ctx context.Context, runErr error) error {
	var capErr error
	if r.outOfInodes() {
		capErr = fmt.Errorf("%w: the train used every entry its %d-byte results filesystem has", ErrResultsTooLarge, r.max)
	} else if err := checkResultsTree(ctx, r.dir, r.max); errors.Is(err, ErrResultsTooLarge) || errors.Is(err, ErrUnsafeImage) {
		capErr = err
	}
	if capErr != nil {
		if runErr != nil {
			capErr = fmt.Errorf("%w (%w)", capErr, runErr)
		}
		runErr = capErr
	}
	if !r.own {
		return runErr
	}
	if capErr == nil && ctx.Err() == nil {
		if err := r.copyBack(ctx); err != nil && runErr == nil {
			runErr = err
		}
	}
	if err := r.Close(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// copyBack copies the results out into a sibling directory, unmounts, and
// moves the copy's entries into the (then plain) results directory.
func (r *ResultsFS) copyBack(ctx context.Context) error {
	stage, err := os.MkdirTemp(filepath.Dir(r.dir), ".trainyard-results-out-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := copyResults(ctx, r.dir, stage, r.max); err != nil {
		return err
	}
	if err := r.Close(); err != nil {
		return err
	}
	ents, err := os.ReadDir(stage)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(stage, e.Name()), filepath.Join(r.dir, e.Name())); err != nil {
			return fmt.Errorf("results: %w", err)
		}
	}
	return nil
}

// resultsWalker enforces the results bounds on a walk of a host directory.
type resultsWalker struct {
	max, total int64
	entries    int
}

// visit checks one entry (rel is slash separated, relative to the tree's
// root). It is called before a directory is read, so depth is bounded before
// anything below it is touched.
func (w *resultsWalker) visit(rel string, info fs.FileInfo) error {
	w.entries++
	if w.entries > MaxResultsEntries {
		return fmt.Errorf("%w: more than %d entries", ErrResultsTooLarge, MaxResultsEntries)
	}
	if len(rel) > MaxResultsPath {
		return fmt.Errorf("%w: a path is longer than %d bytes (%s...)", ErrResultsTooLarge, MaxResultsPath, short(rel))
	}
	if d := strings.Count(rel, "/") + 1; d > MaxResultsDepth {
		return fmt.Errorf("%w: directories nested deeper than %d (%s...)", ErrResultsTooLarge, MaxResultsDepth, short(rel))
	}
	if n := len(rel) - strings.LastIndexByte(rel, '/') - 1; n > MaxResultsName {
		return fmt.Errorf("%w: a name is longer than %d bytes", ErrResultsTooLarge, MaxResultsName)
	}
	switch m := info.Mode(); {
	case m.IsDir(), m&fs.ModeSymlink != 0:
	case m.IsRegular():
		// Apparent size: a sparse file counts as what it claims to hold.
		if info.Size() > w.max-w.total {
			return fmt.Errorf("%w: more than %d bytes (%s is %d bytes)", ErrResultsTooLarge, w.max, rel, info.Size())
		}
		w.total += info.Size()
	default:
		return fmt.Errorf("%w: %s is a %s; results hold only files, directories and symlinks", ErrUnsafeImage, rel, m.Type())
	}
	return nil
}

func short(rel string) string {
	if len(rel) > 64 {
		return rel[:64]
	}
	return rel
}

// checkResultsTree walks dir with the bounds and reads nothing.
func checkResultsTree(ctx context.Context, dir string, max int64) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return walkResults(ctx, root, max, func(string, fs.FileInfo) error { return nil })
}

// walkResults walks root (through the os.Root, so no absolute path of the
// walk is ever longer than the host's PATH_MAX) and calls fn for every entry
// the bounds accept, parents before children.
func walkResults(ctx context.Context, root *os.Root, max int64, fn func(rel string, info fs.FileInfo) error) error {
	w := &resultsWalker{max: max}
	return fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if errors.Is(err, syscall.ENAMETOOLONG) {
			return fmt.Errorf("%w: a path is too long (%s...)", ErrResultsTooLarge, short(rel))
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, syscall.ENAMETOOLONG) {
			return fmt.Errorf("%w: a path is too long (%s...)", ErrResultsTooLarge, short(rel))
		}
		if err != nil {
			return err
		}
		if err := w.visit(rel, info); err != nil {
			return err
		}
		return fn(rel, info)
	})
}

// copyResults copies the tree at src into the existing directory dst within
// the bounds: files, directories (modes kept) and symlinks (as links, never
// followed). A symlink pointing out of the tree is refused. dst running out
// of space (the results filesystem is full) is ErrResultsTooLarge.
//
// Hand-written rather than cp -a: cp would follow no bounds, and the checks
// must happen before a directory is read, not after.
func copyResults(ctx context.Context, src, dst string, max int64) error {
	in, err := os.OpenRoot(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	type dirMode struct {
		rel  string
		perm fs.FileMode
	}
	var dirs []dirMode
	err = walkResults(ctx, in, max, func(rel string, info fs.FileInfo) error {
		if err := copyEntry(in, out, rel, info); err != nil {
			return err
		}
		if info.IsDir() {
			dirs = append(dirs, dirMode{rel, info.Mode().Perm()})
		}
		// Owners are kept: a user-namespaced train's results stay owned by
		// its shifted uid, as they would without the filesystem.
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			return out.Lchown(rel, int(st.Uid), int(st.Gid))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := out.Chmod(dirs[i].rel, dirs[i].perm); err != nil {
			return err
		}
	}
	return nil
}

// copyEntry copies one entry the walk accepted.
func copyEntry(in, out *os.Root, rel string, info fs.FileInfo) error {
	switch m := info.Mode(); {
	case m.IsDir():
		return noSpace(out.Mkdir(rel, 0o700))
	case m&fs.ModeSymlink != 0:
		target, err := in.Readlink(rel)
		if err != nil {
			return err
		}
		if escapes(rel, target) {
			return fmt.Errorf("%w: symlink %s points out of the results (%s)", ErrUnsafeImage, rel, target)
		}
		return noSpace(out.Symlink(target, rel))
	default:
		return noSpace(copyFile(in, out, rel, info))
	}
}

func copyFile(inRoot, out *os.Root, rel string, info fs.FileInfo) error {
	in, err := inRoot.Open(rel)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := out.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// At most the size checked by the walker, even if the file grows.
	n, err := io.Copy(f, io.LimitReader(in, info.Size()))
	if err == nil && n != info.Size() {
		err = fmt.Errorf("%s changed size while it was copied", rel)
	}
	if err == nil {
		err = f.Chmod(info.Mode().Perm())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: the results filesystem is full: %w", ErrResultsTooLarge, err)
	}
	return err
}

// escapes reports whether a symlink at rel (slash separated, relative to the
// tree's root) with the given target would resolve outside the tree. The
// check is lexical: a ".." after another link inside the tree is judged as
// if that link were a directory. That is enough because no reader of the
// results follows links: copies go through os.Root, the hardened packer
// refuses links, and a pht-v2 link resolves at the next stop inside that
// container's own filesystem.
func escapes(rel, target string) bool {
	if target == "" || strings.HasPrefix(target, "/") {
		return true
	}
	depth := strings.Count(rel, "/") // directories above the link inside the tree
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

func command(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 512 {
			msg = msg[:512]
		}
		return fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return nil
}

// limitResultsTar passes the tar stream of a results directory (as the
// Docker copy API sends it: every name under one top directory) through the
// results bounds, so that a copy-out stops at the first entry over them:
// sizes are the headers' (apparent) sizes, so a sparse file is refused
// before its bytes are read.
//
// This is where the Docker backend enforces the cap. The results live in an
// anonymous volume that the copy API fills and empties, and the engine can
// size neither it (the local driver's only sized volume is a tmpfs, which
// the copy API cannot see: it is mounted only while the container runs) nor
// the container's root (--storage-opt size needs overlay2 on xfs with
// pquota). While the train runs, its results are bounded by the daemon's
// disk only; the station's disk never receives more than the cap.
func limitResultsTar(ctx context.Context, r io.Reader, max int64) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(filterResultsTar(ctx, r, pw, max)) }()
	return pr
}

func filterResultsTar(ctx context.Context, r io.Reader, w io.Writer, max int64) error {
	tr, tw := tar.NewReader(r), tar.NewWriter(w)
	wk := &resultsWalker{max: max}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("results archive: %w", err)
		}
		_, rel, _ := strings.Cut(strings.Trim(hdr.Name, "/"), "/")
		if rel == "" && hdr.Typeflag != tar.TypeDir {
			// Only the results directory itself sits at the top.
			return fmt.Errorf("%w: results archive entry %q is not under the results directory", ErrUnsafeImage, hdr.Name)
		}
		if rel != "" {
			if !fs.ValidPath(rel) {
				return fmt.Errorf("%w: results archive entry %q is not a clean relative name", ErrUnsafeImage, hdr.Name)
			}
			if err := wk.visit(rel, hdr.FileInfo()); err != nil {
				return err
			}
			if hdr.Typeflag == tar.TypeSymlink && escapes(rel, hdr.Linkname) {
				return fmt.Errorf("%w: symlink %s points out of the results (%s)", ErrUnsafeImage, rel, hdr.Linkname)
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// MountResults is MountResults for a station that holds a Runner: it lets
// the caller keep the results on their capped filesystem from before the run
// until post-run has sealed them.
func (r *Runc) MountResults(ctx context.Context, dir string, maxBytes int64) (io.Closer, error) {
	return MountResults(ctx, dir, maxBytes)
}
