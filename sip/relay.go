package sip

import (
	"context"
	"sync/atomic"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// pendingAck is a relayed re-INVITE whose 2xx we sent to its originator:
// the originator's ACK stops our retransmissions and, when the re-INVITE
// carried no offer, brings the answer to pass on in the far side's ACK.
type pendingAck struct {
	cseq    uint32
	acked   chan *sipmsg.Request // buffered: the ACK, once
	taken   atomic.Bool
	forward func(ack *sipmsg.Request)
}

func (p *pendingAck) matches(ack *sipmsg.Request) bool {
	cs := ack.CSeq()
	return cs != nil && cs.SeqNo == p.cseq
}

// ack takes the first ACK; a retransmission of it returns at once rather
// than wait (as a sync.Once would) for the first one's forward to be sent.
func (p *pendingAck) ack(ack *sipmsg.Request) {
	if !p.taken.CompareAndSwap(false, true) {
		return
	}
	p.acked <- ack
	if p.forward != nil {
		p.forward(ack)
	}
}

// ackPending hands an ACK to the re-INVITE waiting for it, if any.
func (d *dialog) ackPending(ack *sipmsg.Request) bool {
	d.mu.Lock()
	p := d.pending
	d.mu.Unlock()
	if p == nil || !p.matches(ack) {
		return false
	}
	p.ack(ack)
	return true
}

func (d *dialog) setPending(p *pendingAck) {
	d.mu.Lock()
	d.pending = p
	d.mu.Unlock()
}

// onAck is an ACK from the member inside its dialog: it can only be for a
// 2xx we relayed to the member's re-INVITE.
func (l *uac) onAck(ack *sipmsg.Request) { l.dialog.ackPending(ack) }

// onInDialog handles re-INVITE, UPDATE and INFO inside a dialog: after
// answer they pass to the other side of the bridge (RFC 3261 §14, RFC 3311,
// RFC 6086), with their body untouched in direct media mode.
func (s *Server) onInDialog(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	r, ok := s.dialogs.match(req)
	if !ok {
		_ = s.respond(req, tx, 481, reasonPhrase(481))
		return
	}
	src := &r.call.a.dialog
	switch {
	case r.leg != nil:
		src = &r.leg.dialog
	case r.pick != nil:
		src = &r.pick.u.dialog
	}
	if !src.checkRemoteCSeq(req) {
		_ = s.respond(req, tx, 500, "Out of Order CSeq", sipmsg.NewHeader("Retry-After", "1"))
		return
	}
	dst := r.call.peer(r)
	if dst == nil {
		// Not bridged: the caller is still ringing, or this is a losing leg.
		switch req.Method {
		case sipmsg.INFO:
			// DTMF while ringing has nobody to go to.
			_ = s.respond(req, tx, 200, "OK")
		case sipmsg.INVITE:
			_ = s.respond(req, tx, 491, reasonPhrase(491))
		default:
			_ = s.respond(req, tx, 500, reasonPhrase(500), sipmsg.NewHeader("Retry-After", "1"))
		}
		return
	}
	r.call.relay(src, dst, req, tx)
}

// relay forwards req from src's peer to dst's peer and its final response
// back. It blocks the sipgo handler until the originator has the final
// response (and, for a re-INVITE 2xx, its ACK or a timeout).
func (c *call) relay(src, dst *dialog, req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	s := c.s
	log := c.log.WithLazy(zap.String("method", req.Method.String()))
	isInvite := req.IsInvite()
	if isInvite {
		c.mu.Lock()
		busy := c.reinviting
		c.reinviting = true
		c.mu.Unlock()
		if busy {
			// Glare: an INVITE is already in progress in this call (RFC
			// 3261 §14.2).
			_ = s.respond(req, tx, 491, reasonPhrase(491))
			return
		}
		defer func() {
			c.mu.Lock()
			c.reinviting = false
			c.mu.Unlock()
		}()
		// The other side may take its time (a phone asking its user):
		// 100 now, so the sender stops retransmitting (RFC 3261 §17.2.1).
		// sipgo's transaction sent one after 200 ms by itself; ours
		// (inviteServerTx) leaves it to us.
		_ = s.respond(req, tx, 100, "Trying")
	}
	body := req.Body()
	if c.m != nil {
		var ok bool
		if body, ok = c.m.inDialog(src.side, dst.side, req); !ok {
			_ = s.respond(req, tx, 488, reasonPhrase(488))
			return
		}
	}
	out := dst.newRequest(req.Method, 0)
	setBody(out, body, contentType(req))
	copyHeaders(req, out, bodyHeaders...)

	ctx, cancel := context.WithTimeout(context.Background(), 64*sipmsg.T1)
	defer cancel()
	otx, err := dst.client.TransactionRequest(ctx, out)
	if err != nil {
		log.Info("relaying in-dialog request failed", zap.Error(err))
		_ = s.respond(req, tx, 503, reasonPhrase(503))
		return
	}
	var final *sipmsg.Response
wait:
	for {
		select {
		case res := <-otx.Responses():
			if res.IsProvisional() {
				continue
			}
			final = res
			break wait
		case <-otx.Done():
			break wait
		case <-ctx.Done():
			break wait
		case <-s.closing:
			otx.Terminate()
			return
		}
	}
	if final == nil {
		otx.Terminate()
		_ = s.respond(req, tx, 408, reasonPhrase(408))
		return
	}
	if isInvite && final.StatusCode >= 300 {
		s.rememberFailed(out, out.Recipient.String())
	}
	res := sipmsg.NewResponseFromRequest(req, final.StatusCode, final.Reason, nil)
	res.AppendHeader(s.hdrServer)
	if final.IsSuccess() && (isInvite || req.Method == sipmsg.UPDATE) {
		res.AppendHeader(src.contact.Clone())
	}
	copyHeaders(final, res, "Content-Disposition", "Retry-After")
	rbody := final.Body()
	if c.m != nil && final.IsSuccess() {
		// An answer we cannot read goes on as it is: the far side has
		// already accepted, refusing now would leave the sides apart.
		if b, ok := c.m.inDialog(dst.side, src.side, final); ok {
			rbody = b
		}
	}
	setBody(res, rbody, contentType(final))

	if !isInvite || !final.IsSuccess() {
		otx.Terminate()
		if err := tx.Respond(res); err != nil {
			log.Debug("relayed response failed", zap.Error(err))
		}
		return
	}

	// A re-INVITE 2xx: the far side needs our ACK, the originator our 2xx
	// until it ACKs.
	ackSeq := out.CSeq().SeqNo
	sendAck := func(body []byte, ct string) {
		ack := dst.newRequest(sipmsg.ACK, ackSeq)
		setBody(ack, body, ct)
		_ = dst.client.WriteRequest(ack)
		otx.OnRetransmission(func(r *sipmsg.Response) {
			if r.IsSuccess() {
				_ = dst.client.WriteRequest(ack)
			}
		})
	}
	p := &pendingAck{cseq: req.CSeq().SeqNo, acked: make(chan *sipmsg.Request, 1)}
	if len(out.Body()) > 0 {
		sendAck(nil, "")
	} else {
		// No offer in the re-INVITE: the far side offered in its 2xx and
		// the answer comes in the originator's ACK.
		p.forward = func(ack *sipmsg.Request) {
			body := ack.Body()
			if c.m != nil {
				if b, ok := c.m.inDialog(src.side, dst.side, ack); ok {
					body = b
				}
			}
			sendAck(body, contentType(ack))
		}
	}
	src.setPending(p)
	defer src.setPending(nil)
	if err := tx.Respond(res); err != nil {
		log.Debug("relayed 2xx failed", zap.Error(err))
		return
	}
	// The call may end first: its ACK may come after the BYE.
	if _, err := s.awaitACK(res, src.transport, p.acked, c.a.stopped.wait()); err != nil {
		log.Info("no ACK for relayed re-INVITE 2xx")
		if p.forward != nil {
			sendAck(nil, "")
		}
	}
}
