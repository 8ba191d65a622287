//go:build !linux

package main

import (
	"errors"
	"time"
)

type tap struct{}

type tapResult struct {
	Calls, Seen                            int
	Drops                                  uint32
	Setup, R180, Ring, Added, Fork, Answer pct
}

const tapAvailable = false

func startTap(int, int, int) (*tap, error) { return nil, errors.New("the wire tap needs Linux") }

func (t *tap) halt(time.Duration) (tapResult, error) { return tapResult{}, nil }
