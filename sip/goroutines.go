package sip

import "sync"

// goroutines counts the goroutines of ours that Close waits for. A
// sync.WaitGroup may not be added to while its Wait runs with the count at
// zero, and sipgo starts a handler's goroutine for every datagram, one
// that comes as Close waits included: that one is refused here instead
// (the race detector caught the WaitGroup's misuse in TestReinviteRelayed
// under load).
type goroutines struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// add counts one more goroutine, or reports false once close has begun:
// the caller must then not start its work.
func (g *goroutines) add() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// done uncounts a goroutine add counted.
func (g *goroutines) done() { g.wg.Done() }

// close refuses every later add and returns a channel closed when the
// goroutines counted so far have all returned.
func (g *goroutines) close() <-chan struct{} {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	ch := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(ch)
	}()
	return ch
}
