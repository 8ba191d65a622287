//go:build unix && !linux

package e2e

import "syscall"

// procAttr puts the child in its own process group, so cleanup can signal
// the group by the leader's pid.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
