package ocistore

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// errHTTP404 carries go-tuf's 404 error (which ends the root walk) inside
// our wrapped error chain.
type errHTTP404 struct{ err error }

func (e errHTTP404) Error() string { return e.err.Error() }
func (e errHTTP404) Unwrap() []error {
	return []error{e.err, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: ""}}
}

// Fetcher implements go-tuf's fetcher.Fetcher over a Store: the updater's
// URL "<anything>/<N>.<role>.json" is reduced to its file name and read from
// the file's tag. go-tuf's interface has no context, so the Fetcher carries
// the one of the operation that created it.
type Fetcher struct {
	ctx   context.Context
	store *Store
}

var _ fetcher.Fetcher = (*Fetcher)(nil)

// NewFetcher returns a fetcher bound to ctx.
func (s *Store) NewFetcher(ctx context.Context) *Fetcher { return &Fetcher{ctx: ctx, store: s} }

// MetadataURL is the RemoteMetadataURL to give go-tuf with this fetcher.
func (s *Store) MetadataURL() string { return "oci://" + s.repo.String() + "/metadata" }

// DownloadFile implements fetcher.Fetcher.
func (f *Fetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	file, err := url.PathUnescape(path.Base(urlPath))
	if err != nil {
		return nil, fmt.Errorf("bad metadata path %q: %w", urlPath, err)
	}
	data, err := f.store.GetMetadata(f.ctx, file, maxLength)
	if err != nil {
		return nil, err
	}
	return data, nil
}
