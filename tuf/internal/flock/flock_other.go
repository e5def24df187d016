//go:build !unix

package flock

// Lock is a no-op where flock(2) does not exist: one process at a time.
func Lock(dir string) (func(), error) { return func() {}, nil }
