package phtv2

import (
	"crypto/sha512"
	"fmt"
	"hash"
	"io"
	"strings"
)

// FileSource opens a train file by its name relative to /opt/pht_train.
type FileSource func(name string) (io.ReadCloser, error)

// ImmutableHash is the PHT immutable-file hash e_h:
//
//	SHA512(utf8(creatorID) || content(f) for f in fileList || sessionID || [query.json held back] || [query])
//
// exactly as hashing.hash_immutable_files computes it: names are stripped
// of a leading "./" and not hashed themselves; an entry "query.json" is held
// back and hashed after the session id; an empty query adds nothing.
// Unlike Python, a name listed twice is refused (Python hashes it as empty
// the second time).
func ImmutableHash(creatorID string, fileList []string, open FileSource, sessionID, query []byte) ([]byte, error) {
	h := sha512.New()
	h.Write([]byte(creatorID))
	var queryFile []byte
	seen := make(map[string]bool, len(fileList))
	for _, f := range fileList {
		f = strings.TrimPrefix(f, "./")
		if seen[f] {
			return nil, fmt.Errorf("%w: file_list names %q twice", ErrTampered, f)
		}
		seen[f] = true
		rc, err := open(f)
		if err != nil {
			return nil, fmt.Errorf("%w: file_list names %q: %w", ErrTampered, f, err)
		}
		if f == "query.json" {
			queryFile, err = io.ReadAll(io.LimitReader(rc, 64<<20))
		} else {
			_, err = io.Copy(h, rc)
		}
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
	}
	h.Write(sessionID)
	h.Write(queryFile)
	h.Write(query)
	return h.Sum(nil), nil
}

// ResultHasher computes the results hash e_d = SHA512(contents || sessionID)
// over the regular result files in filepath.Walk order, streaming.
type ResultHasher struct {
	h   hash.Hash
	sid []byte
}

// NewResultHasher starts a results hash for a session id.
func NewResultHasher(sessionID []byte) *ResultHasher {
	return &ResultHasher{h: sha512.New(), sid: append([]byte(nil), sessionID...)}
}

// Write adds result file content.
func (r *ResultHasher) Write(p []byte) (int, error) { return r.h.Write(p) }

// Sum appends the session id and returns e_d.
func (r *ResultHasher) Sum() []byte {
	r.h.Write(r.sid)
	return r.h.Sum(nil)
}

// ResultHash is e_d over files given in order.
func ResultHash(files []io.Reader, sessionID []byte) ([]byte, error) {
	r := NewResultHasher(sessionID)
	for _, f := range files {
		if _, err := io.Copy(r, f); err != nil {
			return nil, err
		}
	}
	return r.Sum(), nil
}

// StationDigest is a station's link of the digest chain: SHA512(sessionID ||
// e_d) for the first stop (no earlier digests), else SHA512(D_0 || ... ||
// D_{i-1} || e_d). The session id is not part of later links.
func StationDigest(sessionID []byte, earlier [][]byte, resultHash []byte) []byte {
	h := sha512.New()
	if len(earlier) == 0 {
		h.Write(sessionID)
	}
	for _, d := range earlier {
		h.Write(d)
	}
	h.Write(resultHash)
	return h.Sum(nil)
}
