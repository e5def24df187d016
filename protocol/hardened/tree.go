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
	"time"
)

// Limits on a tree, so that a hostile tarball cannot exhaust inodes.
const (
	maxTreeEntries = 1 << 20
	maxPathLen     = 4096
)

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
	return packTree(ctx, fsys, nil)
}

// packTree walks fsys and, when w is non-nil, writes it as a normalized tar
// stream (no owners, no times, permission bits only). Only regular files and
// directories are accepted: a symlink in results could point at host files.
func packTree(ctx context.Context, fsys fs.FS, w io.Writer) (*Manifest, error) {
	m := &Manifest{Version: 1}
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
			return fmt.Errorf("%w: more than %d entries", ErrUnsupported, maxTreeEntries)
		}
		info, err := d.Info()
		if err != nil {
			return err
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
			n, err := io.Copy(dst, io.LimitReader(f, info.Size()))
			if err != nil {
				return err
			}
			if n != info.Size() {
				return fmt.Errorf("%s changed size while it was read", p)
			}
			m.Entries = append(m.Entries, Entry{Path: p, Type: "file", Mode: perm, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
			return nil
		default:
			return fmt.Errorf("%w: %s is a %s; only regular files and directories are allowed", ErrUnsupported, p, info.Mode().Type())
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

// clearDir removes everything below dir (after a refused unpack).
func clearDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(dir + string(os.PathSeparator) + e.Name())
	}
}

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
			return nil, fmt.Errorf("%w: more than %d entries", ErrUnsupported, maxTreeEntries)
		}
		name := hdr.Name
		if hdr.Typeflag == tar.TypeDir {
			name = strings.TrimSuffix(name, "/")
		}
		if len(name) > maxPathLen || !fs.ValidPath(name) || name == "." || strings.Contains(name, "\\") {
			return nil, fmt.Errorf("%w: bad path %q in tree", ErrTampered, hdr.Name)
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
			n, err := io.Copy(io.MultiWriter(f, h), tr)
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
