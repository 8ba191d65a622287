package main

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name string
		live uint64
		rate float64 // bytes a second
		want int
	}{
		{"nothing live yet", 0, 0, 400},
		{"idle", 4 * mib, 0, 100},
		{"3000 short calls a second", 40 * mib, 80 * mib, 400},
		{"a quarter of 4 s of garbage live", 80 * mib, 80 * mib, 400},
		{"half", 160 * mib, 80 * mib, 200},
		{"ten thousand calls ringing, made at 500/s", 137 * mib, 15 * mib, 100},
		{"rounds down", 3 * 40 * mib, 90 * mib, 300},
	} {
		if got := gcPercent(c.live, c.rate); got != c.want {
			t.Errorf("%s: gcPercent(%d MiB, %.0f MiB/s) = %d, want %d", c.name, c.live/mib, c.rate/mib, got, c.want)
		}
	}
}

// The tuner sets GOGC at start and again after each collection, from the
// live heap and the allocation rate over the cycle, and only when it
// changes.
func TestGCTunerRetunesAfterEachCollection(t *testing.T) {
	const mib = 1 << 20
	var mu sync.Mutex
	live, allocs, now := uint64(40*mib), uint64(0), time.Unix(1000, 0)
	// state moves the fake heap and clock: the next collection sees
	// the live heap and rate bytes allocated over one second.
	state := func(l, rate uint64) {
		mu.Lock()
		live, allocs, now = l, allocs+rate, now.Add(time.Second)
		mu.Unlock()
	}
	sets := make(chan int, 16)
	tu := &gcTuner{
		read: func() (uint64, uint64) { mu.Lock(); defer mu.Unlock(); return live, allocs },
		now:  func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		set:  func(p int) int { sets <- p; return 0 },
		log:  zap.NewNop(),
	}
	t.Cleanup(func() { tu.stopped.Store(true) })
	tu.tune()
	tu.arm()
	if p := <-sets; p != 400 {
		t.Fatalf("first GOGC %d, want 400", p)
	}
	// GC until the tuner has set want.
	next := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			runtime.GC()
			select {
			case p := <-sets:
				if p != want {
					t.Fatalf("GOGC %d, want %d", p, want)
				}
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		t.Fatalf("GOGC not set to %d after collections", want)
	}
	state(160*mib, 40*mib) // 160 MiB of 4 s of garbage: 100
	next(100)
	state(40*mib, 80*mib)
	next(400)
	// The same heap again sets nothing.
	state(40*mib, 80*mib)
	runtime.GC()
	runtime.GC()
	select {
	case p := <-sets:
		t.Fatalf("GOGC set again, to %d, for the same heap", p)
	case <-time.After(100 * time.Millisecond):
	}
}
