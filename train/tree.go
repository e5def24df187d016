package train

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/errdefs"
)

// Entry is one file, directory or link of a Tree.
type Entry struct {
	Name     string // relative to the tree's root, slash separated; "" is the root itself
	Type     byte   // tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, ...
	Mode     int64
	Size     int64
	Linkname string
	ModTime  time.Time
	Uid, Gid int
	spooled  bool  // a regular file whose content is in the spool
	off      int64 // where in the spool (Size bytes)
}

// IsRegular reports whether the entry is a regular file (the only kind the
// PHT hashes, encrypts and decrypts).
//
//lint:ignore SA1019 old archives may still mark regular files with TypeRegA ('\x00')
func (e *Entry) IsRegular() bool { return e.Type == tar.TypeReg || e.Type == tar.TypeRegA }

// Tree is a directory of a train image (TrainDir, ResultsDir) as the merged
// filesystem shows it, with regular file contents spooled to disk so that
// they can be read in any order without holding them in memory. Entries are
// in filepath.Walk order, which is the order moby's archive (and so the PHT
// results hash) uses.
type Tree struct {
	Root    string // the prefix it was read from, e.g. ResultsDir
	Entries []*Entry
	spool   *Spool
}

// Spool holds file contents in one private temporary file, appended to and
// read back by offset: a results tree of a thousand files costs one file
// creation, not a thousand (a tenth of a pht-v2 pre-run's CPU went to
// creating and removing spool files). Its directory is the callers' for
// other temporary files.
type Spool struct {
	dir string
	mu  sync.Mutex
	f   *os.File
	end int64
}

// NewSpool creates a spool under dir ("" for the system temp directory).
func NewSpool(dir string) (*Spool, error) {
	d, err := os.MkdirTemp(dir, "trainyard-spool-")
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(d, "contents"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		os.RemoveAll(d)
		return nil, err
	}
	return &Spool{dir: d, f: f}, nil
}

// Close removes the spool and every file in it.
func (s *Spool) Close() error {
	s.f.Close()
	return os.RemoveAll(s.dir)
}

// Dir is the spool's directory (for temporary files of callers).
func (s *Spool) Dir() string { return s.dir }

// write appends what fn writes and returns where it starts and its length.
// A failed write leaves nothing: the next one starts at the same place.
func (s *Spool) write(fn func(w io.Writer) error) (off, n int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cw := &countWriter{w: io.NewOffsetWriter(s.f, s.end)}
	if err := fn(cw); err != nil {
		return 0, 0, err
	}
	off = s.end
	s.end += cw.n
	return off, cw.n, nil
}

// open reads an entry's content; it is also an io.ReaderAt (SizedTransform).
func (s *Spool) open(e *Entry) io.ReadCloser {
	return spoolReader{io.NewSectionReader(s.f, e.off, e.Size)}
}

type spoolReader struct{ *io.SectionReader }

func (spoolReader) Close() error { return nil }

// ReadTrees reads the given directories of img in one pass over its layers
// and spools their regular files into sp. A prefix that is absent yields an
// empty tree.
func ReadTrees(ctx context.Context, img v1.Image, sp *Spool, prefixes ...string) (map[string]*Tree, error) {
	trees := make(map[string]*Tree, len(prefixes))
	for i, p := range prefixes {
		prefixes[i] = cleanName(p)
		trees[prefixes[i]] = &Tree{Root: prefixes[i], spool: sp}
	}
	err := Walk(ctx, img, func(prefix, rel string, hdr *tar.Header, r io.Reader) error {
		return trees[prefix].add(rel, hdr, r)
	}, prefixes...)
	if err != nil {
		return nil, err
	}
	for _, t := range trees {
		SortWalkOrder(t.Entries)
	}
	return trees, nil
}

// NewTree returns an empty tree rooted at root whose regular files spool
// into sp; fill it with Add from a Walk callback.
func NewTree(sp *Spool, root string) *Tree { return &Tree{Root: cleanName(root), spool: sp} }

