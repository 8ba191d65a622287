package main

import (
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// pinSelf binds every thread of the bench to one CPU (the load
// generator's), so that its own work (reading /proc, the wire tap, HTTP to
// the daemon) never lands on the core of the system under test, and gives
// each the nice value nice. Threads the runtime starts later inherit both.
func pinSelf(cpu, nice int) bool {
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
