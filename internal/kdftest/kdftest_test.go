package kdftest

import "testing"

func TestScryptN(t *testing.T) {
	t.Cleanup(func() { Set(0) })
	if got := ScryptN(1 << 15); got != 1<<15 {
		t.Fatalf("default: %d", got)
	}
	Fast()
	if got := ScryptN(1 << 15); got != fastN {
		t.Fatalf("after Fast: %d", got)
	}
	Set(1 << 4)
	if got := ScryptN(1 << 15); got != 1<<4 {
		t.Fatalf("after Set: %d", got)
	}
	Set(0)
	if got := ScryptN(1 << 15); got != 1<<15 {
		t.Fatalf("after Set(0): %d", got)
	}
}
