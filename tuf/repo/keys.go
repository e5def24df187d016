package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/tuf/keys"
)

// CreateKey generates a key for role. Unless add is set, the role's current
// keys are retired (kept under keys/retired to cross-sign a new root). It
// returns the key id and the path of the public key file.
func (p *Publisher) CreateKey(role string, add bool) (keyID, pubPath string, err error) {
	err = p.locked(func() error {
		keyID, pubPath, err = p.createKey(role, add)
		return err
	})
	return keyID, pubPath, err
}

func (p *Publisher) createKey(role string, add bool) (string, string, error) {
	if role == "" || role == "retired" {
		return "", "", fmt.Errorf("invalid role name %q", role)
	}
	existing, err := p.keyIDs(role)
	if err != nil {
		return "", "", err
	}
	var pw []byte
	if len(existing) == 0 && p.newPass != nil {
		pw, err = p.newPassword(role)
	} else {
		pw, err = p.password(role)
	}
	if err != nil {
		return "", "", err
	}
	k, err := keys.Generate(p.keyType)
	if err != nil {
		return "", "", err
	}
	enc, err := k.Encrypt(pw)
	if err != nil {
		return "", "", err
	}
	pub, err := keys.MarshalPublic(k.Public())
	if err != nil {
		return "", "", err
	}
	dir := p.keyDir(role)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if !add {
		if err := p.retire(role); err != nil {
			return "", "", err
		}
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, k.KeyID()+".key"), enc, 0o600); err != nil {
		return "", "", err
	}
	pubPath := filepath.Join(dir, k.KeyID()+".pub")
	if err := fsutil.WriteFileAtomic(pubPath, pub, 0o644); err != nil {
		return "", "", err
	}
	return k.KeyID(), pubPath, nil
}

func (p *Publisher) retire(role string) error {
	ids, err := p.keyIDs(role)
	if err != nil {
		return err
	}
	rdir := filepath.Join(p.dir, "keys", "retired")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return err
	}
	for _, id := range ids {
		src := filepath.Join(p.keyDir(role), id)
		if err := os.Rename(src+".key", filepath.Join(rdir, id+".key")); err != nil {
			return err
		}
		_ = os.Rename(src+".pub", filepath.Join(rdir, id+".pub"))
	}
	return nil
}

// keyIDs lists the active keys of a role.
func (p *Publisher) keyIDs(role string) ([]string, error) {
	ents, err := os.ReadDir(p.keyDir(role))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".key"); ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func (p *Publisher) publicKeys(role string) ([]*metadata.Key, error) {
	ids, err := p.keyIDs(role)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no keys for role %q: create them first", role)
	}
	var out []*metadata.Key
	for _, id := range ids {
		data, err := os.ReadFile(filepath.Join(p.keyDir(role), id+".key"))
		if err != nil {
			return nil, err
		}
		k, err := keys.ParsePublic(data)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
		out = append(out, k)
	}
	return out, nil
}

func (p *Publisher) password(role string) ([]byte, error) {
	if p.cache == nil {
		p.cache = map[string][]byte{}
	}
	if pw, ok := p.cache[role]; ok {
		return pw, nil
	}
	pw, err := p.passwords(role)
	if err != nil {
		return nil, fmt.Errorf("password for %s keys: %w", role, err)
	}
	p.cache[role] = pw
	return pw, nil
}

// newPassword is password for a role that has no keys yet.
func (p *Publisher) newPassword(role string) ([]byte, error) {
	if pw, ok := p.cache[role]; ok {
		return pw, nil
	}
	pw, err := p.newPass(role)
	if err != nil {
		return nil, fmt.Errorf("password for new %s keys: %w", role, err)
	}
	if p.cache == nil {
		p.cache = map[string][]byte{}
	}
	p.cache[role] = pw
	return pw, nil
}

// Unlock decrypts the keys of the given roles now, asking for their
// passwords, and keeps them for this Publisher's signing. A command that
// stages a change and then publishes it calls it first, so that a missing
// or wrong password fails before anything is staged, instead of leaving the
// change staged for whatever publishes next (a refresh from cron, say). A
// role whose keys are not on this machine (an offline root) unlocks nothing.
func (p *Publisher) Unlock(roles ...string) error {
	root, err := p.root()
	if err != nil {
		return err
	}
	for _, role := range roles {
		if _, err := p.signers(role, root.Signed.Roles[role].KeyIDs); err != nil {
			return err
		}
	}
	return nil
}

// signers loads the private keys with the given ids, looking in the role's
// directory and in keys/retired. Keys it cannot find are skipped.
func (p *Publisher) signers(role string, ids []string) ([]keys.Signer, error) {
	var out []keys.Signer
	for _, id := range ids {
		if k, ok := p.unlocked[id]; ok {
			out = append(out, k)
			continue
		}
		var data []byte
		var err error
		for _, dir := range []string{p.keyDir(role), filepath.Join(p.dir, "keys", "retired")} {
			data, err = os.ReadFile(filepath.Join(dir, id+".key"))
			if err == nil {
				break
			}
		}
		if err != nil {
			continue
		}
		pw, err := p.password(role)
		if err != nil {
			return nil, err
		}
		k, err := keys.Decrypt(data, pw)
		if err != nil {
			return nil, fmt.Errorf("%s key %s: %w", role, id, err)
		}
		if p.unlocked == nil {
			p.unlocked = map[string]keys.Signer{}
		}
		p.unlocked[id] = k
		out = append(out, k)
	}
	return out, nil
}
