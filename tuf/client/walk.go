package client

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/tuf"
)

// The target search is our own, not go-tuf's GetTargetInfo: go-tuf keeps a
// delegated role it verified once and hands it out again on the next lookup
// without checking it against the delegator of that lookup's path. With a
// role R delegated by both A and B but signed only with A's keys, a first
// lookup through A makes a second one through B accept R. Here every use of
// a role on a path is verified against that path's delegator; otherwise
// the walk is TUF's (spec 5.6.7, as python-tuf and go-tuf do it): pre-order
// depth first, each role visited once per lookup, terminating delegations
// end the search, at most maxDelegations roles.

const maxDelegations = 32

// walker finds targets through the delegations of an updater's trusted set.
type walker struct {
	tm      trustedmetadata.TrustedMetadata
	dir     string // local metadata dir: verified roles are stored here (url-escaped names)
	baseURL string // remote metadata base URL
	fetch   fetcher.Fetcher
	maxLen  int64
	timeout time.Duration
}

func newWalker(u *updater.Updater, dir, baseURL string, f fetcher.Fetcher, maxLen int64) *walker {
	return &walker{tm: u.GetTrustedMetadataSet(), dir: dir, baseURL: strings.TrimSuffix(baseURL, "/") + "/",
		fetch: f, maxLen: maxLen}
}

// find returns the signed description of target name.
func (w *walker) find(name string) (*metadata.TargetFiles, error) {
	type visit struct{ role, parent string }
	stack := []visit{{metadata.TARGETS, metadata.ROOT}}
	visited := map[string]bool{}
	for len(visited) <= maxDelegations && len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[cur.role] {
			continue
		}
		md, err := w.load(cur.role, cur.parent)
		if err != nil {
			return nil, fmt.Errorf("role %s (delegated by %s): %w", cur.role, cur.parent, tuf.Classify(err))
		}
		if tf, ok := md.Signed.Targets[name]; ok {
			return tf, nil
		}
		visited[cur.role] = true
		if md.Signed.Delegations == nil {
			continue
		}
		var children []visit
		for _, r := range md.Signed.Delegations.GetRolesForTarget(name) {
			children = append(children, visit{r.Name, cur.role})
			if r.Terminating {
				stack = nil
				break
			}
		}
		slices.Reverse(children)
		stack = append(stack, children...)
	}
	return nil, fmt.Errorf("%w: target %q", tuf.ErrNotFound, name)
}

// load returns role's metadata verified against parent, on this path.
func (w *walker) load(role, parent string) (*metadata.Metadata[metadata.TargetsType], error) {
	if role == metadata.TARGETS {
		md := w.tm.Targets[metadata.TARGETS]
		if md == nil {
			return nil, errors.New("top-level targets not loaded")
		}
		return md, nil
	}
	delegator := w.tm.Targets[parent]
	if delegator == nil {
		return nil, fmt.Errorf("delegator %s not loaded", parent)
	}
	if md, ok := w.tm.Targets[role]; ok {
		// verified before, perhaps through another delegator: verify again
		// against this one
		if err := delegator.VerifyDelegate(role, md); err != nil {
			return nil, err
		}
		return md, nil
	}
	local := filepath.Join(w.dir, url.PathEscape(role)+".json")
	if data, err := os.ReadFile(local); err == nil {
		if md, err := w.tm.UpdateDelegatedTargets(data, role, parent); err == nil {
			return md, nil
		}
		// stale or invalid local copy: fetch the current one
	}
	if w.tm.Snapshot == nil {
		return nil, errors.New("no trusted snapshot")
	}
	mf, ok := w.tm.Snapshot.Signed.Meta[role+".json"]
	if !ok {
		return nil, fmt.Errorf("%w: role %s is not in the snapshot", tuf.ErrNotFound, role)
	}
	length := mf.Length
	if length == 0 {
		length = w.maxLen
	}
	file := url.PathEscape(role) + ".json"
	if w.tm.Root.Signed.ConsistentSnapshot {
		file = strconv.FormatInt(mf.Version, 10) + "." + file
	}
	data, err := w.fetch.DownloadFile(w.baseURL+file, length, w.timeout)
	if err != nil {
		return nil, err
	}
	md, err := w.tm.UpdateDelegatedTargets(data, role, parent)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(local, data, 0o644); err != nil {
		return nil, err
	}
	return md, nil
}
