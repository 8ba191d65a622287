//go:build !linux

// Package pin binds a benchmark process to one CPU (Linux only).
package pin

// Self does nothing here: no CPU affinity off Linux.
func Self(cpu, nice int) bool { return false }
