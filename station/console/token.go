package console

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The console's login token lives in one file in the station's state
// directory, readable by the station's user only. Anyone who can read it
// can act as the operator, so a file others can read is refused.

// maxTokenFile bounds what is read from the token file.
const maxTokenFile = 4 << 10

// Token returns the token kept in path, creating a new random one (0600)
// when the file does not exist or rotate is set. A token file that others
// can read, or that is empty, is an error.
func Token(path string, rotate bool) (string, error) {
	if !rotate {
		tok, err := readToken(path)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return tok, err
		}
	}
	return writeToken(path)
}

// readToken reads the token in path, refusing a file others can read.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("console token: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("console token: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("console token %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("console token %s is readable by others (mode %04o): chmod 600 it or rotate it", path, fi.Mode().Perm())
	}
	b := make([]byte, maxTokenFile+1)
	n, _ := f.Read(b)
	if n > maxTokenFile {
		return "", fmt.Errorf("console token %s is larger than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(b[:n]))
	if len(tok) < 16 {
		return "", fmt.Errorf("console token %s is empty or shorter than 16 characters", path)
	}
	return tok, nil
}

// writeToken replaces path with a new random token (32 bytes, base64url),
// atomically, so a concurrent login never reads half a token.
func writeToken(path string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("console token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("console token: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".console.token-*")
	if err != nil {
		return "", fmt.Errorf("console token: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 already; Chmod says so explicitly.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("console token: %w", err)
	}
	if _, err := tmp.WriteString(tok + "\n"); err != nil {
		tmp.Close()
		return "", fmt.Errorf("console token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("console token: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("console token: %w", err)
	}
	return tok, nil
}
