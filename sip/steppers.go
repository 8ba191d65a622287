package sip

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// steppers are the goroutines that step calls (call.kick). A goroutine of
// its own for every step started on a 2 KiB stack that a step grows to
// 8-16 KiB, copying it on the way each time: a tenth of the CPU of a
// linear call at 700/s went on newstack. These keep their grown stacks
// from one step to the next (the GC may halve an idle one, once per
// cycle). They start with the server (begin), or at the first kick, and a
// kick that finds them all
// busy and their queue full, or comes after close, gets a goroutine of its
// own, so nothing ever waits to be stepped.
type steppers struct {
	once    sync.Once
	q       chan stepper
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped atomic.Bool
	single  bool // GOMAXPROCS was 1 at start
}

// stepper is what steppers step: a call, or a new INVITE's handler
// (inviteJob).
type stepper interface{ step() }

// begin starts the steppers, if nothing has yet.
func (p *steppers) begin() { p.once.Do(p.start) }

// run has c stepped, now or soon.
func (p *steppers) run(c stepper) {
	p.once.Do(p.start)
	if !p.stopped.Load() {
		select {
		case p.q <- c:
			return
		default:
		}
	}
	go c.step()
}

// behind reports whether a step handed to the steppers now would wait
// behind others: some are queued already, or there is one P, on which no
// stepper runs before the goroutine that hands the step over blocks (for
// the UDP read loop: once it has read every datagram waiting). The read
// loop then steps what sets a call up itself (udpReader.urgent).
func (p *steppers) behind() bool {
	p.once.Do(p.start)
	if p.stopped.Load() {
		return false
	}
	return p.single || len(p.q) > 0
}

func (p *steppers) start() {
	p.q = make(chan stepper, 4096)
	p.stop = make(chan struct{})
	p.single = runtime.GOMAXPROCS(0) == 1
	n := max(4, 2*runtime.GOMAXPROCS(0))
	p.wg.Add(n)
	for range n {
		go p.work()
	}
}

func (p *steppers) work() {
	defer p.wg.Done()
	for {
		select {
		case c := <-p.q:
			c.step()
		case <-p.stop:
			for {
				select {
				case c := <-p.q:
					c.step()
				default:
					return
				}
			}
		}
	}
}

// close stops the steppers once what is queued is stepped; later kicks
// get goroutines of their own. Close calls it after its calls have ended;
// again, it does nothing.
func (p *steppers) close() {
	p.once.Do(func() {}) // none start from here on
	if p.stop == nil || p.stopped.Swap(true) {
		return // never started, or closed already (Close may run twice)
	}
	close(p.stop)
	p.wg.Wait()
}
