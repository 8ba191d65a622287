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
		case wokeRunner: // the next Turn takes the events
		case wokeClosing:
			c.aborted = true
			for _, l := range c.waits {
				l.abort()
			}
			// Close posts this too, a moment later; routing must not
			// hunt on in between (start refuses new legs meanwhile).
			c.post(routing.Shutdown{})
		case wokeCallerGone:
			// The caller's transaction died without a final response
			// (transport error): the caller is gone.
			c.a.gone()
		case wokeDialed:
			c.dialing--
			err := w.leg.dialErr
			if c.aborted && err == nil {
				err = errClosing
			}
			w.leg.sent(err)
		case wokeResponses:
			q := c.takeInbox()
			for i, r := range q {
				c.onLegResponse(r.leg, r.res)
				q[i] = legResponse{} // the buffer is reused: keep no message alive
			}
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
	wokeRunner woke = iota
	wokeClosing
	wokeCallerGone
	wokeDialed
	wokeResponses
	wokeTimer
)

type wakeup struct {
	what woke
	leg  *uac
}

// wait blocks until something of the call's is ready; kept: the runner's
// next deadline is on the call's timer too. Channels that do not
// apply are nil, which a select never chooses.
func (c *call) wait(kept bool) wakeup {
	var closing, callerDone <-chan struct{}
	var ready chan *uac
	if !c.aborted {
		closing = c.s.closing
	}
	if !c.a.hasFinal() {
		callerDone = c.a.tx.Done()
	}
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
	case <-c.runner.Wake():
		return wakeup{what: wokeRunner}
	case <-closing:
		return wakeup{what: wokeClosing}
	case <-callerDone:
		return wakeup{what: wokeCallerGone}
	case l := <-ready:
		return wakeup{what: wokeDialed, leg: l}
	case <-c.inboxWake:
		return wakeup{what: wokeResponses}
	case <-tick:
		return wakeup{what: wokeTimer}
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
