package client

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/tuf"
)

// HTTPConfig drives the plain-HTTP client of the tuf-conformance CLI
// contract: trusted metadata stored unversioned in MetadataDir as
// <role>.json, updated in place as the TUF spec says (not transactional:
// the suite checks what a spec client persists).
type HTTPConfig struct {
	MetadataDir   string
	MetadataURL   string
	TargetDir     string
	TargetBaseURL string
	Now           time.Time // zero: the real clock
}

// HTTPInit stores rootJSON as the trusted root (no network).
func HTTPInit(metadataDir string, rootJSON []byte) error {
	if _, err := metadata.Root().FromBytes(rootJSON); err != nil {
		return fmt.Errorf("trusted root: %w", err)
	}
	if err := os.MkdirAll(metadataDir, 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(metadataDir, "root.json"), rootJSON, 0o644)
}

func (h HTTPConfig) updater() (*updater.Updater, *config.UpdaterConfig, error) {
	root, err := os.ReadFile(filepath.Join(h.MetadataDir, "root.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, tuf.ErrNotInitialized
	}
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.New(h.MetadataURL, root)
	if err != nil {
		return nil, nil, err
	}
	cfg.LocalMetadataDir = h.MetadataDir
	cfg.LocalTargetsDir = h.TargetDir
	if cfg.LocalTargetsDir == "" {
		cfg.LocalTargetsDir = h.MetadataDir // refresh needs no target dir; go-tuf creates it anyway
	}
	cfg.RemoteTargetsURL = h.TargetBaseURL
	u, err := updater.New(cfg)
	if err != nil {
		return nil, nil, tuf.Classify(err)
	}
	if !h.Now.IsZero() {
		u.UnsafeSetRefTime(h.Now)
	}
	return u, cfg, nil
}

// HTTPRefresh runs a full top-level metadata update.
func HTTPRefresh(h HTTPConfig) error {
	u, _, err := h.updater()
	if err != nil {
		return err
	}
	return tuf.Classify(u.Refresh())
}

// HTTPDownload refreshes, then downloads each target into TargetDir (file
// name: the url-escaped target path), reusing a cached file whose length
// and hashes still match; it stops at the first failure. Targets are
// searched with the walker (see walk.go), not go-tuf's GetTargetInfo.
func HTTPDownload(h HTTPConfig, names ...string) error {
	u, cfg, err := h.updater()
	if err != nil {
		return err
	}
	if err := u.Refresh(); err != nil {
		return tuf.Classify(err)
	}
	if err := os.MkdirAll(h.TargetDir, 0o755); err != nil {
		return err
	}
	w := newWalker(u, h.MetadataDir, h.MetadataURL, cfg.Fetcher, cfg.TargetsMaxLength)
	for _, n := range names {
		tf, err := w.find(n)
		if err != nil {
			return fmt.Errorf("target %q: %w", n, err)
		}
		if path, _, err := u.FindCachedTarget(tf, ""); err == nil && path != "" {
			continue
		}
		if _, _, err := u.DownloadTarget(tf, "", h.TargetBaseURL); err != nil {
			return fmt.Errorf("target %q: %w", n, tuf.Classify(err))
		}
	}
	return nil
}
