// Package pin binds a benchmark process to one CPU, so that its own work
// never lands on the core of the system it measures.
package pin

import (
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// Self binds every thread of this process to cpu and, when nice is not 0,
// gives each that nice value. Threads the runtime starts later inherit
// both from the thread that creates them, so calling it first thing in
// main pins the whole process. It reports whether every thread was bound.
func Self(cpu, nice int) bool {
	var mask [16]uint64
	mask[cpu/64] = 1 << (cpu % 64)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return false
	}
	ok := true
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask[0])))
		ok = ok && e == 0
		if nice != 0 {
			_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice)
		}
	}
	return ok
}
