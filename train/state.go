package train

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/errdefs"
)

// State is the mutable part of a train image: the raw config, the train
// files and the results, read in one pass over the layers.
type State struct {
	Config  []byte // raw train_config.json, nil when absent
	Train   *Tree  // TrainDir
	Results *Tree  // ResultsDir
	UserKey []byte // UserKeyPath, nil when absent
	Spool   *Spool
}

// Close removes the spooled contents.
func (s *State) Close() error { return s.Spool.Close() }

// DefaultMaxStateBytes bounds what ReadState spools to disk (train files
// and results together) unless WithMaxStateBytes says otherwise. A legacy
// train carries no signed sizes that could bound it more tightly.
const DefaultMaxStateBytes = 2 << 30

// ErrTooLarge is wrapped when a train's state or manifest is larger than
// the reader's bound.
var ErrTooLarge = errdefs.New("train input too large", errdefs.ErrLimit)

// ReadOption configures ReadState.
type ReadOption func(*readOptions)

type readOptions struct{ maxBytes int64 }

// WithMaxStateBytes bounds the bytes ReadState spools (default
// DefaultMaxStateBytes); each entry's header is checked before its content
// is read, and the content is read through the remaining budget.
func WithMaxStateBytes(n int64) ReadOption { return func(o *readOptions) { o.maxBytes = n } }

// ReadState reads the train state of img, spooling file contents under
// tmpDir ("" for the system temp directory). Close the State when done.
// Sparse files, devices, fifos and hard links leaving their directory are
// refused (see Walk), and at most the WithMaxStateBytes budget is spooled.
func ReadState(ctx context.Context, img v1.Image, tmpDir string, opts ...ReadOption) (*State, error) {
	o := readOptions{maxBytes: DefaultMaxStateBytes}
	for _, opt := range opts {
		opt(&o)
	}
	sp, err := NewSpool(tmpDir)
	if err != nil {
		return nil, err
	}
	budget := o.maxBytes
	st := &State{Spool: sp, Train: &Tree{Root: TrainDir, spool: sp}, Results: &Tree{Root: ResultsDir, spool: sp}}
	err = Walk(ctx, img, func(prefix, rel string, hdr *tar.Header, r io.Reader) error {
		switch prefix {
		case ConfigPath, UserKeyPath:
			if r == nil {
				return fmt.Errorf("%w: /%s is not a regular file", ErrLayout, prefix)
			}
			data, err := readLimited(r, MaxConfigSize)
			if err != nil {
				return fmt.Errorf("/%s: %w", prefix, err)
			}
			if prefix == ConfigPath {
				st.Config = data
			} else {
				st.UserKey = data
			}
			return nil
		}
		t := st.Train
		if prefix == ResultsDir {
			t = st.Results
		}
		if r != nil {
			// The header's size is what the tar reader will deliver.
			if hdr.Size > budget {
				return fmt.Errorf("%w: %q is %d bytes, %d left of the %d-byte bound", ErrTooLarge, "/"+path.Join(prefix, rel), hdr.Size, budget, o.maxBytes)
			}
			budget -= hdr.Size
		}
		return t.add(rel, hdr, r)
	}, ConfigPath, UserKeyPath, TrainDir, ResultsDir)
	if err != nil {
		sp.Close()
		return nil, err
	}
	SortWalkOrder(st.Train.Entries)
	SortWalkOrder(st.Results.Entries)
	return st, nil
}

// add records one walked entry, spooling regular file content.
func (t *Tree) add(rel string, hdr *tar.Header, r io.Reader) error {
	if rel == "" && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%w: /%s is not a directory", ErrLayout, t.Root)
	}
	e := &Entry{
		Name: rel, Type: hdr.Typeflag, Mode: hdr.Mode, Size: hdr.Size, Linkname: hdr.Linkname,
		ModTime: hdr.ModTime, Uid: hdr.Uid, Gid: hdr.Gid,
	}
	if r != nil {
		off, n, err := t.spool.write(func(w io.Writer) error { _, err := io.Copy(w, r); return err })
		if err != nil {
			return fmt.Errorf("spool /%s/%s: %w", t.Root, rel, err)
		}
		e.Size, e.spooled, e.off = n, true, off
	}
	t.Entries = append(t.Entries, e)
	return nil
}

// StateContent is what a PHT state layer holds. A nil Transform copies a
// tree's files as they are; a nil UserKey writes a whiteout for the user
// key file, a nil Config leaves the config out.
type StateContent struct {
	Config    []byte
	Train     *Tree
	TrainTF   Transform
	Results   *Tree
	ResultsTF Transform
	UserKey   []byte
}

// WriteState writes a complete state layer for img from c, in a temporary
// file under tmpDir, and returns img with that layer replacing the previous
// state layer. The returned layer's file backs the image: Remove it after
// the image has been saved.
func WriteState(img v1.Image, tmpDir string, c StateContent) (v1.Image, *FileLayer, error) {
	w, err := NewStateWriter(tmpDir, img)
	if err != nil {
		return nil, nil, err
	}
	if err := writeStateBody(w, c); err != nil {
		w.Abort()
		return nil, nil, err
	}
	l, err := w.Close()
	if err != nil {
		return nil, nil, err
	}
	out, err := WithState(img, l)
	if err != nil {
		l.Remove()
		return nil, nil, err
	}
	return out, l, nil
}

func writeStateBody(w *LayerWriter, c StateContent) error {
	if c.Train != nil {
		if err := w.Tree(c.Train, c.TrainTF); err != nil {
			return err
		}
	}
	if c.Results != nil {
		if err := w.Tree(c.Results, c.ResultsTF); err != nil {
			return err
		}
	}
	if c.Config != nil {
		if err := w.File(ConfigPath, 0o644, int64(len(c.Config)), bytes.NewReader(c.Config)); err != nil {
			return err
		}
	}
	if c.UserKey != nil {
		return w.File(UserKeyPath, 0o644, int64(len(c.UserKey)), bytes.NewReader(c.UserKey))
	}
	return w.Whiteout(UserKeyPath)
}

// ReplaceResults returns img with its results replaced by the content of
// the host directory dir (what a run wrote to /opt/pht_results), keeping
// config and train files. Regular files, directories and symlinks are taken
// (symlinks as links, never followed); anything else is refused.
func ReplaceResults(ctx context.Context, img v1.Image, dir, tmpDir string) (v1.Image, *FileLayer, error) {
	st, err := ReadState(ctx, img, tmpDir)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	res, err := TreeFromDir(dir, st.Spool, ResultsDir)
	if err != nil {
		return nil, nil, err
	}
	return WriteState(img, tmpDir, StateContent{Config: st.Config, Train: st.Train, Results: res, UserKey: st.UserKey})
}

// TreeFromDir spools a host directory into a Tree rooted at root.
func TreeFromDir(dir string, sp *Spool, root string) (*Tree, error) {
	t := &Tree{Root: cleanName(root), spool: sp}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: path.Join(t.Root, rel), Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()}
		switch {
		case d.IsDir():
			hdr.Typeflag = tar.TypeDir
			return t.add(rel, hdr, nil)
		case info.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return t.add(rel, hdr, f)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
			return t.add(rel, hdr, nil)
		}
		return fmt.Errorf("%s: unsupported file type %s", p, info.Mode().Type())
	})
	if err != nil {
		return nil, err
	}
	SortWalkOrder(t.Entries)
	return t, nil
}
