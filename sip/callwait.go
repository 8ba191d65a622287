package sip

import (
	"errors"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/ringroute/ringroute/routing"
)

// A call runs on no goroutine of its own. Whatever has something for it
// (a leg's response, a routing event, its timer, the caller's transaction
// ending, a leg's dial coming back) kicks it, and a kick has one of the
// server's steppers step the call until it has nothing left to do, unless
// a goroutine is stepping it already. A ringing call is its state and one timer:
// no goroutine, no stack, however many members it rings. Steps never
// overlap, and each begins after the last one's end (sched's atomics
// order them), so everything the call's steps touch is as if on one
// goroutine: "the call's goroutine" below means whichever steps it.
const (
	schedIdle    int32 = iota
	schedRunning       // a goroutine steps the call
	schedAgain         // one does, and it was kicked since it last looked
	schedDone          // the call is over: kicks do nothing
)

// begin starts the call on the calling goroutine, which startCall left
// stepping it (schedRunning), and returns once the call has nothing to do
// for now; onEnd runs when it is over, on whichever goroutine steps it
// last.
func (c *call) begin() {
	// The routing deadlines (ring timeouts, retry delays) go on the call's
	// one timer with its legs' (routing.Runner.KeepTimer). A clock other
	// than the system's keeps the runner's own timer, which follows it
	// and kicks the call through Post.
	if _, c.kept = c.s.clock.(systemClock); c.kept {
		c.runner.KeepTimer()
	}
	c.runner.Begin()
	c.step()
}

// kick has the call stepped: now, by one of the server's steppers, unless
// a goroutine already steps it (which then looks again before it stops). It never
// blocks, and may be called from anywhere, a step of the call included.
func (c *call) kick() {
	for {
		switch c.sched.Load() {
		case schedIdle:
			if c.sched.CompareAndSwap(schedIdle, schedRunning) {
				c.s.steppers.run(c)
				return
			}
		case schedRunning:
			if c.sched.CompareAndSwap(schedRunning, schedAgain) {
				return
			}
		default: // schedAgain: it will look; schedDone: nothing to do
			return
		}
	}
}

// stepHere steps the call on the calling goroutine, now, unless one
// steps it already (which then looks again, as after a kick).
func (c *call) stepHere() {
	if c.sched.CompareAndSwap(schedIdle, schedRunning) {
		c.step()
		return
	}
	c.kick()
}

// step advances the call until nothing is left for it, including anything
// kicked meanwhile, and ends it once it is over.
func (c *call) step() {
	for {
		if c.advance() {
			c.sched.Store(schedDone)
			c.cleanup()
			if c.onEnd != nil {
				c.onEnd()
			}
			return
		}
		if c.sched.CompareAndSwap(schedRunning, schedIdle) {
			return
		}
		c.sched.Store(schedRunning) // schedAgain: look again
	}
}

// advance does what the call has to do now: it steps the routing runner
// and, beside it, runs every ringing leg's INVITE transaction and follows
// the caller's. It reports whether the call is over, and otherwise sets
// the call's timer for its next deadline.
func (c *call) advance() (over bool) {
	r := c.runner
	timed := false // the timers ran in this advance: at most once, see below
	for {
		if c.ending {
			for _, l := range c.takeDialed() {
				c.dialing--
				l.leave()
			}
			return c.dialing == 0
		}
		if !r.Turn() {
			c.end()
			continue
		}
		c.collectWaits()
		if !c.aborted {
			// Checked, not waited on: Close posts to every call once it
			// has closed closing, and that kicks the call.
			select {
			case <-c.s.closing:
				c.aborted = true
				for _, l := range c.waits {
					l.abort()
				}
				// Close posts this too, a moment later; routing must not
				// hunt on in between (start refuses new legs meanwhile).
				c.post(routing.Shutdown{})
				continue
			default:
			}
		}
		busy := false
		if c.callerEnded.Load() && !c.gone {
			// The caller's transaction ended. Without a final response (a
			// transport error) the caller is gone.
			c.gone = true
			c.a.gone()
			busy = true
		}
		if q := c.takeInbox(); len(q) > 0 {
			for i, r := range q {
				c.onLegResponse(r)
				q[i] = legResponse{} // the buffer is reused: keep no message alive
			}
			busy = true
		}
		if d := c.takeDialed(); len(d) > 0 {
			for _, l := range d {
				c.dialing--
				err := l.dialErr
				if c.aborted && err == nil {
					err = errClosing
				}
				l.sent(err)
			}
			busy = true
		}
		if busy {
			continue // Turn takes the events these posted
		}
		now := time.Now()
		next := c.deadline()
		if !timed && !next.IsZero() && !now.Before(next) {
			// Once per advance: a deadline still due after its timer ran
			// goes back on the timer (at once), as it would have on a
			// goroutine that waited for it, instead of spinning here.
			timed = true
			c.alarmAt = time.Time{}
			for _, l := range c.waits {
				l.onTimer(now)
			}
			if c.kept {
				if at, ok := r.Deadline(); ok && !at.After(now) {
					r.Tick()
				}
			}
			continue
		}
		c.alarmFor(next)
		return false
	}
}

