//go:build !linux

package main

type stallMon struct{}

type stallStats struct {
	MaxMs           float64
	Over20, Over100 int
}

func startStallMon() *stallMon { return &stallMon{} }

func (m *stallMon) halt() [2]stallStats { return [2]stallStats{} }
