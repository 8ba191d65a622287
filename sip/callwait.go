package sip

import (
	"errors"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/ringroute/ringroute/routing"
)

// run is the call's goroutine, from the caller's INVITE to the end of the
// call: it steps the routing runner and, in the same wait, runs every
// ringing leg's INVITE transaction and follows the caller's, so that a
// ringing call costs one goroutine and one timer (routing's deadlines and
// its legs' together) however many members it rings.
func (c *call) run() {
	r := c.runner
	// The routing deadlines (ring timeouts, retry delays) go on the call's
	// one timer with its legs' (routing.Runner.KeepTimer). A clock other
	// than the system's keeps the runner's own timer, which follows it.
	_, kept := c.s.clock.(systemClock)
	if kept {
		r.KeepTimer()
	}
	r.Begin()
	for r.Turn() {
		w := c.wait(kept)
		switch w.what {
		case wokeUp:
			// Anything of inboxWake's; the next Turn takes the runner's
			// events.
			if c.callerEnded.Load() && !c.gone {
				// The caller's transaction ended. Without a final
				// response (a transport error) the caller is gone.
				c.gone = true
				c.a.gone()
			}
			q := c.takeInbox()
			for i, r := range q {
				c.onLegResponse(r.leg, r.res)
				q[i] = legResponse{} // the buffer is reused: keep no message alive
			}
		case wokeClosing:
			c.aborted = true
			for _, l := range c.waits {
				l.abort()
			}
			// Close posts this too, a moment later; routing must not
			// hunt on in between (start refuses new legs meanwhile).
			c.post(routing.Shutdown{})
		case wokeDialed:
			c.dialing--
			err := w.leg.dialErr
			if c.aborted && err == nil {
				err = errClosing
			}
			w.leg.sent(err)
		case wokeTimer:
			c.alarmAt = time.Time{}
			now := time.Now()
			for _, l := range c.waits {
				l.onTimer(now)
			}
			if kept {
				if at, ok := r.Deadline(); ok && !at.After(now) {
					r.Tick()
				}
			}
		}
	}
	for _, r := range c.closeInbox() {
		c.s.onStrayResponse(r.res)
	}
	if c.alarm != nil {
		c.alarm.Stop()
	}
	for _, l := range c.legOrder {
		c.s.members.remove(l)
	}
	r.End()
	// A leg's INVITE may still be on its way out from a goroutine of its
	// own (dial: TLS, TCP) when its member's final response has already
	// ended the call: that goroutine is waited for here, not left blocked
	// on ready forever (TestTLSMember, when the 486 beat it).
	for ; c.dialing > 0; c.dialing-- {
		(<-c.ready).leave()
	}
}

// onLegResponse takes one response to a leg's INVITE or CANCEL.
func (c *call) onLegResponse(l *uac, res *sipmsg.Response) {
	switch {
	case res.CSeq().MethodName == sipmsg.CANCEL:
		l.onCancelResponse(res)
	case l.live():
		l.onResponse(res)
	default:
		c.s.onStrayResponse(res)
	}
}

var errClosing = errors.New("server closing")

type woke int

const (
	wokeUp woke = iota // inboxWake
	wokeClosing
	wokeDialed
	wokeTimer
)

type wakeup struct {
	what woke
	leg  *uac
}

// wait blocks until something of the call's is ready; kept: the runner's
// next deadline is on the call's timer too. ready is nil unless a leg
// dials, and a select never chooses a nil channel.
func (c *call) wait(kept bool) wakeup {
	var ready chan *uac
	if c.dialing > 0 {
		ready = c.ready
	}
	c.waits = c.waits[:0]
	var next time.Time
	for _, l := range c.legOrder {
		if !l.waiting {
			continue
		}
		c.waits = append(c.waits, l)
		if at := l.deadline(); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if !c.aborted {
		// Checked, not waited on: Close posts to every call once it has
		// closed closing, and that wakes the call on inboxWake.
		select {
		case <-c.s.closing:
			return wakeup{what: wokeClosing}
		default:
		}
	}
	if kept {
		if at, ok := c.runner.Deadline(); ok && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	var tick <-chan time.Time
	if !next.IsZero() {
		tick = c.alarmFor(next)
	}
	select {
	case <-c.inboxWake:
		return wakeup{what: wokeUp}
	case l := <-ready:
		return wakeup{what: wokeDialed, leg: l}
	case <-tick:
		return wakeup{what: wokeTimer}
	}
}

// callerEnd: the caller's INVITE transaction ended (OnTerminate).
func (c *call) callerEnd() {
	c.callerEnded.Store(true)
	select {
	case c.inboxWake <- struct{}{}:
	default:
	}
}

// alarmFor sets the call's one timer to at, the earliest of its legs'
// deadlines, and returns its channel. Reset drops a tick not taken
// (Go 1.23 timers), so an old deadline never wakes a newer wait.
func (c *call) alarmFor(at time.Time) <-chan time.Time {
	switch {
	case c.alarm == nil:
		c.alarm = time.NewTimer(time.Until(at))
	case !at.Equal(c.alarmAt):
		c.alarm.Reset(time.Until(at))
	}
	c.alarmAt = at
	return c.alarm.C
}
