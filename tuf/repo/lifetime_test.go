package repo_test

import (
	"testing"
	"time"

	"github.com/trainyard/trainyard/tuf/repo"
)

func TestDefaultLifetime(t *testing.T) {
	day := 24 * time.Hour
	for role, want := range map[string]time.Duration{
		repo.Root: 365 * day, repo.Targets: 90 * day, repo.Snapshot: 7 * day, repo.Timestamp: day,
		"delegated/role": 90 * day, // delegated roles take targets' lifetime
	} {
		if got := repo.DefaultLifetime(role); got != want {
			t.Errorf("DefaultLifetime(%q) = %v, want %v", role, got, want)
		}
	}
}