// end: the runner is done with the call. A leg's INVITE may still be on its
// way out from a goroutine of its own (dial: TLS, TCP) when its member's
// final response has already ended the call: advance waits for it to come
// back before the call is over (TestTLSMember, when the 486 beat it).
func (c *call) end() {
	c.ending = true
	for _, r := range c.closeInbox() {
		if r.to != nil {
			// A failure read unparsed, which its leg never took: it is
			// owed its ACK all the same.
			if r.leg.wire != nil || r.leg.inv != nil {
				r.leg.ackFailure(r.res, r.to)
			}
			continue
		}
		res := r.res
		c.s.spawn(func() { c.s.onStrayResponse(res) })
	}
	if c.alarm != nil {
		c.alarm.Stop()
	}
	for _, l := range c.legOrder {
		c.s.members.remove(l)
	}
	c.runner.End()
}

// onLegResponse takes one response to a leg's INVITE or CANCEL.
func (c *call) onLegResponse(r legResponse) {
	l, res := r.leg, r.res
	switch {
	case res.CSeq().MethodName == sipmsg.CANCEL:
		l.onCancelResponse(res)
	case l.live():
		l.onResponse(res, r.to)
	case r.to != nil:
		// A copy of a failure that ended the leg, read unparsed: it came
		// before our ACK of the first one could reach the member. A copy
		// sent after that reaches onStrayResponse through the parser
		// (the leg is no longer in members) and is ACKed from s.failed.
	default:
		// A stray 2xx is ACKed and BYEd through sipgo, which may look a
		// name up on the way: not on the goroutine that steps calls.
		c.s.spawn(func() { c.s.onStrayResponse(res) })
	}
}

var errClosing = errors.New("server closing")

// collectWaits gathers the legs whose INVITE transaction the call runs,
// kept in c.waits so that stepping a call allocates nothing.
func (c *call) collectWaits() {
	c.waits = c.waits[:0]
	for _, l := range c.legOrder {
		if l.waiting {
			c.waits = append(c.waits, l)
		}
	}
}

// deadline is the call's next deadline, its legs' and (kept) the runner's;
// zero for none.
func (c *call) deadline() time.Time {
	var next time.Time
	for _, l := range c.waits {
		if at := l.deadline(); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if c.kept {
		if at, ok := c.runner.Deadline(); ok && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next
}

// dialDone: l's INVITE went out from a goroutine of its own (dial), or
// failed to; the call takes it in its next step.
func (c *call) dialDone(l *uac) {
	c.inboxMu.Lock()
	c.dialed = append(c.dialed, l)
	c.inboxMu.Unlock()
	c.kick()
}

// takeDialed returns the legs back from dialling since the last call.
func (c *call) takeDialed() []*uac {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	if len(c.dialed) == 0 {
		return nil
	}
	d := c.dialed
	c.dialed = nil
	return d
}

// callerEnd: the caller's INVITE transaction ended (OnTerminate).
func (c *call) callerEnd() {
	c.callerEnded.Store(true)
	c.kick()
}

// alarmFor sets the call's one timer to at, the earliest of its deadlines
// (zero: none). It kicks the call when it fires; a firing for a deadline
// since moved only kicks the call for nothing.
func (c *call) alarmFor(at time.Time) {
	switch {
	case at.IsZero():
		if c.alarm != nil && !c.alarmAt.IsZero() {
			c.alarm.Stop()
		}
	case c.alarm == nil:
		c.alarm = time.AfterFunc(time.Until(at), c.kick)
	case !at.Equal(c.alarmAt):
		c.alarm.Reset(time.Until(at))
	}
	c.alarmAt = at
}
