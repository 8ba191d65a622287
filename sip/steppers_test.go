package sip

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

type countStep struct {
	wg *sync.WaitGroup
}

func (c countStep) step() { c.wg.Done() }

// Every step asked for runs, from several goroutines at once and more than
// the queue holds; close waits for the steppers to stop, and a step asked
// for after it still runs.
func TestSteppersRunEveryStep(t *testing.T) {
	before := runtime.NumGoroutine()
	var p steppers
	var wg sync.WaitGroup
	const senders, each = 4, 5000 // 20 000 > the queue's 4096
	wg.Add(senders * each)
	var send sync.WaitGroup
	for range senders {
		send.Add(1)
		go func() {
			defer send.Done()
			for range each {
				p.run(countStep{&wg})
			}
		}()
	}
	send.Wait()
	waitOrFail(t, &wg, "steps before close")
	p.close()
	p.close() // as a second Close does
	wg.Add(1)
	p.run(countStep{&wg})
	waitOrFail(t, &wg, "a step after close")
	for end := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after close, %d before", n, before)
	}
}

func waitOrFail(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not all ran", what)
	}
}
