package hardened

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/trainyard/trainyard/internal/fsutil"
)

// Bounds on a tree, so that neither a hostile tarball nor a hostile train's
// results can exhaust inodes or make a walk quadratic: depth is checked
// before a directory is read, so 10,000 nested directories cost 64 steps.
// Linux allows 255 bytes per name and 4096 per path; deeper or longer trees
// could not be opened by the creator anyway.
const (
	maxPathLen   = 4096
	maxNameLen   = 255
	maxTreeDepth = 64
)

// maxTreeEntries bounds the entries of a tree (a variable so that a test
// can reach it without a million files).
var maxTreeEntries = 1 << 20

// DefaultMaxResults is the byte cap on sealed results unless WithMaxResults
// says otherwise (the station's --max-results default).
const DefaultMaxResults int64 = 1 << 30

// checkTreePath refuses a path (slash separated, relative) that is too long,
// too deep or has a name too long.
func checkTreePath(p string) error {
	if len(p) > maxPathLen {
		return fmt.Errorf("%w: a path is longer than %d bytes (%.64s...)", ErrTreeBounds, maxPathLen, p)
	}
	if d := strings.Count(p, "/") + 1; d > maxTreeDepth {
		return fmt.Errorf("%w: directories nested deeper than %d (%.64s...)", ErrTreeBounds, maxTreeDepth, p)
	}
	if n := len(p) - strings.LastIndexByte(p, '/') - 1; n > maxNameLen {
		return fmt.Errorf("%w: a name is longer than %d bytes (%.64s...)", ErrTreeBounds, maxNameLen, p)
	}
	return nil
}

