package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"

	"go.uber.org/zap"
)

// The collector's target, unless GOGC is set: GOGC as a percentage of the
// live heap is the wrong knob for both ends of a ring-group router's
// load. Thousands of short calls a second keep a small live heap and make
// garbage fast, so at Go's 100 the collector runs back to back: at
// GOGC=100 the collector's share of the core delayed responses by tens of
// ms from ~600 calls/s (bench/sip, parallel group, direct media, one core:
// CPU per call 1.13 -> 0.94 ms, the knee 600 -> 700 calls/s, INVITE→180
// p95 at 700/s 52 -> 16 ms with GOGC=400). Ten thousand calls ringing at
// once are a large live heap, where 400's headroom is four times that
// heap again in RSS (19 KiB per ringing call instead of 16).
//
// So the target is the live heap plus at least gcHeadroom: GOGC 400 while
// the live heap is under a quarter of it, falling to 100 as the heap
// grows past it. What a GC cycle costs is proportional to the live heap
// and their number to the garbage over the headroom, so the collector's
// CPU stays bounded at small heaps and its memory proportional at large
// ones.
const (
	gcHeadroom = 64 << 20
	gcMin      = 100
	gcMax      = 400
)

// gcPercent is the GOGC that gives a live heap of live bytes the
// headroom, within [gcMin, gcMax].
func gcPercent(live uint64) int {
	if live == 0 {
		return gcMax
	}
	p := gcHeadroom * 100 / live
	return int(min(max(p, gcMin), gcMax))
}

// gcTuner sets GOGC after each collection from the live heap it marked.
type gcTuner struct {
	live    func() uint64
	set     func(int) int // debug.SetGCPercent
	cur     int
	stopped atomic.Bool
	log     *zap.Logger
}

// gcDefault starts the tuner; GOGC and GOMEMLIMIT in the environment are
// the operator's to set and win. The tuner lives as long as the process.
func gcDefault(log *zap.Logger) {
	if os.Getenv("GOGC") != "" {
		return
	}
	t := &gcTuner{live: liveHeap, set: debug.SetGCPercent, log: log}
	t.tune()
	t.arm()
}

// tune sets GOGC for the live heap now.
func (t *gcTuner) tune() {
	if p := gcPercent(t.live()); p != t.cur {
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

// liveHeap is the heap the last GC cycle marked live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
