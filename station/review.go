package station

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// A stop under review keeps, in ReviewDir/<stop>/ (0700), the plaintext
// results the operator reviews (results/) and the sealed train to pass on
// as an OCI layout (out/, one manifest per push, in order). Release pushes
// out/; Withhold deletes both. Nothing leaves the station before Release.

const refAnnotation = "org.opencontainers.image.ref.name"

// ReviewPath is the directory that holds st while it is under review:
// ReviewDir/<st.Key, made a safe file name>, with results/ and out/ in it.
func (s *Station) ReviewPath(st *Stop) (string, error) {
	if s.ReviewDir == "" || s.DB == nil {
		return "", errors.New("reviewing results needs the station's state directory")
	}
	return filepath.Join(s.ReviewDir, unsafeName.ReplaceAllString(strings.ReplaceAll(st.Key, "/", "_"), "_")), nil
}

// copyForReview copies the plaintext results (directories and regular
// files only: post-run has already refused anything else) for review.
func (s *Station) copyForReview(st *Stop, resultsDir string) error {
	dir, err := s.ReviewPath(st)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	dst := filepath.Join(dir, "results")
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	return filepath.WalkDir(resultsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(resultsDir, p)
		if err != nil || rel == "." {
			return err
		}
		if rel == "lost+found" && d.IsDir() {
			return filepath.SkipDir // the results filesystem's own
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(to, 0o700)
		case d.Type().IsRegular():
			return copyFile(to, p)
		}
		return fmt.Errorf("results entry %s is not a file or directory", rel)
	})
}

// keepForReview stores the sealed output beside the plaintext and records
// the stop as under review.
func (s *Station) keepForReview(st *Stop, ps []push) error {
	dir, err := s.ReviewPath(st)
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "out")
	lp, err := layout.Write(out, empty.Index)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if err := lp.AppendImage(p.img, layout.WithAnnotations(map[string]string{refAnnotation: p.ref, "dev.trainyard.shared": fmt.Sprint(p.shared)})); err != nil {
			return fmt.Errorf("keeping the sealed train for review: %w", err)
		}
	}
	last, err := ps[len(ps)-1].img.Digest()
	if err != nil {
		return err
	}
	st.Output, st.State, st.Reason = last.String(), Review, ""
	timed(st)
	if err := s.DB.Save(st, ""); err != nil {
		return err
	}
	return ErrUnderReview
}

// reviewPushes reads back what keepForReview stored.
func (s *Station) reviewPushes(st *Stop) ([]push, error) {
	dir, err := s.ReviewPath(st)
	if err != nil {
		return nil, err
	}
	lp, err := layout.FromPath(filepath.Join(dir, "out"))
	if err != nil {
		return nil, fmt.Errorf("the sealed train kept for review: %w", err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var ps []push
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		ps = append(ps, push{img: img, ref: d.Annotations[refAnnotation], shared: d.Annotations["dev.trainyard.shared"] == "true"})
	}
	if len(ps) == 0 {
		return nil, errors.New("the sealed train kept for review is empty")
	}
	return ps, nil
}

// ResultFile is one entry of the results a stop under review would send.
type ResultFile struct {
	Path string `json:"path"`
	Dir  bool   `json:"dir,omitempty"`
	Size int64  `json:"size"`
}

// ErrState means the stop is not in a state the action applies to.
var ErrState = errors.New("stop is not in the state for that")

// Results lists the plaintext results of a stop under review (at most
// 100,000 entries, then the listing stops with an entry "…").
func (s *Station) Results(_ context.Context, name string) ([]ResultFile, error) {
	st, root, err := s.reviewRoot(name)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	_ = st
	var out []ResultFile
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		if len(out) >= 100_000 {
			out = append(out, ResultFile{Path: "…"})
			return fs.SkipAll
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		f := ResultFile{Path: p, Dir: d.IsDir()}
		if !d.IsDir() {
			f.Size = fi.Size()
		}
		out = append(out, f)
		return nil
	})
	return out, err
}

// OpenResult opens one plaintext results file of a stop under review, for
// a preview; the path cannot leave the results directory.
func (s *Station) OpenResult(_ context.Context, name, path string) (io.ReadCloser, error) {
	_, root, err := s.reviewRoot(name)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.Open(filepath.FromSlash(path))
}

func (s *Station) reviewRoot(name string) (*Stop, *os.Root, error) {
	st, err := s.find(name)
	if err != nil {
		return nil, nil, err
	}
	if st.State != Review {
		return nil, nil, fmt.Errorf("%w: %s is %s, not under review", ErrState, name, st.State)
	}
	dir, err := s.ReviewPath(st)
	if err != nil {
		return nil, nil, err
	}
	root, err := os.OpenRoot(filepath.Join(dir, "results"))
	return st, root, err
}
