package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// The collector's target, unless GOGC is set. GOGC, a percentage of the
// live heap, is the wrong knob for both ends of a ring-group router's
// load. Thousands of short calls a second keep a small live heap and make
// garbage fast: at Go's 100 the collector runs back to back, and on one
// core at 3000 calls/s it took the daemon down (30 s at 3000/s: GOGC 400
// held with no call lost, 200 lost member calls, 100 lost one call in ten
// and grew to 1.2 GiB as work queued). Ten thousand calls ringing at once
// are a large live heap made slowly, where 400's headroom is four times
// that heap again in RSS (19 KiB per ringing call instead of 16).
//
// What the collector costs in CPU is its cycles' mark work, about
// proportional to the live heap, times their number, the allocation rate
// over the headroom: so the headroom is what the daemon allocates in
// gcInterval, within GOGC 100..400. A busy daemon collects at most every
// gcInterval, at GOGC 400, until its live heap is a quarter of that; a
// large slow one runs at 100. The rate is measured over each cycle and the
// target set again after it.
const (
	gcInterval = 4 * time.Second
	gcMin      = 100
	gcMax      = 400
)

// gcPercent is the GOGC for a live heap of live bytes while the daemon
// allocates rate bytes a second.
func gcPercent(live uint64, rate float64) int {
	if live == 0 {
		return gcMax
	}
	p := 100 * rate * gcInterval.Seconds() / float64(live)
	return int(min(max(p, gcMin), gcMax))
}

// gcTuner sets GOGC after each collection from the live heap it marked
// and the allocation rate since the one before.
type gcTuner struct {
	read    func() (live, allocs uint64)
	now     func() time.Time
	set     func(int) int // debug.SetGCPercent
	cur     int
	allocs  uint64 // at the last tune
	at      time.Time
	stopped atomic.Bool
	log     *zap.Logger
}

// gcDefault starts the tuner; GOGC and GOMEMLIMIT in the environment are
// the operator's to set and win. The tuner lives as long as the process.
func gcDefault(log *zap.Logger) {
	if os.Getenv("GOGC") != "" {
		return
	}
	t := &gcTuner{read: heapStats, now: time.Now, set: debug.SetGCPercent, log: log}
	t.tune()
	t.arm()
}

// tune sets GOGC for the heap now. The first call, with no rate yet,
// starts at gcMax.
func (t *gcTuner) tune() {
	live, allocs := t.read()
	now := t.now()
	p := gcMax
	if !t.at.IsZero() {
		if d := now.Sub(t.at).Seconds(); d > 0 {
			p = gcPercent(live, float64(allocs-t.allocs)/d)
		} else {
			p = t.cur
		}
	}
	t.allocs, t.at = allocs, now
	if p != t.cur {
		t.cur = p
		t.set(p)
		t.log.Debug("GC target", zap.Int("gogc", p))
	}
}

// arm has the next collection call tune: a cleanup runs once the object
// it is attached to (not a tiny one, which shares its block and may
// never be freed) is found unreachable, that is after a GC cycle, on
// the runtime's cleanup goroutine (cleanups run one at a time, so tune
// never runs twice at once).
func (t *gcTuner) arm() {
	runtime.AddCleanup(new([32]byte), func(t *gcTuner) {
		if t.stopped.Load() {
			return
		}
		t.tune()
		t.arm()
	}, t)
}

// heapStats are the heap the last GC cycle marked live and all bytes
// allocated so far.
func heapStats() (live, allocs uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	u := func(v metrics.Value) uint64 {
		if v.Kind() != metrics.KindUint64 {
			return 0
		}
		return v.Uint64()
	}
	return u(s[0].Value), u(s[1].Value)
}
