//go:build unix

package flock

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// held reports whether another open file description holds dir's lock
// exclusively (a shared lock on a new description would be refused),
// asked without waiting (LOCK_NB).
func held(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return false
}

// The lock excludes a second holder, and a waiting Lock gets it only once
// the first is released (the waiter checks the released flag, set before
// the unlock: no sleeps, no timing).
func TestLockExcludes(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !held(t, dir) {
		t.Fatal("lock not held after Lock")
	}
	var released, early atomic.Bool
	acquired := make(chan func())
	go func() {
		u, err := Lock(dir) // a second open file description: waits
		if err != nil {
			t.Error(err)
			close(acquired)
			return
		}
		early.Store(!released.Load())
		acquired <- u
	}()
	if !held(t, dir) {
		t.Fatal("lock not held while the waiter waits")
	}
	released.Store(true)
	unlock()
	u, ok := <-acquired
	if !ok {
		t.Fatal("second Lock failed")
	}
	if early.Load() {
		t.Fatal("second lock taken while the first was held")
	}
	if !held(t, dir) {
		t.Fatal("the second holder does not hold the lock")
	}
	u()
	if held(t, dir) {
		t.Fatal("lock still held after both released")
	}
}
