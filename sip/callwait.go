package sip

import (
	"errors"
	"reflect"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/ringroute/ringroute/routing"
)

// run is the call's goroutine, from the caller's INVITE to the end of the
// call: it steps the routing runner and, in the same wait, follows every
// ringing leg's INVITE transaction and the caller's, so that a ringing
// call costs one goroutine however many members it rings.
func (c *call) run() {
	r := c.runner
	r.Begin()
	for r.Turn() {
		w := c.wait()
		switch w.what {
		case wokeRunner: // the next Turn takes the events
		case wokeClosing:
			c.aborted = true
			for _, l := range c.waits.legs {
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
			l := w.leg
			if c.aborted && l.dialErr == nil {
				l.dialTx.Terminate()
				l.dialErr = errClosing
			}
			l.sent(l.dialTx, l.dialErr)
		case wokeResponse:
			w.leg.onResponse(w.res)
			shed(w.res)
		case wokeTxDone:
			w.leg.onTxDone()
		case wokeGiveUp:
			w.leg.onGiveUp()
		}
	}
	r.End()
}

var errClosing = errors.New("server closing")

// shed empties a provisional response once the leg has seen it. sipgo's
// client transaction holds the last response it passed up until the next
// one replaces it, which for a ringing leg is the whole ring time, and a
// parsed 180 (its headers, their params and strings) is over a KiB: a
// tenth of a ringing call's heap. The response is ours once received
// from Responses: sipgo reads a provisional one no more (the ACK of a
// failure is built from the final response, retransmissions replace it
// first), and nothing of ours keeps it.
func shed(res *sipmsg.Response) {
	if res != nil && res.IsProvisional() {
		*res = sipmsg.Response{StatusCode: res.StatusCode, Reason: res.Reason}
	}
}

type woke int

const (
	wokeRunner woke = iota
	wokeClosing
	wokeCallerGone
	wokeDialed
	wokeResponse // per leg from here: its response, transaction end, give-up timer
	wokeTxDone
	wokeGiveUp
)

// waitSet is what one wait of run listens to, kept between waits so that
// building it allocates nothing.
type waitSet struct {
	legs  []*uac
	cases []reflect.SelectCase // only with more than fastLegs legs waiting
}

// fastLegs is how many ringing legs a plain select covers; beyond that
// (big parallel groups) the wait goes through reflect.Select.
const fastLegs = 4

type wakeup struct {
	what woke
	leg  *uac
	res  *sipmsg.Response
}

// wait blocks until something of the call's is ready. Channels that do not
// apply are nil, which a select never chooses.
func (c *call) wait() wakeup {
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
	ws := &c.waits
	ws.legs = ws.legs[:0]
	for _, l := range c.legOrder {
		if l.waiting {
			ws.legs = append(ws.legs, l)
		}
	}
	if len(ws.legs) > fastLegs {
		return c.waitMany(closing, callerDone, ready)
	}
	var res [fastLegs]<-chan *sipmsg.Response
	var done [fastLegs]<-chan struct{}
	var give [fastLegs]<-chan time.Time
	for i, l := range ws.legs {
		res[i], done[i] = l.tx.Responses(), l.tx.Done()
		if l.giveUp != nil {
			give[i] = l.giveUp.C
		}
	}
	leg := func(i int, what woke, r *sipmsg.Response) wakeup {
		return wakeup{what: what, leg: ws.legs[i], res: r}
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
	case r := <-res[0]:
		return leg(0, wokeResponse, r)
	case <-done[0]:
		return leg(0, wokeTxDone, nil)
	case <-give[0]:
		return leg(0, wokeGiveUp, nil)
	case r := <-res[1]:
		return leg(1, wokeResponse, r)
	case <-done[1]:
		return leg(1, wokeTxDone, nil)
	case <-give[1]:
		return leg(1, wokeGiveUp, nil)
	case r := <-res[2]:
		return leg(2, wokeResponse, r)
	case <-done[2]:
		return leg(2, wokeTxDone, nil)
	case <-give[2]:
		return leg(2, wokeGiveUp, nil)
	case r := <-res[3]:
		return leg(3, wokeResponse, r)
	case <-done[3]:
		return leg(3, wokeTxDone, nil)
	case <-give[3]:
		return leg(3, wokeGiveUp, nil)
	}
}

// waitMany is wait for more than fastLegs ringing legs.
func (c *call) waitMany(closing, callerDone <-chan struct{}, ready chan *uac) wakeup {
	ws := &c.waits
	const fixed = 4
	ws.cases = append(ws.cases[:0], recv(c.runner.Wake()), recv(closing), recv(callerDone), recv(ready))
	for _, l := range ws.legs {
		var give <-chan time.Time
		if l.giveUp != nil {
			give = l.giveUp.C
		}
		ws.cases = append(ws.cases, recv(l.tx.Responses()), recv(l.tx.Done()), recv(give))
	}
	i, v, _ := reflect.Select(ws.cases)
	if i < fixed {
		w := wakeup{what: woke(i)}
		if w.what == wokeDialed {
			w.leg = v.Interface().(*uac)
		}
		return w
	}
	w := wakeup{what: wokeResponse + woke((i-fixed)%3), leg: ws.legs[(i-fixed)/3]}
	if w.what == wokeResponse {
		w.res = v.Interface().(*sipmsg.Response)
	}
	return w
}

// recv is a receive case on ch; a nil channel is never ready.
func recv[T any](ch <-chan T) reflect.SelectCase {
	if ch == nil {
		return reflect.SelectCase{Dir: reflect.SelectRecv}
	}
	return reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)}
}
