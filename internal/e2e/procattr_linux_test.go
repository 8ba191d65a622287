//go:build linux

package e2e

import "syscall"

// procAttr puts the child in its own process group (so cleanup can signal
// the group by the leader's pid) and has the kernel SIGKILL it if the test
// binary dies without running its cleanups (a `go test -timeout` panic).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