// Add records one walked entry (rel, hdr and r as a Walk callback gets
// them), spooling a regular file's content. Call SortWalkOrder on Entries
// when done.
func (t *Tree) Add(rel string, hdr *tar.Header, r io.Reader) error { return t.add(rel, hdr, r) }

// Open returns the content of a regular entry.
func (t *Tree) Open(e *Entry) (io.ReadCloser, error) {
	if !e.spooled {
		return nil, fmt.Errorf("/%s/%s is not a regular file", t.Root, e.Name)
	}
	return t.spool.open(e), nil
}

// Lookup returns the entry with the given relative name, or nil.
func (t *Tree) Lookup(name string) *Entry {
	name = cleanName(name)
	for _, e := range t.Entries {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Files returns the regular entries in walk order.
func (t *Tree) Files() []*Entry {
	var out []*Entry
	for _, e := range t.Entries {
		if e.IsRegular() {
			out = append(out, e)
		}
	}
	return out
}

// Rewrite replaces the content of a regular entry with what fn writes while
// reading the old content (for example its decryption), streaming through
// disk. On error the entry keeps its old content.
func (t *Tree) Rewrite(e *Entry, fn func(dst io.Writer, src io.Reader) error) error {
	src, err := t.Open(e)
	if err != nil {
		return err
	}
	defer src.Close()
	// The new content is appended; the old stays in the spool unused.
	off, n, err := t.spool.write(func(w io.Writer) error { return fn(w, src) })
	if err != nil {
		return err
	}
	e.off, e.Size = off, n
	return nil
}

// AddFile adds (or replaces) a regular file with the content of r.
func (t *Tree) AddFile(name string, mode int64, r io.Reader) (*Entry, error) {
	name = cleanName(name)
	if name == "" {
		return nil, fmt.Errorf("empty file name")
	}
	off, n, err := t.spool.write(func(w io.Writer) error { _, err := io.Copy(w, r); return err })
	if err != nil {
		return nil, err
	}
	e := &Entry{Name: name, Type: tar.TypeReg, Mode: mode, Size: n, ModTime: time.Now(), spooled: true, off: off}
	kept := t.Entries[:0]
	for _, old := range t.Entries {
		if old.Name != name {
			kept = append(kept, old)
		}
	}
	t.Entries = append(kept, e)
	SortWalkOrder(t.Entries)
	return e, nil
}

// Remove drops an entry (not its children).
func (t *Tree) Remove(name string) {
	kept := t.Entries[:0]
	for _, e := range t.Entries {
		if e.Name != name {
			kept = append(kept, e)
		}
	}
	t.Entries = kept
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// SortWalkOrder sorts entries like filepath.Walk visits them: depth first,
// names sorted inside each directory, so "a/x" comes before "a.txt".
func SortWalkOrder(es []*Entry) {
	sort.SliceStable(es, func(i, j int) bool { return WalkLess(es[i].Name, es[j].Name) })
}

// WalkLess compares two slash paths in filepath.Walk order.
func WalkLess(a, b string) bool {
	if a == "" || b == "" {
		return a == "" && b != ""
	}
	for {
		ai, bi := strings.IndexByte(a, '/'), strings.IndexByte(b, '/')
		ac, bc := a, b
		if ai >= 0 {
			ac = a[:ai]
		}
		if bi >= 0 {
			bc = b[:bi]
		}
		if ac != bc {
			return ac < bc
		}
		if ai < 0 || bi < 0 {
			return ai < 0 && bi >= 0 // the directory itself before its children
		}
		a, b = a[ai+1:], b[bi+1:]
	}
}

// ExtractTo writes the tree under dir (created if needed), for example into
// a container root filesystem: directories, regular files and symlinks
// (created as links, never followed). Names can never escape dir.
func (t *Tree) ExtractTo(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, e := range t.Entries {
		if e.Name == "" {
			continue
		}
		if d := filepath.Dir(filepath.FromSlash(e.Name)); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		name := filepath.FromSlash(e.Name)
		mode := os.FileMode(e.Mode).Perm()
		switch {
		case e.Type == tar.TypeDir:
			if err := root.MkdirAll(name, mode|0o700); err != nil {
				return err
			}
		case e.IsRegular():
			if err := extractFile(root, name, mode, t.spool.open(e)); err != nil {
				return fmt.Errorf("/%s/%s: %w", t.Root, e.Name, err)
			}
		case e.Type == tar.TypeSymlink:
			if err := root.Symlink(e.Linkname, name); err != nil {
				return err
			}
		}
	}
	return nil
}

func extractFile(root *os.Root, name string, mode os.FileMode, src io.Reader) error {
	dst, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode|0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

// DefaultMaxResults is the byte cap CheckResultsDir applies for 0.
const DefaultMaxResults int64 = 1 << 30

// Bounds on a results tree (Linux's own limits are 255 bytes per name and
// 4096 per path; the depth bound keeps every later walk linear).
const (
	MaxResultsDepth   = 64
	MaxResultsPath    = 4096
	MaxResultsName    = 255
	MaxResultsEntries = 1 << 20
)

// maxResultsEntries is MaxResultsEntries, lowered by a test.
var maxResultsEntries = MaxResultsEntries

// ErrResultsTooLarge: a results directory exceeds the byte cap (counted by
// apparent size, so a sparse file counts as what it claims) or a bound on
// depth, path length or entry count, or holds what results may not (a
// device, FIFO, socket or a symlink pointing out of the tree).
var ErrResultsTooLarge = errdefs.New("results out of bounds", errdefs.ErrResultsTooLarge)

// CheckResultsDir walks what a train left in dir (through an os.Root, so no
// host path is ever too long to open) and refuses it unless every bound
// holds; it reads no file content. Depth is checked before a directory is
// read, so 10,000 nested directories cost 64 steps. maxBytes 0 means
// DefaultMaxResults, < 0 no byte cap.
func CheckResultsDir(ctx context.Context, dir string, maxBytes int64) error {
	if maxBytes == 0 {
		maxBytes = DefaultMaxResults
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var total int64
	entries := 0
	return fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if errors.Is(err, syscall.ENAMETOOLONG) {
			return fmt.Errorf("%w: a path is too long (%.64s...)", ErrResultsTooLarge, rel)
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
		if entries++; entries > maxResultsEntries {
			return fmt.Errorf("%w: more than %d entries", ErrResultsTooLarge, maxResultsEntries)
		}
		if len(rel) > MaxResultsPath {
			return fmt.Errorf("%w: a path is longer than %d bytes (%.64s...)", ErrResultsTooLarge, MaxResultsPath, rel)
		}
		if n := strings.Count(rel, "/") + 1; n > MaxResultsDepth {
			return fmt.Errorf("%w: directories nested deeper than %d (%.64s...)", ErrResultsTooLarge, MaxResultsDepth, rel)
		}
		if n := len(rel) - strings.LastIndexByte(rel, '/') - 1; n > MaxResultsName {
			return fmt.Errorf("%w: a name is longer than %d bytes (%.64s...)", ErrResultsTooLarge, MaxResultsName, rel)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch m := info.Mode(); {
		case m.IsDir():
		case m.IsRegular():
			if maxBytes >= 0 {
				if info.Size() > maxBytes-total {
					return fmt.Errorf("%w: more than %d bytes (%s is %d bytes)", ErrResultsTooLarge, maxBytes, rel, info.Size())
				}
				total += info.Size()
			}
		case m&fs.ModeSymlink != 0:
			target, err := root.Readlink(rel)
			if err != nil {
				return err
			}
			if linkEscapes(rel, target) {
				return fmt.Errorf("%w: symlink %s points out of the results (%s)", ErrResultsTooLarge, rel, target)
			}
		default:
			return fmt.Errorf("%w: %s is a %s; results hold only files, directories and symlinks", ErrResultsTooLarge, rel, m.Type())
		}
		return nil
	})
}

// linkEscapes reports whether a symlink at rel (relative to the tree's
// root) whose target is target resolves, lexically, outside the tree. An
// absolute target always escapes: it would be read against whatever root
// the next reader has.
func linkEscapes(rel, target string) bool {
	if target == "" || strings.HasPrefix(target, "/") {
		return true
	}
	depth := strings.Count(rel, "/")
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}
