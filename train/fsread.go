package train

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/errdefs"
)

// ErrNotFound is returned when a path is absent from an image.
var ErrNotFound = errdefs.New("not found in image", errdefs.ErrNotFound)

// ErrLayout is wrapped by errors about an image whose layers cannot hold a
// train (unsafe paths, too many entries, unreadable tar).
var ErrLayout = errdefs.New("bad train image layout", errdefs.ErrMalformed)

// MaxEntries bounds how many entries under the watched prefixes one read
// accepts, so a hostile layer cannot exhaust memory with metadata.
const MaxEntries = 1 << 20

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// VisitFunc receives one entry of the merged filesystem. prefix is the
// watched prefix it lies under, rel its path relative to that prefix ("" for
// the prefix itself). r is the content for regular files and must be read
// before returning; it is nil for other types.
type VisitFunc func(prefix, rel string, hdr *tar.Header, r io.Reader) error

// Walk visits every entry under the given prefixes (paths without a leading
// slash, like TrainDir) as the merged filesystem of img shows it: top layer
// first, whiteouts and opaque directories respected, each path at most once.
// Layers stream; nothing is held in memory but the names seen. The walk stops
// early once every prefix is fully decided by the layers read so far (as
// after a state layer that marks its directories opaque).
func Walk(ctx context.Context, img v1.Image, fn VisitFunc, prefixes ...string) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("%w: list layers: %w", ErrLayout, err)
	}
	for i, p := range prefixes {
		prefixes[i] = cleanName(p)
	}
	m := newMerger(prefixes)
	for i := len(layers) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return err
		}
		if m.decided() {
			return nil
		}
		if err := m.layer(ctx, layers[i], fn); err != nil {
			return err
		}
	}
	return nil
}

// merger tracks what upper layers already decided about the paths below.
type merger struct {
	prefixes []string
	seen     map[string]bool // visible paths already emitted or shadowing
	nondir   map[string]bool // non-directories: hide everything under them
	hidden   map[string]bool // whiteouts from upper layers
	opaque   map[string]bool // opaque directories from upper layers
	count    int
}

func newMerger(prefixes []string) *merger {
	return &merger{
		prefixes: prefixes,
		seen:     map[string]bool{}, nondir: map[string]bool{},
		hidden: map[string]bool{}, opaque: map[string]bool{},
	}
}

// relevant reports whether name lies under a prefix (which one) or is an
// ancestor of one (its whiteouts and non-directories matter).
func (m *merger) relevant(name string) (prefix string, under, ancestor bool) {
	for _, p := range m.prefixes {
		if name == p || strings.HasPrefix(name, p+"/") {
			return p, true, false
		}
		if name == "" || strings.HasPrefix(p, name+"/") {
			ancestor = true
		}
	}
	return "", false, ancestor
}

// shadowed reports whether upper layers hide name.
func (m *merger) shadowed(name string) bool {
	if m.seen[name] || m.hidden[name] {
		return true
	}
	for d := parent(name); ; d = parent(d) {
		if m.hidden[d] || m.opaque[d] || m.nondir[d] {
			return true
		}
		if d == "" {
			return false
		}
	}
}

// decided reports whether no lower layer can change what is under any prefix.
func (m *merger) decided() bool {
	for _, p := range m.prefixes {
		if !(m.hidden[p] || m.opaque[p] || (m.seen[p] && m.nondir[p]) || m.ancestorBlocked(p)) {
			return false
		}
	}
	return true
}

func (m *merger) ancestorBlocked(p string) bool {
	for d := parent(p); ; d = parent(d) {
		if m.hidden[d] || m.opaque[d] || m.nondir[d] {
			return true
		}
		if d == "" {
			return false
		}
	}
}

