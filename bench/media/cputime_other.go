//go:build !linux

package main

func cpuTime() float64 { return 0 }
