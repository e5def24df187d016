package repo_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf/ocistore"
	"github.com/trainyard/trainyard/tuf/repo"
)

// TestNewPasswords: a role's first key takes WithNewPasswords' password,
// its later keys (replacing or --add) WithPasswords' one; an error from the
// new-password function creates no key.
func TestNewPasswords(t *testing.T) {
	store, err := ocistore.New(registry.NewClient(), "127.0.0.1:1/x")
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	dir := t.TempDir()
	p := repo.New(store, dir,
		repo.WithPasswords(func(r string) ([]byte, error) { calls = append(calls, "read "+r); return []byte("pw"), nil }),
		repo.WithNewPasswords(func(r string) ([]byte, error) {
			calls = append(calls, "new "+r)
			if r == repo.Snapshot {
				return nil, errors.New("passwords differ")
			}
			return []byte("pw"), nil
		}))
	if _, _, err := p.CreateKey(repo.Root, false); err != nil {
		t.Fatal(err)
	}
	// a second publisher on the same state: the cache is empty, the role has keys
	p2 := repo.New(store, dir,
		repo.WithPasswords(func(r string) ([]byte, error) { calls = append(calls, "read "+r); return []byte("pw"), nil }),
		repo.WithNewPasswords(func(r string) ([]byte, error) { calls = append(calls, "new "+r); return []byte("pw"), nil }))
	if _, _, err := p2.CreateKey(repo.Root, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p2.CreateKey(repo.Root, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.CreateKey(repo.Snapshot, false); err == nil || err.Error() != "password for new snapshot keys: passwords differ" {
		t.Fatalf("snapshot: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "keys", "*", "*.key"))
	for _, f := range files {
		if d := filepath.Base(filepath.Dir(f)); d != "retired" && d != "root" {
			t.Fatalf("a refused new password still created %s", f)
		}
	}
	want := []string{"new root", "read root", "new snapshot"}
	if len(calls) != len(want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("calls %v, want %v", calls, want)
		}
	}
}
