package station

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrUnsafeSetup is wrapped when an operator's setup would hand a train more
// than the station's data: a station key others can read, a data directory
// that holds the station's own key, work dir or database (the train reads
// the whole data directory), or a data directory that does not exist.
var ErrUnsafeSetup = errors.New("unsafe station setup")

// CheckSetup checks the station's files before anything runs. keyFile must
// be readable by its owner only; dataDir ("" for none) must be an existing
// directory other than / and must not contain keyFile or any of private
// (work dir, database, train logs: paths that need not exist yet).
func CheckSetup(dataDir, keyFile string, private ...string) error {
	if keyFile != "" {
		fi, err := os.Stat(keyFile)
		if err != nil {
			return fmt.Errorf("%w: station key: %w", ErrUnsafeSetup, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: station key %s is not a regular file", ErrUnsafeSetup, keyFile)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return fmt.Errorf("%w: station key %s is readable by group or others (mode %04o); chmod 600 it", ErrUnsafeSetup, keyFile, perm)
		}
	}
	if dataDir == "" {
		return nil
	}
	fi, err := os.Stat(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: data directory %s does not exist", ErrUnsafeSetup, dataDir)
	}
	if err != nil {
		return fmt.Errorf("%w: data directory: %w", ErrUnsafeSetup, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: data directory %s is not a directory", ErrUnsafeSetup, dataDir)
	}
	data, err := resolve(dataDir)
	if err != nil {
		return fmt.Errorf("%w: data directory: %w", ErrUnsafeSetup, err)
	}
	if data == string(filepath.Separator) {
		return fmt.Errorf("%w: data directory %s is the root filesystem: every train would read the whole host", ErrUnsafeSetup, dataDir)
	}
	for _, p := range append([]string{keyFile}, private...) {
		if p == "" {
			continue
		}
		rp, err := resolve(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnsafeSetup, err)
		}
		if rp == data || strings.HasPrefix(rp, data+string(filepath.Separator)) {
			return fmt.Errorf("%w: %s lies inside the data directory %s, which every train can read", ErrUnsafeSetup, p, dataDir)
		}
	}
	return nil
}

// resolve returns the absolute path of p with symlinks resolved; for a path
// that does not exist yet, its nearest existing ancestor is resolved.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for {
		r, err := filepath.EvalSymlinks(abs)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			return "", err
		}
		rest = filepath.Join(filepath.Base(abs), rest)
		abs = parent
	}
}
