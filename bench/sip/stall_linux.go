package main

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// stallMon watches for stalls: one thread pinned to each core sleeps
// 5 ms at a time and records how much later than asked it woke up. At
// nice -20 a thread on this kernel wakes within a millisecond unless the
// core itself stopped (a busy host preempting the virtual CPU, which the
// guest does not always see as steal time), so a long oversleep means
// everything on that core stalled with it: the SUT, SIPp, the tap.
type stallMon struct {
	stop chan struct{}
	done chan [2]stallStats
}

// stallStats is one core's oversleeps during a step.
type stallStats struct {
	MaxMs   float64 `json:"max_ms"`
	Over20  int     `json:"over_20ms"`
	Over100 int     `json:"over_100ms"`
}

func startStallMon() *stallMon {
	m := &stallMon{stop: make(chan struct{}), done: make(chan [2]stallStats, 1)}
	res := make(chan struct {
		cpu int
		st  stallStats
	}, 2)
	for cpu := 0; cpu < 2; cpu++ {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var mask [16]uint64
			mask[0] = 1 << cpu
			syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask[0])))
			var st stallStats
			const nap = 5 * time.Millisecond
			for {
				select {
				case <-m.stop:
					res <- struct {
						cpu int
						st  stallStats
					}{cpu, st}
					return
				default:
				}
				t := time.Now()
				time.Sleep(nap)
				late := float64(time.Since(t)-nap) / 1e6
				st.MaxMs = max(st.MaxMs, late)
				if late > 20 {
					st.Over20++
				}
				if late > 100 {
					st.Over100++
				}
			}
		}()
	}
	go func() {
		var out [2]stallStats
		for range 2 {
			r := <-res
			out[r.cpu] = r.st
		}
		m.done <- out
	}()
	return m
}

func (m *stallMon) halt() [2]stallStats {
	close(m.stop)
	return <-m.done
}