// Entry is one line of a tree manifest. Mode holds only permission bits.
type Entry struct {
	Path   string `json:"path"`
	Type   string `json:"type"` // "file" or "dir"
	Mode   uint32 `json:"mode"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
}

// Manifest lists every file and directory of a tree, sorted by path. Its
// digest binds names, types, modes, sizes and contents, so renaming, moving
// bytes between files, adding or dropping a file all change it.
type Manifest struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

// Digest returns "sha256:<hex>" of the manifest's JSON encoding (entries are
// sorted first; encoding/json output of this struct is deterministic).
func (m *Manifest) Digest() string {
	m.Version = 1
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
	b, _ := json.Marshal(m)
	return digestOf(b)
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// TreeManifest computes the manifest of a tree without packing it.
func TreeManifest(ctx context.Context, fsys fs.FS) (*Manifest, error) {
	return packTree(ctx, fsys, nil, -1)
}

// packTree walks fsys and, when w is non-nil, writes it as a normalized tar
// stream (no owners, no times, permission bits only). Only regular files and
// directories are accepted: a symlink in results could point at host files,
// a device, FIFO or socket is no result. The sum of file sizes is bounded by
// maxBytes (< 0: no cap), counted from the sizes the filesystem reports
// before anything is read, so a sparse 1 TiB file is refused at once; the
// shape is bounded by checkTreePath and maxTreeEntries.
func packTree(ctx context.Context, fsys fs.FS, w io.Writer, maxBytes int64) (*Manifest, error) {
	m := &Manifest{Version: 1}
	var total int64
	var tw *tar.Writer
	if w != nil {
		tw = tar.NewWriter(w)
	}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == "." {
			if !d.IsDir() {
				return fmt.Errorf("%w: tree root is not a directory", ErrUnsupported)
			}
			return nil
		}
		if len(m.Entries) >= maxTreeEntries {
			return fmt.Errorf("%w: more than %d entries", ErrTreeBounds, maxTreeEntries)
		}
		// Before a directory is descended into: WalkDir calls this first.
		if err := checkTreePath(p); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() && maxBytes >= 0 {
			if info.Size() > maxBytes-total {
				return fmt.Errorf("%w: more than %d bytes (%s is %d bytes)", ErrResultsTooLarge, maxBytes, p, info.Size())
			}
			total += info.Size()
		}
		perm := uint32(info.Mode().Perm())
		hdr := &tar.Header{Name: p, Mode: int64(perm), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			m.Entries = append(m.Entries, Entry{Path: p, Type: "dir", Mode: perm})
			if tw != nil {
				hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
				return tw.WriteHeader(hdr)
			}
			return nil
		case info.Mode().IsRegular():
			f, err := fsys.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			h := sha256.New()
			var dst io.Writer = h
			if tw != nil {
				hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				dst = io.MultiWriter(tw, h)
			}
			n, err := copyBig(dst, io.LimitReader(f, info.Size()))
			if err != nil {
				return err
			}
			if n != info.Size() {
				return fmt.Errorf("%s changed size while it was read", p)
			}
			m.Entries = append(m.Entries, Entry{Path: p, Type: "file", Mode: perm, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
			return nil
		default:
			return fmt.Errorf("%w: %s is a %s; only regular files and directories are allowed", ErrUnsupported, p, typeName(info.Mode()))
		}
	})
	if err != nil {
		return nil, err
	}
	if tw != nil {
		if err := tw.Close(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// typeName names a file type for an error message.
func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file (" + m.Type().String() + ")"
}

// prepareDir makes dir if needed and insists it is empty, so that unpacked
// content never mixes with what was there.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	return nil
}

// clearDir removes everything below dir (after a refused unpack), best
// effort.
func clearDir(dir string) { _ = fsutil.RemoveContents(dir) }

// unpackTree extracts a tar stream made by packTree into dir (which must be
// empty) and returns the manifest of what it wrote. Writes go through
// os.Root, and entries are checked strictly: clean relative names, no
// duplicates, parents before children, only files and directories.
func unpackTree(ctx context.Context, r io.Reader, dir string) (*Manifest, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	m := &Manifest{Version: 1}
	seen := map[string]string{".": "dir"}
	type dirMode struct {
		name string
		perm fs.FileMode
	}
	var dirs []dirMode
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, ErrTampered) || errors.Is(err, ErrMalformed) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: tree archive: %v", ErrMalformed, err)
		}
		if len(m.Entries) >= maxTreeEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrTreeBounds, maxTreeEntries)
		}
		name := hdr.Name
		if hdr.Typeflag == tar.TypeDir {
			name = strings.TrimSuffix(name, "/")
		}
		if len(name) > maxPathLen || !fs.ValidPath(name) || name == "." || strings.Contains(name, "\\") {
			return nil, fmt.Errorf("%w: bad path %q in tree", ErrTampered, hdr.Name)
		}
		if err := checkTreePath(name); err != nil {
			return nil, err
		}
		if _, dup := seen[name]; dup {
			return nil, fmt.Errorf("%w: %q appears twice in tree", ErrTampered, name)
		}
		if seen[path.Dir(name)] != "dir" {
			return nil, fmt.Errorf("%w: %q comes before its directory", ErrTampered, name)
		}
		if hdr.Mode&^0o777 != 0 {
			return nil, fmt.Errorf("%w: %q has mode %o beyond permission bits", ErrTampered, name, hdr.Mode)
		}
		perm := fs.FileMode(hdr.Mode)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o700); err != nil {
				return nil, err
			}
			seen[name] = "dir"
			dirs = append(dirs, dirMode{name, perm})
			m.Entries = append(m.Entries, Entry{Path: name, Type: "dir", Mode: uint32(perm)})
		case tar.TypeReg:
			if hdr.Size < 0 {
				return nil, fmt.Errorf("%w: %q has negative size", ErrTampered, name)
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, err
			}
			h := sha256.New()
			n, err := copyBig(io.MultiWriter(f, h), tr)
			if err == nil {
				err = f.Chmod(perm)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if errors.Is(err, ErrTampered) || errors.Is(err, ErrMalformed) {
					return nil, err
				}
				return nil, fmt.Errorf("writing %s: %w", name, err)
			}
			seen[name] = "file"
			m.Entries = append(m.Entries, Entry{Path: name, Type: "file", Mode: uint32(perm), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
		default:
			return nil, fmt.Errorf("%w: %q has tar type %q; only files and directories are allowed", ErrTampered, name, hdr.Typeflag)
		}
	}
	// Directory modes last, so a read-only directory can still be filled.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := root.Chmod(dirs[i].name, dirs[i].perm); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// copyBuf holds 1 MiB copy buffers: io.Copy's 32 KiB ones make a syscall
// per 32 KiB of every results file read and written, a quarter of a stop's
// CPU on large results.
var copyBuf = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func copyBig(dst io.Writer, src io.Reader) (int64, error) {
	b := copyBuf.Get().(*[]byte)
	defer copyBuf.Put(b)
	return io.CopyBuffer(dst, src, *b)
}
