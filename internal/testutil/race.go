//go:build race

package testutil

// RaceEnabled says the race detector is on: it multiplies memory use
// (shadow memory for every allocation), so bounds on a process's RSS do
// not hold under it.
const RaceEnabled = true
