package sip

import (
	"context"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// A member leg's INVITE client transaction (RFC 3261 §17.1.1) is ours,
// not sipgo's. sipgo's costs every leg a transaction object, two channels,
// four timers, a goroutine parked per response until the call takes it,
// and an ACK of its own for every failure; at a few hundred calls a second
// that was a tenth of what the daemon allocated, and the GC cycles it
// brought are the latency tail (docs/behaviour.md). Here the leg is the
// transaction: its responses are matched by the INVITE's branch in
// members (over UDP right in the read loop, udpReader) and queued for the
// call's goroutine, which also keeps Timers A and B and the give-up
// deadline of every leg it rings on one timer. The CANCEL of a leg is the
// leg's too: its responses come the same way, and its Timer E is on the
// same timer.

// members finds a ringing or answered leg by its INVITE's branch. A leg is
// in it from its INVITE until it ends.
type members struct {
	mu sync.Mutex
	m  map[string]*uac
}

func (t *members) add(branch string, l *uac) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[string]*uac)
	}
	t.m[branch] = l
	t.mu.Unlock()
}

func (t *members) remove(l *uac) {
	if l.branch == "" {
		return
	}
	t.mu.Lock()
	if t.m[l.branch] == l {
		delete(t.m, l.branch)
	}
	t.mu.Unlock()
}

// match is the leg whose INVITE or CANCEL res answers (RFC 3261 §17.1.3:
// the top Via's branch and the CSeq method; a CANCEL has its INVITE's
// branch, §9.1), or nil.
func (t *members) match(res *sipmsg.Response) *uac {
	via, cseq := res.Via(), res.CSeq()
	if via == nil || cseq == nil || cseq.MethodName != sipmsg.INVITE && cseq.MethodName != sipmsg.CANCEL {
		return nil
	}
	branch, _ := via.Params.Get("branch")
	if branch == "" {
		return nil
	}
	t.mu.Lock()
	l := t.m[branch]
	t.mu.Unlock()
	return l
}

// byBranch is the leg whose INVITE's branch is b, or nil.
func (t *members) byBranch(b []byte) *uac {
	t.mu.Lock()
	l := t.m[string(b)]
	t.mu.Unlock()
	return l
}

// onResponse gets every response sipgo matched to no transaction of its
// own: a member leg's go to its call; the rest (and any that come after
// the call's runner is done) to onStrayResponse.
func (s *Server) onResponse(res *sipmsg.Response) {
	if l := s.members.match(res); l != nil && l.c.deliver(l, res) {
		return
	}
	s.onStrayResponse(res)
}

// legResponse is a response to a leg's INVITE on its way to the call.
type legResponse struct {
	leg *uac
	res *sipmsg.Response
	to  []byte // a failure's To, when res stands in for it (toInbox)
}

// deliver queues res for the call, whose next step takes it, and kicks
// the call. It never blocks, and it reports false once the call's runner is
// done (call.end).
// Responses reach the call in the order they were delivered: UDP's in the
// order they were read (udpReader), a stream's in its order.
func (c *call) deliver(l *uac, res *sipmsg.Response) bool {
	if !c.toInbox(l, res, nil) {
		return false
	}
	c.kick()
	return true
}

// toInbox is deliver without the kick: the caller has the call stepped.
// to is the To of a failure the read loop took unparsed, res its
// stand-in (udpReader.takeResponse); nil for the rest.
func (c *call) toInbox(l *uac, res *sipmsg.Response, to []byte) bool {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	if c.inboxDone {
		return false
	}
	c.inbox = append(c.inbox, legResponse{l, res, to})
	return true
}

// takeInbox empties the inbox. The two buffers take turns, so that a
// ringing call's responses allocate nothing once both have grown.
func (c *call) takeInbox() []legResponse {
	c.inboxMu.Lock()
	q := c.inbox
	c.inbox = c.spare[:0]
	c.inboxMu.Unlock()
	c.spare = q
	return q
}

// closeInbox refuses further responses and returns those not taken.
func (c *call) closeInbox() []legResponse {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	c.inboxDone = true
	q := c.inbox
	c.inbox = nil
	return q
}

// write sends a request through sipgo's transport layer, outside any
// transaction of sipgo's (as sipgo's Client.WriteRequest does).
func (s *Server) write(req *sipmsg.Request) error {
	return s.ua.TransportLayer().WriteMsg(req)
}

// dial sends a request that may have to open a connection or resolve a
// name first, bounded by dialTimeout (sipgo's own bound is a minute).
func (s *Server) dial(req *sipmsg.Request) error {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	conn, err := s.ua.TransportLayer().ClientRequestConnection(ctx, req)
	if err != nil {
		return err
	}
	defer conn.TryClose()
	return conn.WriteMsg(req)
}

// arm starts the transaction's timers once the INVITE is out: Timer B
// (64*T1 without a provisional response) and, over UDP, Timer A (the
// INVITE again after T1, doubling). A provisional response that came
// first (the INVITE went out from a goroutine of its own) leaves them off.
func (l *uac) arm(now time.Time) {
	if l.provisional {
		return
	}
	l.timeoutAt = l.after(now, 64*sipmsg.T1)
	if !sipmsg.IsReliable(l.transport) {
		l.resendGap = sipmsg.T1
		l.resendAt = l.after(now, l.resendGap)
	}
}

