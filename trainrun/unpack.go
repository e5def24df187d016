package trainrun

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Unpack limits applied unless overridden with UnpackOptions.
const (
	DefaultMaxUnpackBytes   int64 = 8 << 30
	DefaultMaxUnpackEntries       = 1 << 20
)

// UnpackOptions bounds and adjusts an unpack. The zero value uses the defaults.
type UnpackOptions struct {
	// MaxBytes bounds the sum of regular file sizes; 0 = DefaultMaxUnpackBytes.
	MaxBytes int64
	// MaxEntries bounds the number of tar entries; 0 = DefaultMaxUnpackEntries.
	MaxEntries int
	// IDShift is added to every uid and gid (for a user-namespaced container).
	IDShift uint32
	// StripComponents drops that many leading path elements of each entry
	// (entries with fewer are skipped), as tar --strip-components does.
	StripComponents int
	// NoChown keeps files owned by the caller (tests run without root).
	NoChown bool
}

// UnpackImage writes the flattened filesystem of img into dir, streaming
// (mutate.Extract applies the layers in order and honours whiteouts). Every
// entry is written through an os.Root, so neither "..", absolute names nor
// symlinks planted by an earlier entry can place a file outside dir; such
// entries fail with ErrUnsafeImage. Device nodes and FIFOs are skipped (the
// runtime provides /dev); setuid and setgid bits are dropped.
func UnpackImage(ctx context.Context, img v1.Image, dir string, opt UnpackOptions) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	return UnpackTar(ctx, rc, dir, opt)
}

// UnpackTar writes the tar stream r into dir with the same checks as UnpackImage.
func UnpackTar(ctx context.Context, r io.Reader, dir string, opt UnpackOptions) error {
	if opt.MaxBytes == 0 {
		opt.MaxBytes = DefaultMaxUnpackBytes
	}
	if opt.MaxEntries == 0 {
		opt.MaxEntries = DefaultMaxUnpackEntries
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer root.Close()
	u := unpacker{root: root, opt: opt, budget: opt.MaxBytes}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unpack: reading image: %w", err)
		}
		if n >= opt.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeImage, opt.MaxEntries)
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
}

type unpacker struct {
	root   *os.Root
	opt    UnpackOptions
	budget int64
}

// cleanName turns a tar name into a local path, reports it unsafe, or says
// to skip it (the root itself, or too short for StripComponents).
func (u *unpacker) cleanName(name string) (string, bool, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == "." {
		return "", false, nil
	}
	if !filepath.IsLocal(p) {
		return "", false, fmt.Errorf("%w: entry %q leaves the root filesystem", ErrUnsafeImage, name)
	}
	if u.opt.StripComponents > 0 {
		parts := strings.Split(p, "/")
		if len(parts) <= u.opt.StripComponents {
			return "", false, nil
		}
		p = strings.Join(parts[u.opt.StripComponents:], "/")
	}
	return p, true, nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, ok, err := u.cleanName(hdr.Name)
	if err != nil || !ok {
		return err
	}
	fail := func(err error) error {
		if errors.Is(err, ErrUnsafeImage) {
			return err
		}
		// os.Root refuses paths that escape through symlinks; report them as unsafe.
		if strings.Contains(err.Error(), "path escapes from parent") {
			return fmt.Errorf("%w: entry %q: %v", ErrUnsafeImage, hdr.Name, err)
		}
		return fmt.Errorf("unpack %q: %w", hdr.Name, err)
	}
	if dir := path.Dir(name); dir != "." {
		if err := u.root.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
	}
	mode := fs.FileMode(hdr.Mode) & (fs.ModePerm | fs.ModeSticky)
	if hdr.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := u.root.Lstat(name); err == nil && !fi.IsDir() {
			if err := u.root.Remove(name); err != nil {
				return fail(err)
			}
		}
		if err := u.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fail(err)
		}
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives still use TypeRegA
		if hdr.Size < 0 || hdr.Size > u.budget {
			return fmt.Errorf("%w: file contents exceed %d bytes", ErrUnsafeImage, u.opt.MaxBytes)
		}
		u.budget -= hdr.Size
		if err := u.replace(name); err != nil {
			return fail(err)
		}
		f, err := u.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fail(err)
		}
		_, err = io.CopyN(f, r, hdr.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fail(err)
		}
	case tar.TypeSymlink:
		if err := u.replace(name); err != nil {
			return fail(err)
		}
		// The target is resolved inside the container's root by the kernel.
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return fail(err)
		}
	case tar.TypeLink:
		target, ok, err := u.cleanName(hdr.Linkname)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: hard link %q to the root", ErrUnsafeImage, hdr.Name)
		}
		if err := u.replace(name); err != nil {
			return fail(err)
		}
		if err := u.root.Link(target, name); err != nil {
			return fail(err)
		}
		return nil // a hard link shares its target's owner and mode
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("%w: entry %q has unsupported type %q", ErrUnsafeImage, hdr.Name, hdr.Typeflag)
	}
	if !u.opt.NoChown {
		uid, gid := hdr.Uid+int(u.opt.IDShift), hdr.Gid+int(u.opt.IDShift)
		if hdr.Uid < 0 || hdr.Gid < 0 || uid > 1<<31 || gid > 1<<31 {
			return fmt.Errorf("%w: entry %q has owner %d:%d", ErrUnsafeImage, hdr.Name, hdr.Uid, hdr.Gid)
		}
		if err := u.root.Lchown(name, uid, gid); err != nil {
			return fail(err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := u.root.Chmod(name, mode); err != nil {
			return fail(err)
		}
		if !hdr.ModTime.IsZero() && hdr.Typeflag != tar.TypeDir {
			_ = u.root.Chtimes(name, hdr.ModTime, hdr.ModTime)
		}
	}
	return nil
}

// replace removes whatever is at name so a later layer's entry wins; a
// directory is only replaced by a non-directory when it is empty.
func (u *unpacker) replace(name string) error {
	err := u.root.Remove(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
