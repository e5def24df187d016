package train

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NewSpliceWriter starts an uncompressed layer whose large files stay where
// they are: FileAt hashes a file into the layer's digest without copying it,
// and the finished layer (Splice) reads the tar framing from memory and each
// such file in place whenever it is read. A station's sealed results are
// then written once, by the sealing, and only read afterwards (for the
// digest and for the push), instead of being copied into a layer file.
func NewSpliceWriter(mt types.MediaType) (*LayerWriter, error) {
	if !IsUncompressed(mt) {
		return nil, fmt.Errorf("layer: a spliced layer is uncompressed, not %s", mt)
	}
	s := &spliceSink{}
	w := &LayerWriter{compSum: sha256.New(), dirs: map[string]bool{}, names: map[string]bool{}, mt: mt, splice: s}
	w.compSize = &countWriter{w: io.MultiWriter(s, w.compSum)}
	w.tw = tar.NewWriter(w.compSize)
	return w, nil
}

// NewSplicedStateWriter is NewStateWriter for a spliced state layer.
func NewSplicedStateWriter(img v1.Image) (*LayerWriter, error) {
	w, err := NewSpliceWriter(StateLayerMediaType(img))
	if err != nil {
		return nil, err
	}
	if err := w.opaqueStateDirs(); err != nil {
		return nil, err
	}
	return w, nil
}

// FileAt adds the regular file at path p as name. In a spliced layer the
// file is read once now, for the digest, and again whenever the layer is
// read; it must not change until the layer is no longer used. In a
// file-backed layer it is copied.
func (w *LayerWriter) FileAt(name string, mode int64, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("layer: %s is not a regular file", p)
	}
	if w.splice == nil {
		return w.File(name, mode, fi.Size(), f)
	}
	// The header and padding come from the tar writer; the content passes
	// through it to be hashed and counted, and the sink keeps only the
	// file's place.
	return w.file(name, mode, fi.Size(), &spliceFile{r: f, s: w.splice, path: p, size: fi.Size()})
}

// spliceFile marks where a file's content starts in the sink, on its first
// read (after the tar header has been written).
type spliceFile struct {
	r       io.Reader
	s       *spliceSink
	path    string
	size    int64
	started bool
}

func (f *spliceFile) Read(p []byte) (int, error) {
	if !f.started {
		f.started = true
		f.s.beginFile(f.path, f.size)
	}
	return f.r.Read(p)
}

// spliceSink keeps the tar framing in memory and, for a file's content,
// only its path and size.
type spliceSink struct {
	segs []segment
	cur  bytes.Buffer
	skip int64 // content bytes of the current file still to pass
}

type segment struct {
	data []byte // framing, or nil for a file
	path string
	size int64
}

func (s *spliceSink) beginFile(p string, size int64) {
	s.flush()
	s.segs = append(s.segs, segment{path: p, size: size})
	s.skip = size
}

func (s *spliceSink) flush() {
	if s.cur.Len() > 0 {
		s.segs = append(s.segs, segment{data: bytes.Clone(s.cur.Bytes())})
		s.cur.Reset()
	}
}

func (s *spliceSink) Write(p []byte) (int, error) {
	n := len(p)
	if s.skip > 0 {
		k := int(min(int64(len(p)), s.skip))
		s.skip -= int64(k)
		p = p[k:]
	}
	s.cur.Write(p)
	return n, nil
}

// Splice finishes a layer started by NewSpliceWriter.
func (w *LayerWriter) Splice() (*SplicedLayer, error) {
	if w.splice == nil {
		return nil, errors.New("layer: not a spliced layer (use Close)")
	}
	if w.closed {
		return nil, errors.New("layer: already closed")
	}
	w.closed = true
	if err := w.tw.Close(); err != nil {
		return nil, err
	}
	if w.splice.skip != 0 {
		return nil, errors.New("layer: a spliced file was cut short")
	}
	w.splice.flush()
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.compSum.Sum(nil))}
	return &SplicedLayer{segs: w.splice.segs, digest: d, size: w.compSize.n, mt: w.mt}, nil
}

// SplicedLayer is an uncompressed layer read from its framing in memory
// and its files in place. Its digest was computed when it was written; a
// file changed since then makes a read fail (size) or the receiver's digest
// check fail (content).
type SplicedLayer struct {
	segs   []segment
	digest v1.Hash
	size   int64
	mt     types.MediaType
}

var _ v1.Layer = (*SplicedLayer)(nil)

// Digest is the sha256 of the layer, which is also its diff id.
func (l *SplicedLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID equals Digest: the layer is not compressed.
func (l *SplicedLayer) DiffID() (v1.Hash, error) { return l.digest, nil }

// Size is the length of the layer.
func (l *SplicedLayer) Size() (int64, error) { return l.size, nil }

// MediaType is an uncompressed layer type.
func (l *SplicedLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// Compressed streams the layer (it is stored uncompressed).
func (l *SplicedLayer) Compressed() (io.ReadCloser, error) { return &spliceReader{segs: l.segs}, nil }

// Uncompressed streams the layer.
func (l *SplicedLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

// spliceReader reads the segments in order, opening each file when it is
// reached.
type spliceReader struct {
	segs []segment
	cur  io.Reader
	f    *os.File
	want int64 // bytes the open file must still give
}

func (r *spliceReader) Read(p []byte) (int, error) {
	for {
		if r.cur != nil {
			n, err := r.cur.Read(p)
			if r.f != nil {
				r.want -= int64(n)
			}
			if err == io.EOF {
				if r.f != nil && r.want != 0 {
					name := r.f.Name()
					r.closeFile()
					return n, fmt.Errorf("layer: %s changed size since the layer was written", name)
				}
				r.closeFile()
				r.cur = nil
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		if len(r.segs) == 0 {
			return 0, io.EOF
		}
		s := r.segs[0]
		r.segs = r.segs[1:]
		if s.data != nil {
			r.cur = bytes.NewReader(s.data)
			continue
		}
		f, err := os.Open(s.path)
		if err != nil {
			return 0, err
		}
		// One byte more than the size, so a file that grew is noticed.
		r.f, r.want, r.cur = f, s.size, io.LimitReader(f, s.size+1)
	}
}

func (r *spliceReader) closeFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// Close releases an open file.
func (r *spliceReader) Close() error {
	r.closeFile()
	r.segs = nil
	r.cur = nil
	return nil
}
