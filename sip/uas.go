package sip

import (
	"context"
	"sync"

	sipgo "github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/media"
	"github.com/ringroute/ringroute/routing"
)

// uas is the caller's side of a call: the INVITE server transaction while
// it is pending, then the dialog we share with the caller.
type uas struct {
	dialog
	c   *call
	req *sipmsg.Request
	tx  sipmsg.ServerTransaction

	mu        sync.Mutex
	rang      bool
	final     bool // a final response was sent (or sipgo sent 487)
	cancelled bool
	txGone    bool // the transaction ended without a final response
	answered  bool
	confirmed bool // the ACK for our 200 arrived
	ended     bool // BYE sent or received
	// Made when first needed, as most calls never wait on them: a
	// ringing call held three channels it had no use for yet.
	finalSent signal
	acked     chan *sipmsg.Request // see ackCh
	stopped   signal
}

func newUAS(c *call, req *sipmsg.Request, tx sipmsg.ServerTransaction) *uas {
	a := &uas{c: c, req: req, tx: tx}
	a.callID = req.CallID().Value()
	a.remoteCSeq = req.CSeq().SeqNo
	a.transport = req.Transport()
	a.client, _ = c.s.client(a.transport)
	a.destination = req.Source()
	a.contact = c.s.contact(a.transport)
	a.side = media.Caller
	return a
}

// fillDialog makes what in-dialog requests toward the caller need (our
// From, their To, target and route set) out of its INVITE, once the call
// is answered or bridged: until then nothing is sent inside the dialog,
// and a ringing call would carry a copy of each of the INVITE's headers.
// It runs before the call publishes its winner (c.mu), after which the
// relay and hangUp read these.
func (a *uas) fillDialog() {
	a.dialog.mu.Lock()
	defer a.dialog.mu.Unlock()
	if a.local != nil {
		return
	}
	req := a.req
	from, to := req.From(), req.To()
	a.local = &sipmsg.FromHeader{DisplayName: to.DisplayName, Address: *to.Address.Clone(), Params: to.Params.Clone()}
	a.local.Params.Add("tag", a.localTag())
	a.remote = &sipmsg.ToHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: from.Params.Clone()}
	if ct := req.Contact(); ct != nil {
		a.remoteTarget = ct.Address.Clone()
	}
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sipmsg.RecordRouteHeader); ok {
			a.routeSet = append(a.routeSet, *rr.Address.Clone())
		}
	}
}

// localTag is our To tag, which acceptInvite put into the INVITE itself
// before anything answered it.
func (a *uas) localTag() string {
	t, _ := a.req.To().Params.Get("tag")
	return t
}

// markFinal records, under a.mu, that the INVITE's final response is
// decided; the one path that set it calls release once the response is
// in the transaction's hands.
func (a *uas) markFinal() { a.final = true }

// udp reports whether the caller's transaction is ringroute's, over UDP
// (invitesrv.go): its responses are datagrams, whose writes never wait.
func (a *uas) udp() bool {
	_, ok := a.tx.(*inviteServerTx)
	return ok
}

// release lets the INVITE's handler return (a pickup's; a call's handler
// is the call's own goroutine). Not before the final response is handed
// to sipgo: a handler that returns first gets its transaction terminated
// (TerminateGracefully), and the response then fails with "transaction
// terminated" (TestPickup failed so under load).
func (a *uas) release() { a.finalSent.close() }

// onCancel runs inside sipgo's transaction lock when the caller's CANCEL
// matched our INVITE: sipgo has answered 200 and sends 487 itself. It only
// records and posts.
func (a *uas) onCancel() {
	a.mu.Lock()
	if a.answered || a.cancelled {
		a.mu.Unlock()
		return
	}
	a.cancelled = true
	a.markFinal()
	a.mu.Unlock()
	// sipgo sends the 487 in the same transition, under the lock that
	// TerminateGracefully takes too.
	a.release()
	a.c.s.setups.end(a.req)
	a.c.post(routing.CallerCancelled{})
}

// hasFinal reports whether the INVITE transaction is over for us: a final
// response went out, or the transaction died (gone).
func (a *uas) hasFinal() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.final || a.txGone
}

