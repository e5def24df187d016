package client

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrFakeTime is wrapped when a FAKETIME value cannot be understood.
var ErrFakeTime = errors.New("unsupported FAKETIME value")

// FakeTime interprets a libfaketime FAKETIME value, the clock the
// tuf-conformance suite sets with `faketime` (an LD_PRELOAD library that a
// static Go binary never loads), relative to now:
//
//	"2020-01-01 00:00:00"   absolute (also with fractional seconds or a
//	                        zone offset, "2025-02-09 09:17:23+00:00")
//	"@2020-01-01 00:00:00"  start at that time (the clock runs on; a client
//	                        run is short, so it is taken as that time)
//	"+1d", "-10d", "+2h", "+30m", "+100", "+1.5y"
//	                        offsets: s (default), m, h, d, y
//
// Speed and interval modifiers (" x2", " i5") are ignored. Absolute times
// without a zone are local time, as libfaketime reads them.
func FakeTime(spec string, now time.Time) (time.Time, error) {
	s := strings.TrimSpace(spec)
	if i := strings.IndexAny(s, "xi"); i > 0 && s[i-1] == ' ' {
		s = strings.TrimSpace(s[:i]) // "+1d x2": the rate does not matter here
	}
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: empty", ErrFakeTime)
	}
	if s[0] == '+' || s[0] == '-' {
		d, err := fakeOffset(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: %q: %v", ErrFakeTime, spec, err)
		}
		return now.Add(d), nil
	}
	s = strings.TrimPrefix(s, "@")
	t, err := fakeAbsolute(s)
	if err != nil || t.Year() < 1970 {
		return time.Time{}, fmt.Errorf("%w: %q", ErrFakeTime, spec)
	}
	return t, nil
}

func fakeAbsolute(s string) (time.Time, error) {
	for _, layout := range []string{
		"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05Z07:00",
		time.RFC3339Nano, time.RFC3339,
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not a time")
}

func fakeOffset(s string) (time.Duration, error) {
	unit := time.Second
	body := s
	switch s[len(s)-1] {
	case 's':
		body = s[:len(s)-1]
	case 'm':
		unit, body = time.Minute, s[:len(s)-1]
	case 'h':
		unit, body = time.Hour, s[:len(s)-1]
	case 'd':
		unit, body = 24*time.Hour, s[:len(s)-1]
	case 'y':
		unit, body = 365*24*time.Hour, s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(body, 64)
	if err != nil {
		return 0, err
	}
	// bounded: a nonsense offset must not overflow time.Duration
	sec := f * unit.Seconds()
	if math.IsNaN(sec) || math.Abs(sec) > 200*365*24*3600 {
		return 0, errors.New("offset out of range")
	}
	return time.Duration(sec * float64(time.Second)), nil
}
