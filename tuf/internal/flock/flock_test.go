//go:build unix

package flock

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestLockExcludes(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Bool
	done := make(chan struct{})
	go func() {
		u, err := Lock(dir) // a second open file description: blocks
		if err == nil {
			got.Store(true)
			u()
		}
		close(done)
	}()
	time.Sleep(100 * time.Millisecond)
	if got.Load() {
		t.Fatal("second lock taken while the first is held")
	}
	unlock()
	<-done
	if !got.Load() {
		t.Fatal("second lock never taken")
	}
}