// gone: the caller's INVITE transaction ended before a final response (a
// transport error), so the caller is gone.
func (a *uas) gone() {
	a.mu.Lock()
	if a.final || a.txGone {
		a.mu.Unlock()
		return
	}
	a.txGone = true
	a.mu.Unlock()
	a.c.s.setups.end(a.req)
	a.c.post(routing.CallerCancelled{})
}

// response builds a response to the INVITE carrying our tag and Contact.
func (a *uas) response(code int, body []byte, ct string) *sipmsg.Response {
	res := newResponse(a.req, code, reasonPhrase(code))
	res.AppendHeader(a.c.s.hdrServer)
	if code > 100 && code < 300 {
		res.AppendHeader(a.contact.Clone())
		res.AppendHeader(a.c.s.hdrAllow)
	}
	setBody(res, body, ct)
	return res
}

// ring sends 180 Ringing, once.
//
// ring, progress, reject and ok decide under a.mu and send after
// unlocking: sipgo calls onCancel, which takes a.mu, while holding the
// transaction's lock, and Respond takes that lock too. A CANCEL that
// crosses a response is then sorted out by the transaction: whatever it
// refuses to send after its 487 fails harmlessly.
func (a *uas) ring() {
	a.mu.Lock()
	if a.rang || a.final {
		a.mu.Unlock()
		return
	}
	a.rang = true
	a.mu.Unlock()
	if err := a.tx.Respond(a.response(180, nil, "")); err != nil {
		a.c.log.Debug("180 to caller failed", zap.Error(err))
	}
}

// progress sends 183 Session Progress with our SDP: early media or
// ringback is coming through the relay.
func (a *uas) progress(body []byte) {
	a.mu.Lock()
	if a.final {
		a.mu.Unlock()
		return
	}
	a.rang = true
	a.mu.Unlock()
	if err := a.tx.Respond(a.response(183, body, "application/sdp")); err != nil {
		a.c.log.Debug("183 to caller failed", zap.Error(err))
	}
}

// reject answers the INVITE with a final failure.
func (a *uas) reject(code int) {
	a.mu.Lock()
	if a.final {
		a.mu.Unlock()
		return
	}
	a.markFinal()
	a.mu.Unlock()
	a.c.s.setups.end(a.req)
	if err := a.tx.Respond(a.response(code, nil, "")); err != nil {
		a.c.log.Debug("final response to caller failed", zap.Int("code", code), zap.Error(err))
	}
	a.release()
}

// answer sends 200 with the winner's answer and keeps sending it until the
// caller ACKs (RFC 3261 §13.3.1.4); the transaction layer does not
// retransmit 2xx. Nothing here holds a.mu while the media is set up:
// onCancel takes a.mu inside sipgo's transaction lock, and a CANCEL that
// crosses the winner's 2xx is caught by ok, which decides again under it.
func (a *uas) answer(b bridged) {
	a.mu.Lock()
	final := a.final
	a.mu.Unlock()
	if final {
		// The caller's CANCEL crossed the winner's 2xx.
		a.c.post(routing.CallerAnswerFailed{})
		return
	}
	body, ct := b.answerBody()
	m := a.c.m
	if m != nil {
		var err error
		if body, err = m.answer(b, body); err != nil {
			a.c.log.Info("cannot relay the winner's media", zap.Error(err))
			a.c.post(routing.CallerAnswerFailed{})
			return
		}
		ct = "application/sdp"
	}
	sent := a.ok(body, ct, func(ack *sipmsg.Request) {
		// A delayed offer is answered in the caller's ACK; the winner
		// waits for it in its own ACK.
		body, ct := ack.Body(), contentType(ack)
		if a.c.m != nil && isSDP(ack) {
			body, ct = a.c.m.ackAnswer(body), "application/sdp"
		}
		b.ackAnswer(body, ct)
	}, func() { a.c.post(routing.CallerAnswerFailed{}) })
	if sent && m != nil {
		// The recording opens a file: a slow disk must hold up neither the
		// 200 nor this call's events, so it starts beside them.
		a.c.s.spawn(func() { m.record(b) })
	}
}