// legTime is a moment of a leg's timers as nanoseconds since its call
// began, on the monotonic clock; 0 is none (every timer is set for later
// than the call's start). Eight bytes where a time.Time is 24: four of
// those took uac past the 448-byte size class.
type legTime int64

// after is the legTime d after now.
func (l *uac) after(now time.Time, d time.Duration) legTime {
	return legTime(now.Add(d).Sub(l.c.start))
}

// proceeding: a provisional response stops Timers A and B (RFC 3261
// §17.1.1.2); a leg that then rings too long is routing's to cancel.
func (l *uac) proceeding() {
	l.resendAt, l.timeoutAt = 0, 0
}

// deadline is the leg's next timer, zero for none.
func (l *uac) deadline() time.Time {
	var at legTime
	for _, t := range [...]legTime{l.resendAt, l.timeoutAt, l.giveUpAt, l.cancelAt} {
		if t != 0 && (at == 0 || t < at) {
			at = t
		}
	}
	if at == 0 {
		return time.Time{}
	}
	return l.c.start.Add(time.Duration(at))
}

// onTimer runs the leg's timers that are due at now.
func (l *uac) onTimer(now time.Time) {
	n := legTime(now.Sub(l.c.start))
	due := func(t legTime) bool { return t != 0 && n >= t }
	switch {
	case !l.waiting:
	case due(l.giveUpAt):
		l.log.Info("cancelled member did not end its INVITE; dropping the transaction")
		l.leave()
		l.fail(408, nil)
	case due(l.timeoutAt):
		l.log.Info("member did not answer the INVITE within 64*T1")
		l.leave()
		l.fail(408, nil)
	case due(l.resendAt):
		l.resendGap *= 2
		l.resendAt = l.after(now, l.resendGap)
		if w := l.wire; w != nil {
			l.resent(w.send(l.c.s))
			break
		}
		inv := l.inv
		if writesAtOnce(inv) {
			l.resent(l.c.s.write(inv))
		} else {
			l.c.s.spawn(func() { l.resent(l.c.s.write(inv)) })
		}
	case due(l.cancelAt):
		// Timer E (§17.1.2.2): T1, doubling up to T2. Only over UDP to
		// an address, where sendCancel sets it.
		l.cancelGap = min(2*l.cancelGap, sipmsg.T2)
		l.cancelAt = l.after(now, l.cancelGap)
		if l.wire != nil {
			l.writeWireCancel()
		} else if req := l.cancelRequest(); req != nil {
			l.writeCancel(req, true)
		}
	}
}

func (l *uac) resent(err error) {
	if err != nil {
		l.log.Debug("INVITE retransmission failed", zap.Error(err))
	}
}

// writeWire sends a request the leg built as bytes (what), from the UDP
// listener to where its INVITE went. None goes out once the server is
// closing.
func (l *uac) writeWire(b []byte, what string) {
	select {
	case <-l.c.s.closing:
		return
	default:
	}
	if _, err := l.c.s.udpConn.WriteToUDPAddrPort(b, l.wire.to); err != nil {
		l.log.Debug(what+" to member failed", zap.Error(err))
	}
}

// writeWireCancel sends (or resends) the CANCEL of an INVITE kept as
// bytes, made from them each time: Timer E seldom fires.
func (l *uac) writeWireCancel() {
	scratch(1024, func(b []byte) {
		l.writeWire(appendCancel(b, l.wire.ident(), inviteCSeq, l.cancelElsewhere), "CANCEL")
	})
}

// ackFailure ACKs a final failure of the leg's INVITE, as the transaction
// does (RFC 3261 §17.1.1.3): the INVITE's Request-URI, top Via, From,
// Call-ID and CSeq number, and the failure's To. to is that To as it came
// when the read loop took the failure unparsed (res is then its stand-in,
// lightResponse); nil, it is read from res.
func (l *uac) ackFailure(res *sipmsg.Response, to []byte) {
	if to == nil {
		h := res.To()
		if h == nil {
			return
		}
		to = []byte(h.Value())
	}
	if w := l.wire; w != nil {
		scratch(1024, func(b []byte) {
			id := w.ident()
			id.to = to
			l.writeWire(appendAckOf(b, id, inviteCSeq), "ACK")
		})
		return
	}
	inv := l.inv
	id := identOf(inv)
	id.to = to
	ack := asRequest(appendAckOf(nil, id, inv.CSeq().SeqNo))
	if ack == nil {
		return
	}
	ack.SetTransport(inv.Transport())
	if d := inv.Destination(); d != "" {
		ack.SetDestination(d)
	}
	ack.Laddr = inv.Laddr
	if writesAtOnce(ack) {
		l.writeAck(ack)
		return
	}
	l.inOrder(func() { l.writeAck(ack) })
}
