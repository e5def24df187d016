package console

import (
	"bytes"
	"encoding/csv"
	"io"
	"net/url"
	"path"
	"sort"
	"strings"
	"unicode/utf8"
)

func urlQuery(s string) string { return url.QueryEscape(s) }

// entry is one file or directory of a listing (results, code manifest).
type entry struct {
	Path string
	Dir  bool
	Size int64
	Href string // the file's preview, if it has one
	Note string // e.g. the mode
}

// node is an entry in a browsable tree; a directory's Size is the sum of
// what it holds.
type node struct {
	entry
	Name     string
	Children []*node
}

// buildTree nests a flat listing ("a", "a/b.csv") by path; it keeps the
// first maxTreeEntries and says whether it dropped any.
func buildTree(ents []entry) ([]*node, bool) {
	more := len(ents) > maxTreeEntries
	if more {
		ents = ents[:maxTreeEntries]
	}
	byPath := map[string]*node{}
	var roots []*node
	var add func(p string, e *entry) *node
	add = func(p string, e *entry) *node {
		if n := byPath[p]; n != nil {
			if e != nil {
				n.entry = *e
			}
			return n
		}
		n := &node{Name: path.Base(p)}
		if e != nil {
			n.entry = *e
		} else {
			n.entry = entry{Path: p, Dir: true}
		}
		byPath[p] = n
		if dir := path.Dir(p); dir == "." || dir == "/" || dir == p {
			roots = append(roots, n)
		} else {
			par := add(dir, nil)
			par.Children = append(par.Children, n)
		}
		return n
	}
	for i := range ents {
		add(strings.TrimPrefix(path.Clean(ents[i].Path), "/"), &ents[i])
	}
	var total func(ns []*node) int64
	total = func(ns []*node) int64 {
		var t int64
		sort.Slice(ns, func(i, j int) bool { return ns[i].Name < ns[j].Name })
		for _, n := range ns {
			if n.Dir {
				n.Size = total(n.Children)
			}
			t += n.Size
		}
		return t
	}
	total(roots)
	return roots, more
}

// Preview bounds: what a page shows of one results file.
const (
	PreviewBytes   = 64 << 10
	PreviewLines   = 200
	PreviewCSVRows = 50
)

// Preview is the start of a results file, for the review page: text (at
// most PreviewLines lines and PreviewBytes bytes), a CSV file's first
// PreviewCSVRows rows as a table, or nothing for a binary file. The
// template escapes everything.
type Preview struct {
	Text      string
	Lines     int
	Rows      [][]string
	CSVError  string
	Binary    bool
	Truncated bool
}

// MakePreview reads at most PreviewBytes+1 bytes of r.
func MakePreview(r io.Reader, isCSV bool) Preview {
	b, _ := io.ReadAll(io.LimitReader(r, PreviewBytes+1))
	var p Preview
	if len(b) > PreviewBytes {
		b, p.Truncated = b[:PreviewBytes], true
		// A rune cut at the limit is not a sign of binary content.
		for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.Valid(b); i++ {
			b = b[:len(b)-1]
		}
	}
	if bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) {
		p.Binary = true
		return p
	}
	if i := nthIndex(b, '\n', PreviewLines); i >= 0 && i < len(b)-1 {
		b, p.Truncated = b[:i+1], true
	}
	p.Text = string(b)
	p.Lines = bytes.Count(b, []byte{'\n'})
	if len(b) > 0 && b[len(b)-1] != '\n' {
		p.Lines++
	}
	if isCSV {
		cr := csv.NewReader(bytes.NewReader(b))
		cr.FieldsPerRecord, cr.LazyQuotes, cr.ReuseRecord = -1, true, false
		for len(p.Rows) < PreviewCSVRows {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				// A cut-off last record is expected when the file was
				// truncated; anything else is shown as text with the error.
				if !p.Truncated {
					p.CSVError, p.Rows = err.Error(), nil
				}
				break
			}
			p.Rows = append(p.Rows, rec)
		}
		if len(p.Rows) == PreviewCSVRows {
			if _, err := cr.Read(); err != io.EOF {
				p.Truncated = true
			}
		}
	}
	return p
}

// nthIndex is the index of the n-th c in b, or -1.
func nthIndex(b []byte, c byte, n int) int {
	off := 0
	for k := 0; k < n; k++ {
		i := bytes.IndexByte(b[off:], c)
		if i < 0 {
			return -1
		}
		off += i + 1
	}
	return off - 1
}
