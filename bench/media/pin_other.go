//go:build !linux

package main

func pin(cpu int) bool { return false }

func cpuTime() float64 { return 0 }
