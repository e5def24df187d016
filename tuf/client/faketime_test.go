package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/trainyard/trainyard/tuf/client"
)

func TestFakeTime(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	loc := func(s string) time.Time {
		tt, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	for spec, want := range map[string]time.Time{
		"+1d":                              now.Add(24 * time.Hour),
		"+365d":                            now.Add(365 * 24 * time.Hour),
		"-10d":                             now.Add(-240 * time.Hour),
		"+2h":                              now.Add(2 * time.Hour),
		"+30m":                             now.Add(30 * time.Minute),
		"+100":                             now.Add(100 * time.Second),
		"+1d x2":                           now.Add(24 * time.Hour),
		"2020-01-01 00:00:00":              loc("2020-01-01 00:00:00"),
		"@2020-01-01 00:00:00":             loc("2020-01-01 00:00:00"),
		"2025-02-09 09:17:23+00:00":        time.Date(2025, 2, 9, 9, 17, 23, 0, time.UTC),
		"2025-02-09 09:17:23.123456+00:00": time.Date(2025, 2, 9, 9, 17, 23, 123456000, time.UTC),
		"2025-02-09T09:17:23Z":             time.Date(2025, 2, 9, 9, 17, 23, 0, time.UTC),
	} {
		got, err := client.FakeTime(spec, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("FakeTime(%q) = %v, %v; want %v", spec, got, err, want)
		}
	}
	for _, bad := range []string{"", "tomorrow", "+", "+1w", "+nan", "+1e300d", "2020-13-01 00:00:00"} {
		if _, err := client.FakeTime(bad, now); !errors.Is(err, client.ErrFakeTime) {
			t.Errorf("FakeTime(%q): %v, want ErrFakeTime", bad, err)
		}
	}
}

func FuzzFakeTime(f *testing.F) {
	for _, s := range []string{"+1d", "-10d x2", "@2020-01-01 00:00:00", "2025-02-09 09:17:23+00:00", "+1.5y", "i"} {
		f.Add(s)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := client.FakeTime(s, now)
		if err == nil && got.IsZero() {
			t.Fatalf("%q: zero time without an error", s)
		}
	})
}
