package hardened

import (
	"fmt"
	"os"

	"github.com/trainyard/trainyard/internal/fsutil"
)

// KeyFileOption changes how a key file is written or read.
type KeyFileOption func(*keyFileOpts)

type keyFileOpts struct{ passphrase func() ([]byte, error) }

// WithPassphrase encrypts the private key file that GenerateKeyFiles writes,
// or opens an encrypted one in LoadPrivateKey. f is called only when a
// passphrase is needed (so a prompt appears only for encrypted keys).
func WithPassphrase(f func() ([]byte, error)) KeyFileOption {
	return func(o *keyFileOpts) { o.passphrase = f }
}

// GenerateKeyFiles makes a new key pair and writes the private half to
// privPath (mode 0600, encrypted WithPassphrase) and the public half to
// pubPath (0644), each through a temporary file and a rename. Existing files
// are not overwritten.
func GenerateKeyFiles(privPath, pubPath string, opts ...KeyFileOption) (*PrivateKey, error) {
	var o keyFileOpts
	for _, f := range opts {
		f(&o)
	}
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%s already exists", p)
		}
	}
	k, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	var priv []byte
	if o.passphrase != nil {
		pass, perr := o.passphrase()
		if perr != nil {
			return nil, fmt.Errorf("%w: %w", ErrPassphrase, perr)
		}
		priv, err = k.MarshalEncryptedPEM(pass)
	} else {
		priv, err = k.MarshalPEM()
	}
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

// LoadPrivateKey reads a private key file written by GenerateKeyFiles; an
// encrypted one needs WithPassphrase.
func LoadPrivateKey(path string, opts ...KeyFileOption) (*PrivateKey, error) {
	var o keyFileOpts
	for _, f := range opts {
		f(&o)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKeyPEM(b, o.passphrase)
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
