package server

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Abandoned uploads (a client that died mid-push) are removed once they are
// a week old, checked once a day: distribution's own defaults.
const (
	uploadMaxAge        = 7 * 24 * time.Hour
	uploadPurgeInterval = 24 * time.Hour
)

// purgeLoop removes abandoned uploads now and then every interval until ctx
// ends. It does the job of distribution's upload purger, which this server
// turns off because its storage.PurgeUploads logs through logrus's
// process-wide logger (and only WithLogger's logger may hear from us).
func purgeLoop(ctx context.Context, root string, log *slog.Logger) {
	t := time.NewTicker(uploadPurgeInterval)
	defer t.Stop()
	for {
		n, err := purgeUploads(root, time.Now().Add(-uploadMaxAge))
		if n > 0 {
			log.Info("removed abandoned uploads", "component", "registry", "count", n)
		}
		if err != nil {
			log.Warn("purging abandoned uploads", "component", "registry", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// purgeUploads removes every upload under the filesystem driver's root
// that started before olderThan (distribution's layout: each repository's
// _uploads/<id>/startedat, an RFC 3339 time). An upload without a readable
// start time is kept, as distribution keeps it.
func purgeUploads(root string, olderThan time.Time) (int, error) {
	repos := filepath.Join(root, "docker", "registry", "v2", "repositories")
	n := 0
	var errs []error
	err := filepath.WalkDir(repos, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == repos {
				return fs.SkipAll // nothing pushed yet
			}
			return err
		}
		if !d.IsDir() || p == repos {
			return nil
		}
		switch name := d.Name(); {
		case name == "_uploads":
		case strings.HasPrefix(name, "_"):
			return fs.SkipDir // _layers, _manifests: not uploads
		default:
			return nil // a repository path component
		}
		ups, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, u := range ups {
			b, err := os.ReadFile(filepath.Join(p, u.Name(), "startedat"))
			if err != nil {
				continue
			}
			started, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
			if err != nil || !started.Before(olderThan) {
				continue
			}
			if err := os.RemoveAll(filepath.Join(p, u.Name())); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		}
		return fs.SkipDir
	})
	return n, errors.Join(append(errs, err)...)
}
