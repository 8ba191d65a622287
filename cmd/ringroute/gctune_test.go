package main

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 400},
		{4 << 20, 400},          // a busy daemon's short calls: the headroom caps at 400
		{gcHeadroom / 4, 400},   // exactly 400's headroom
		{gcHeadroom / 2, 200},   // halfway
		{gcHeadroom, 100},       // Go's default from here on
		{10 * gcHeadroom, 100},  // ten thousand ringing calls: never below 100
		{gcHeadroom/3 + 1, 299}, // rounds down
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("gcPercent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// The tuner sets GOGC at start and again after each collection, from the
// live heap then, and only when it changes.
func TestGCTunerRetunesAfterEachCollection(t *testing.T) {
	var live atomic.Uint64
	live.Store(4 << 20)
	sets := make(chan int, 16)
	tu := &gcTuner{live: live.Load, set: func(p int) int { sets <- p; return 0 }, log: zap.NewNop()}
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
	live.Store(gcHeadroom)
	next(100)
	live.Store(gcHeadroom / 4)
	next(400)
	// The same heap again sets nothing.
	runtime.GC()
	runtime.GC()
	select {
	case p := <-sets:
		t.Fatalf("GOGC set again, to %d, for the same heap", p)
	case <-time.After(100 * time.Millisecond):
	}
}