func (m *merger) layer(ctx context.Context, l v1.Layer, fn VisitFunc) error {
	rc, err := l.Uncompressed()
	if err != nil {
		// %v, not %w: a truncated layer (io.ErrUnexpectedEOF) stays a
		// refusal, not a network failure to retry.
		return fmt.Errorf("%w: open layer: %v", ErrLayout, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	// Whiteouts and shadowing by this layer apply only to lower layers.
	newHidden, newOpaque := map[string]bool{}, map[string]bool{}
	newSeen, newNondir := map[string]bool{}, map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: read layer: %v", ErrLayout, err)
		}
		name := cleanName(hdr.Name)
		if name == "" {
			continue
		}
		prefix, under, ancestor := m.relevant(name)
		if !under && !ancestor {
			// A whiteout of an ancestor still matters ("opt/.wh.pht_train").
			if !strings.HasPrefix(path.Base(name), whiteoutPrefix) {
				continue
			}
		}
		base := path.Base(name)
		if strings.HasPrefix(base, whiteoutPrefix) {
			dir := parent(name)
			if base == whiteoutOpaque {
				newOpaque[dir] = true
			} else {
				target := path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))
				if dir == "" {
					target = strings.TrimPrefix(base, whiteoutPrefix)
				}
				newHidden[target] = true
			}
			continue
		}
		if m.shadowed(name) {
			continue
		}
		isDir := hdr.Typeflag == tar.TypeDir
		if ancestor && !under {
			// A non-directory where an ancestor of a prefix should be hides
			// everything below it in lower layers.
			if !isDir {
				newNondir[name] = true
			}
			newSeen[name] = true
			continue
		}
		if newSeen[name] {
			continue // duplicate inside one layer: the first one wins here
		}
		newSeen[name] = true
		if !isDir {
			newNondir[name] = true
		}
		if err := checkEntry(prefix, name, hdr); err != nil {
			return err
		}
		m.count++
		if m.count > MaxEntries {
			return fmt.Errorf("%w: more than %d entries under %s", ErrLayout, MaxEntries, strings.Join(m.prefixes, ", "))
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(name, prefix), "/")
		var r io.Reader
		//lint:ignore SA1019 old archives may still mark regular files with TypeRegA ('\x00')
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA {
			r = tr
		}
		if err := fn(prefix, rel, hdr, r); err != nil {
			return err
		}
	}
	for k := range newHidden {
		m.hidden[k] = true
	}
	for k := range newOpaque {
		m.opaque[k] = true
	}
	for k := range newSeen {
		m.seen[k] = true
	}
	for k := range newNondir {
		m.nondir[k] = true
	}
	return nil
}

// checkEntry refuses entries under a watched prefix that no train holds
// and that would cost a reader more than their bytes in the layer: sparse
// files (any logical size from a few bytes), devices and fifos, and hard
// links to anything outside the prefix. Names are quoted in errors: they
// come from the layer and may hold terminal escapes.
func checkEntry(prefix, name string, hdr *tar.Header) error {
	switch {
	case IsSparse(hdr):
		return fmt.Errorf("%w: %q is a sparse file (%d bytes)", ErrLayout, "/"+name, hdr.Size)
	case hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock || hdr.Typeflag == tar.TypeFifo:
		return fmt.Errorf("%w: %q is a device or fifo", ErrLayout, "/"+name)
	case hdr.Typeflag == tar.TypeLink:
		if t := cleanName(hdr.Linkname); t != prefix && !strings.HasPrefix(t, prefix+"/") {
			return fmt.Errorf("%w: %q is a hard link to %q, outside /%s", ErrLayout, "/"+name, "/"+t, prefix)
		}
	}
	return nil
}

// errFound stops a walk once ReadFile has its file: the merged view shows
// the first entry it meets, so nothing later can change it.
var errFound = errors.New("found")

// ReadFile returns the content of one regular file of img (at most max
// bytes), or an error wrapping ErrNotFound. It stops reading the layers as
// soon as the file is read.
func ReadFile(ctx context.Context, img v1.Image, name string, max int64) ([]byte, error) {
	var data []byte
	found := false
	err := Walk(ctx, img, func(_, rel string, hdr *tar.Header, r io.Reader) error {
		if rel != "" {
			return nil
		}
		found = true
		if r == nil {
			return fmt.Errorf("%w: /%s is not a regular file", ErrLayout, name)
		}
		if hdr.Size > max {
			return fmt.Errorf("/%s: larger than %d bytes", name, max)
		}
		var err error
		data, err = readLimited(r, max)
		if err != nil {
			return fmt.Errorf("/%s: %w", name, err)
		}
		return errFound
	}, name)
	if err != nil && !errors.Is(err, errFound) {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("/%s: %w", cleanName(name), ErrNotFound)
	}
	return data, nil
}

func readLimited(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return data, nil
}

// cleanName turns a tar member name into a clean relative slash path.
func cleanName(n string) string {
	n = path.Clean("/" + n)
	return strings.TrimPrefix(n, "/")
}

func parent(name string) string {
	d := path.Dir(name)
	if d == "." || d == "/" {
		return ""
	}
	return d
}

// IsSparse reports whether a tar entry is a GNU or PAX sparse file: a few
// bytes in the layer that read back as a file of any logical size. No train
// needs one, and a reader that expands it can fill a disk.
func IsSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
