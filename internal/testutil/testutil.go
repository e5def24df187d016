// Package testutil holds what the tests of several packages share: the rule
// that a test needing a real part (runc, dockerd, a browser) fails in CI
// instead of skipping, and a private Docker engine started by the test binary.
// Only _test.go files import it.
package testutil

import (
	"os"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where every real part
// is installed by .ci/run and a skip would hide a test that never ran.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// SkipUnlessCI skips the test with the reason outside CI and fails it in CI.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI must run this test with its real parts: "+format, args...)
	}
	t.Skipf(format, args...)
}
