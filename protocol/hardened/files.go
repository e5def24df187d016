package hardened

import (
	"fmt"
	"os"

	"github.com/trainyard/trainyard/internal/fsutil"
)

// GenerateKeyFiles makes a new key pair and writes the private half to
// privPath (mode 0600) and the public half to pubPath (0644), each through a
// temporary file and a rename. Existing files are not overwritten.
func GenerateKeyFiles(privPath, pubPath string) (*PrivateKey, error) {
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%s already exists", p)
		}
	}
	k, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	priv, err := k.MarshalPEM()
	if err != nil {
		return nil, err
	}
	pub, err := k.Public().MarshalPEM()
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(privPath, priv, 0o600); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(pubPath, pub, 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// LoadPrivateKey reads a private key file written by GenerateKeyFiles.
func LoadPrivateKey(path string) (*PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadPublicKey reads a public key file written by GenerateKeyFiles.
func LoadPublicKey(path string) (PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PublicKey{}, err
	}
	k, err := ParsePublicKeyPEM(b)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
