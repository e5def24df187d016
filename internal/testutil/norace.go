//go:build !race

package testutil

// RaceEnabled says the race detector is on (see race.go).
const RaceEnabled = false