// ok answers the INVITE with 200 and body, then waits for the ACK in the
// background: onAck gets it; onFail runs when the 200 cannot be sent or is
// never ACKed (the peer then also gets BYE, RFC 3261 §13.3.1.4). It
// reports whether the 200 went out.
func (a *uas) ok(body []byte, ct string, onAck func(*sipmsg.Request), onFail func()) bool {
	a.fillDialog() // the 200 sets the dialog up: BYE may follow
	a.mu.Lock()
	if a.final {
		a.mu.Unlock()
		onFail()
		return false
	}
	res := a.response(200, body, ct)
	a.answered = true
	a.markFinal()
	a.mu.Unlock()
	a.c.s.setups.end(a.req)
	err := a.tx.Respond(res)
	a.release()
	if err != nil {
		a.c.log.Info("200 failed", zap.Error(err))
		onFail()
		return false
	}
	a.c.s.spawn(func() { a.awaitAck(res, onAck, onFail) })
	return true
}

func (a *uas) awaitAck(res *sipmsg.Response, onAck func(*sipmsg.Request), onFail func()) {
	ack, err := a.c.s.awaitACK(res, a.transport, a.ackCh(), a.stopped.wait())
	switch {
	case ack != nil:
		a.mu.Lock()
		a.confirmed = true
		a.mu.Unlock()
		onAck(ack)
	case err != nil:
		// RFC 3261 §13.3.1.4: no ACK for 64*T1 and the session SHOULD be
		// ended with a BYE.
		a.c.log.Info("no ACK for our 200; hanging up")
		a.hangUp()
		onFail()
	}
}

// onAck routes an ACK the caller sent inside our dialog.
func (a *uas) onAck(ack *sipmsg.Request) {
	if a.dialog.ackPending(ack) {
		return
	}
	a.mu.Lock()
	confirmed := a.confirmed
	a.mu.Unlock()
	if !confirmed {
		select {
		case a.ackCh() <- ack:
		default:
		}
	}
}

// hangUp sends BYE to the answered caller.
func (a *uas) hangUp() {
	a.mu.Lock()
	if a.ended || !a.answered {
		a.mu.Unlock()
		return
	}
	a.ended = true
	a.mu.Unlock()
	bye := a.newRequest(sipmsg.BYE, 0)
	a.c.s.spawn(func() { a.c.s.sendAndWait(a.client, bye, a.c.log) })
}

// onBye: the caller hung up.
func (a *uas) onBye() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended {
		return false
	}
	a.ended = true
	return true
}

// byeBeforeAnswer reports a BYE from the caller while its INVITE has no
// final response yet.
func (a *uas) byeBeforeAnswer() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.final {
		return false
	}
	a.ended = true
	return true
}

// hasEnded reports that a BYE was sent to or received from the caller.
func (a *uas) hasEnded() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ended
}

func (a *uas) stop() { a.stopped.close() }

// ackCh is where onAck hands the ACK for our 200 to awaitAck (capacity 1).
func (a *uas) ackCh() chan *sipmsg.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.acked == nil {
		a.acked = make(chan *sipmsg.Request, 1)
	}
	return a.acked
}

// signal is a channel closed once, made only when something waits for it
// or it is closed.
type signal struct {
	mu     sync.Mutex
	ch     chan struct{}
	closed bool
}

// wait is closed once close has been called.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
		if s.closed {
			close(s.ch)
		}
	}
	return s.ch
}

// close closes wait's channel; again, it does nothing.
func (s *signal) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.ch != nil {
		close(s.ch)
	}
}

// debugLog is what sendAndWait logs to: a *zap.Logger or a leg's legLog.
type debugLog interface {
	Debug(msg string, f ...zap.Field)
}

// sendAndWait sends a non-INVITE request and waits for its final response,
// so the transaction is drained (sipgo's response channel is unbuffered).
func (s *Server) sendAndWait(cl *sipgo.Client, req *sipmsg.Request, log debugLog) *sipmsg.Response {
	if cl == nil {
		return nil
	}
	select {
	case <-s.closing:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 64*sipmsg.T1)
	defer cancel()
	tx, err := cl.TransactionRequest(ctx, req)
	if err != nil {
		log.Debug("request failed", zap.String("method", req.Method.String()), zap.Error(err))
		return nil
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res
		case <-tx.Done():
			return nil
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil
		}
	}
}
