// Package kdftest is the test hook that makes tuf/keys' scrypt cheap.
//
// It lives under internal/ so that only this module can reach it: a program
// importing trainyard cannot weaken the KDF of the keys it writes. Tests call
// Fast (from init or TestMain); production code never calls anything here
// but ScryptN.
package kdftest

import "sync/atomic"

// fastN is the cost tests use: 1 MiB of memory, about a millisecond.
const fastN = 1 << 10

var override atomic.Int64

// Fast lowers the scrypt cost of keys written from now on to 2^10.
func Fast() { Set(fastN) }

// Set sets the scrypt cost of keys written from now on (n a power of two,
// at least 2); 0 restores the default.
func Set(n int) { override.Store(int64(n)) }

// ScryptN returns the cost a key file is written with: def unless a test
// lowered it.
func ScryptN(def int) int {
	if n := override.Load(); n > 0 {
		return int(n)
	}
	return def
}
