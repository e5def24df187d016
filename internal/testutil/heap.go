package testutil

import (
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// SampleHeap samples the live heap every 2 ms (runtime/metrics: no
// stop-the-world) until the returned stop is called, which returns the peak
// in bytes. For memory bounds that must hold while data streams.
func SampleHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(finished)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// PeakHeap runs fn and returns the live heap's peak while it ran.
func PeakHeap(fn func()) uint64 {
	stop := SampleHeap()
	fn()
	return stop()
}
