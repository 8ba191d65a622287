package sip

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	sipgo "github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ringroute/ringroute/media"
	"github.com/ringroute/ringroute/routing"
)

// cancelGrace is how long a leg we want to cancel may take to send its
// first provisional response. RFC 3261 §9.1 forbids a CANCEL before one;
// a member silent that long is treated as unreachable and its transaction
// dropped locally (a 2xx that still comes is ACKed and BYEd as a stray).
const cancelGrace = 4 * time.Second

// dialTimeout bounds connecting to a TCP member; sipgo's default is a minute.
const dialTimeout = 5 * time.Second

// uac is one leg: an INVITE client transaction toward a member and, once
// answered, the dialog with it.
type uac struct {
	dialog
	c   *call
	id  routing.LegID
	t   routing.Target
	log legLog

	// The INVITE: as bytes over UDP to an address, else as a Request
	// (see wireInvite).
	wire   *wireInvite
	inv    *sipmsg.Request
	branch string // the INVITE's, by which members finds the leg
	status legState

	// The call's goroutine only: the INVITE client transaction (see
	// invitetx.go), which the call's steps run (call.advance).
	resendAt  legTime
	resendGap time.Duration // Timer A
	timeoutAt legTime       // Timer B
	giveUpAt  legTime       // see giveUpIn
	dialErr   error
	// Our CANCEL's client transaction (RFC 3261 §17.1.2), also ours:
	// over UDP it is sent again until a final response (Timer E); Timer F
	// is giveUpAt, which ends the INVITE's transaction with it.
	cancelAt  legTime
	cancelGap time.Duration
	waiting   bool // the call's steps run the leg's timers
	ringing   bool // counted in live.ringing

	// The flags together, after the mutex: spread out between pointers,
	// their padding took the struct past the 512-byte size class.
	mu              sync.Mutex
	out             bool // the INVITE went out
	provisional     bool
	cancelSent      bool
	answered        bool
	delayed         bool // the INVITE carried no offer: the ACK carries the answer
	ending          bool // BYE sent or received
	cancelElsewhere bool // the CANCEL says the call was answered elsewhere
	terminal        bool // the leg's last event was posted
	pendingCancel   *routing.CancelLeg
	lastSend        chan struct{}    // closed when the leg's last inOrder send is done
	res             *sipmsg.Response // the 2xx that answered
	ack             *sipmsg.Request  // our ACK for it, once sent
}

func (c *call) newLeg(a routing.StartLeg) *uac {
	l := &uac{c: c, id: a.Leg, t: a.Target}
	l.log = legLog{l}
	return l
}

// legLog logs for a leg with its number and member. The fields are added
// when an entry is written, not kept in a logger of the leg's own: most
// legs log nothing, and a zap child logger costs each of them an
// allocation or three.
type legLog struct{ l *uac }

func (g legLog) Debug(msg string, f ...zap.Field) { g.write(zap.DebugLevel, msg, f) }
func (g legLog) Info(msg string, f ...zap.Field)  { g.write(zap.InfoLevel, msg, f) }
func (g legLog) Warn(msg string, f ...zap.Field)  { g.write(zap.WarnLevel, msg, f) }

func (g legLog) write(lvl zapcore.Level, msg string, f []zap.Field) {
	if ce := g.l.c.log.Check(lvl, msg); ce != nil {
		ce.Write(append([]zap.Field{zap.Int("leg", int(g.l.id)), zap.String("member", g.l.t.Member)}, f...)...)
	}
}

// build makes the INVITE for this leg: a new dialog with its own Call-ID
// and tags, the caller's identity in From (display name after caller_id),
// and the caller's offer. Over UDP to an address it is kept as its bytes
// (l.wire, see wireInvite); otherwise as a Request (l.inv) for sipgo's
// transport, which connects or resolves first. Non-zero: the status the
// leg fails with.
func (l *uac) build() int {
	s := l.c.s
	ruri := new(sipmsg.Uri)
	if err := sipmsg.ParseUri(l.t.URI, ruri); err != nil {
		l.log.Warn("bad member URI", zap.String("uri", l.t.URI), zap.Error(err))
		return 400
	}
	a := l.c.a.req
	// Pin what sipgo would work out from the request-URI: unset, it
	// recomputes both (a Route lookup, a Sprintf) on every write and
	// retransmission of the INVITE and of its CANCEL.
	tr := strings.ToUpper(l.t.Transport)
	if tr == "" {
		tr = uriTransport(ruri)
	}
	dest := l.t.Destination
	if dest == "" {
		dest = uriDestination(ruri, tr)
	}
	client, ok := s.client(tr)
	if !ok {
		l.log.Warn("no listener for member transport", zap.String("transport", tr))
		return 503
	}
	p := inviteParts{ruri: ruri, tag: sipmsg.GenerateTagN(16), callID: newCallID(), maxForwards: 70}
	p.display, p.user = l.fromParty()
	if h := a.MaxForwards(); h != nil && h.Val() > 0 {
		// RFC 7332 §3.2.1: a B2BUA decrements Max-Forwards too, or two of
		// them pointing at each other loop forever.
		p.maxForwards = int(h.Val()) - 1
	}
	p.body, p.contentType = a.Body(), contentType(a)
	if m := l.c.m; m != nil {
		p.body, p.contentType = m.memberOffer(), "application/sdp"
	}
	p.disposition = a.GetHeaders("Content-Disposition")

	l.callID = p.callID
	l.cseq = inviteCSeq
	l.client = client
	l.transport = tr
	l.destination = l.t.Destination
	l.contact = s.contact(tr)
	l.side = media.Member
	l.delayed = len(p.body) == 0
	if to, err := netip.ParseAddrPort(dest); err == nil && tr == "UDP" && s.udpConn != nil {
		p.branch = sipmsg.GenerateBranchN(16)
		l.wire = s.buildWire(&p, to)
		l.branch = p.branch
		return 0
	}

	inv := sipmsg.NewRequest(sipmsg.INVITE, sipmsg.Uri{})
	inv.Recipient = *ruri
	from := sipmsg.FromHeader{
		DisplayName: p.display,
		Address:     sipmsg.Uri{Scheme: "sip", User: p.user, Host: s.host},
		Params:      sipmsg.NewParams(),
	}
	from.Params.Add("tag", p.tag)
	to := sipmsg.ToHeader{Address: sipmsg.Uri{Scheme: ruri.Scheme, User: ruri.User, Host: ruri.Host, Port: ruri.Port}}
	cid := sipmsg.CallIDHeader(p.callID)
	inv.AppendHeader(&from)
	inv.AppendHeader(&to)
	inv.AppendHeader(&cid)
	inv.AppendHeader(&sipmsg.CSeqHeader{SeqNo: inviteCSeq, MethodName: sipmsg.INVITE})
	mf := sipmsg.MaxForwardsHeader(p.maxForwards)
	inv.AppendHeader(&mf)
	inv.SetTransport(tr)
	inv.SetDestination(dest)
	// Shared, not cloned: nothing writes a request's Contact once built
	// (we do not use sipgo's dialog clients, which would).
	inv.AppendHeader(l.contact)
	inv.AppendHeader(s.hdrAllow)
	inv.AppendHeader(s.hdrUserAgent)
	setBody(inv, p.body, p.contentType)
	for _, h := range p.disposition {
		inv.AppendHeader(sipmsg.NewHeader(h.Name(), h.Value()))
	}
	// Our Via, so that the leg is in members under its branch before any
	// response can come; then what sipgo's client adds to every request
	// (the local address to send from, Content-Length).
	if err := sipgo.ClientRequestAddVia(client, inv); err == nil {
		err = sipgo.ClientRequestBuild(client, inv)
	}
	l.inv = inv
	l.branch, _ = inv.Via().Params.Get("branch")
	l.local = &from
	l.remote = &to
	return 0
}

// inviteCSeq is the CSeq number of every leg's INVITE: each is the first
// request of a dialog of its own.
const inviteCSeq = 1

// fromParty is the caller as members see it: an authenticated user by
// its name, not by whatever its phone put in From; the display name after
// caller_id.
func (l *uac) fromParty() (display, user string) {
	user = l.c.party.User
	if user == "" {
		user = l.c.a.req.From().Address.User
	}
	if user == "" {
		user = "anonymous"
	}
	return quoted(l.t.Display), user
}

// localParty is our From for a leg whose INVITE went as bytes, made when
// the dialog needs it: a ringing leg carries none.
func (l *uac) localParty() *sipmsg.FromHeader {
	display, user := l.fromParty()
	from := &sipmsg.FromHeader{
		DisplayName: display,
		Address:     sipmsg.Uri{Scheme: "sip", User: user, Host: l.c.s.host},
		Params:      sipmsg.NewParams(),
	}
	from.Params.Add("tag", string(l.wire.at(l.wire.tag)))
	return from
}

// requestURI is the INVITE's Request-URI, the dialog's remote target
// until a Contact says otherwise.
func (l *uac) requestURI() *sipmsg.Uri {
	if l.inv != nil {
		return l.inv.Recipient.Clone()
	}
	u := new(sipmsg.Uri)
	if err := sipmsg.ParseUri(l.t.URI, u); err != nil {
		return nil // build parsed it
	}
	return u
}

// sentTo is where the INVITE went, "" when sipgo worked it out.
func (l *uac) sentTo() string {
	if l.wire != nil {
		return l.wire.to.String()
	}
	if l.inv != nil {
		return l.inv.Destination()
	}
	return ""
}

// start sends the INVITE. It runs on the call's goroutine (Execute), whose
// steps then run the leg's transaction (call.advance); a leg spends no
// goroutine of its own while it rings. Opening a connection or resolving
// a name may block, so for those the INVITE goes out from a goroutine
// that reports back through call.dialDone.
func (l *uac) start() {
	if l.c.aborted {
		// The server is closing: no new member is rung.
		l.fail(503, nil)
		return
	}
	if code := l.build(); code != 0 {
		l.fail(code, nil)
		return
	}
	inv := l.inv
	l.c.s.members.add(l.branch, l)
	l.status.set("calling", 0)
	l.c.s.live.ringing.Add(1)
	l.ringing = true
	if l.wire != nil {
		l.sent(l.wire.send(l.c.s))
		return
	}
	if writesAtOnce(inv) {
		l.sent(l.c.s.write(inv))
		return
	}
	l.c.dialing++
	if !l.c.s.spawn(func() {
		l.dialErr = l.c.s.dial(inv) // dialDone's lock publishes it
		l.c.dialDone(l)
	}) {
		l.dialErr = errClosing
		l.c.dialDone(l)
	}
}

// sent: the INVITE went out, or why not. From here the call's goroutine
// runs the leg's timers. A leg whose INVITE went out from a goroutine of
// its own may have had its answer or failure already.
func (l *uac) sent(err error) {
	l.mu.Lock()
	over := l.answered || l.terminal
	l.out = err == nil
	pc := l.pendingCancel
	l.mu.Unlock()
	switch {
	case over:
		return
	case err != nil:
		l.log.Info("INVITE to member failed", zap.Error(err))
		l.leave()
		l.fail(503, nil)
		return
	}
	l.waiting = true
	now := time.Now()
	l.arm(now)
	if pc != nil {
		l.giveUpIn(cancelGrace)
	}
}

// giveUpIn (re)arms the deadline for a leg we cancelled that will not end
// by itself: silent members (no provisional, so no CANCEL may be sent)
// after cancelGrace, and members that never answer the CANCEL with a final
// response after 64*T1 (RFC 3261 §9.1): an INVITE transaction has no
// timer left once it is Proceeding.
func (l *uac) giveUpIn(d time.Duration) { l.giveUpAt = l.after(time.Now(), d) }

// leave ends the leg's transaction: it no longer rings.
func (l *uac) leave() {
	l.waiting = false
	l.resendAt, l.timeoutAt, l.giveUpAt, l.cancelAt = 0, 0, 0, 0
	if l.ringing {
		l.ringing = false
		l.c.s.live.ringing.Add(-1)
	}
}

// onResponse takes one response of the INVITE's transaction (to: see
// ackFailure).
func (l *uac) onResponse(res *sipmsg.Response, to []byte) {
	switch {
	case res.StatusCode < 200:
		l.mu.Lock()
		first := !l.provisional
		l.provisional = true
		pc := l.pendingCancel
		l.mu.Unlock()
		l.proceeding()
		if first && pc != nil {
			l.sendCancel(*pc)
			l.giveUpIn(64 * sipmsg.T1)
		}
		if res.StatusCode > 100 {
			l.status.set("ringing", res.StatusCode)
			if l.c.m != nil {
				l.c.m.onProvisional(l, res)
			}
			l.c.post(routing.LegRinging{Leg: l.id, Code: res.StatusCode})
		}
	case res.StatusCode < 300:
		l.leave()
		l.answer(res)
	default:
		// The transaction ends here (Timer D is 0): a retransmitted
		// failure is ACKed again from what failed keeps.
		l.ackFailure(res, to)
		l.rememberFailed()
		l.leave()
		l.fail(res.StatusCode, redirectTargets(res))
	}
}

// abort drops the leg's transaction when the server closes.
func (l *uac) abort() {
	l.leave()
	l.fail(503, nil)
}

// live reports whether the leg's INVITE awaits its final response: its
// responses go to onResponse, later ones to onStrayResponse.
func (l *uac) live() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.answered && !l.terminal
}

// cancel asks the leg to stop ringing. Before any provisional response the
// CANCEL waits for one (RFC 3261 §9.1).
func (l *uac) cancel(a routing.CancelLeg) {
	l.mu.Lock()
	if l.answered || l.terminal || l.pendingCancel != nil {
		l.mu.Unlock()
		return
	}
	l.pendingCancel = &a
	prov := l.provisional
	ready := prov && l.out
	l.mu.Unlock()
	if ready {
		l.sendCancel(a)
	}
	if l.waiting {
		if prov {
			l.giveUpIn(64 * sipmsg.T1)
		} else {
			l.giveUpIn(cancelGrace)
		}
	}
}

// sendCancel sends CANCEL for our INVITE (RFC 3261 §9.1): same
// Request-URI, top Via, From, To, Call-ID, CSeq number and Route.
func (l *uac) sendCancel(a routing.CancelLeg) {
	l.mu.Lock()
	if l.cancelSent || l.answered {
		l.mu.Unlock()
		return
	}
	l.cancelSent = true
	l.mu.Unlock()
	l.log.Debug("cancelling leg", zap.Stringer("reason", a.Reason))
	l.cancelElsewhere = a.Elsewhere
	if l.wire != nil {
		l.writeWireCancel()
		l.cancelGap = sipmsg.T1
		l.cancelAt = l.after(time.Now(), l.cancelGap)
		return
	}
	req := l.cancelRequest()
	if req == nil {
		return
	}
	if writesAtOnce(req) {
		// UDP from an ephemeral socket (no UDP listener).
		l.writeCancel(req, true)
		l.cancelGap = sipmsg.T1
		l.cancelAt = l.after(time.Now(), l.cancelGap)
		return
	}
	// A connection-oriented member: the INVITE's connection, after
	// whatever this leg still has queued on it; no retransmission.
	l.inOrder(func() { l.writeCancel(req, false) })
}

// cancelRequest is the CANCEL for an INVITE sent as a Request.
func (l *uac) cancelRequest() *sipmsg.Request {
	inv := l.inv
	req := asRequest(appendCancel(nil, identOf(inv), inv.CSeq().SeqNo, l.cancelElsewhere))
	if req == nil {
		return nil
	}
	req.SetTransport(inv.Transport())
	if d := inv.Destination(); d != "" {
		req.SetDestination(d)
	}
	req.Laddr = inv.Laddr
	return req
}

// writeCancel sends (or resends) the leg's CANCEL: at once over UDP to a
// known address, else through a connection. None goes out once the server
// is closing: it would open a socket that nothing closes.
func (l *uac) writeCancel(req *sipmsg.Request, atOnce bool) {
	select {
	case <-l.c.s.closing:
		return
	default:
	}
	var err error
	if atOnce {
		err = l.c.s.write(req)
	} else {
		err = l.c.s.dial(req)
	}
	if err != nil {
		l.log.Debug("CANCEL to member failed", zap.Error(err))
	}
}

// onCancelResponse takes a response to our CANCEL: a final one ends its
// transaction. The INVITE's own final response (487) ends the leg.
func (l *uac) onCancelResponse(res *sipmsg.Response) {
	if res.StatusCode >= 200 {
		l.cancelAt = 0
	}
}

// answer takes a 2xx: the dialog is established; it is ACKed at once when
// the INVITE carried the offer.
func (l *uac) answer(res *sipmsg.Response) {
	l.mu.Lock()
	l.answered = true
	l.res = res
	to := res.To()
	l.remote = &sipmsg.ToHeader{DisplayName: to.DisplayName, Address: *to.Address.Clone(), Params: to.Params.Clone()}
	if l.local == nil {
		l.local = l.localParty()
	}
	l.remoteTarget = nil
	if ct := res.Contact(); ct != nil {
		l.remoteTarget = ct.Address.Clone()
	}
	if l.remoteTarget == nil {
		l.remoteTarget = l.requestURI()
	}
	rr := res.GetHeaders("Record-Route")
	l.routeSet = nil
	for i := len(rr) - 1; i >= 0; i-- {
		if h, ok := rr[i].(*sipmsg.RecordRouteHeader); ok {
			l.routeSet = append(l.routeSet, *h.Address.Clone())
		}
	}
	delayed := l.delayed
	l.mu.Unlock()
	if l.c.m != nil && !usableSDP(res) {
		// The relay cannot connect media it cannot read: end this answer
		// (ACK, then BYE, as every unwanted 2xx) and let the hunt go on
		// with the others, as for any member that failed.
		l.log.Info("member answered with SDP the relay cannot read; hanging up on it")
		l.ackAndBye(nil)
		l.fail(488, nil)
		return
	}
	l.c.s.dialogs.add(l.callID, l.localTag(), dialogRef{call: l.c, leg: l})
	if !delayed {
		l.sendAck(nil, "")
	}
	l.status.set("answered", res.StatusCode)
	l.c.post(routing.LegAnswered{Leg: l.id})
}

// usableSDP reports whether a 2xx carries SDP the relay can read.
func usableSDP(res *sipmsg.Response) bool {
	if !isSDP(res) {
		return false
	}
	_, err := media.ParseSDP(res.Body())
	return err == nil
}

// answerBody is the member's answer (or, for a delayed offer, its offer)
// to pass to the caller.
func (l *uac) answerBody() ([]byte, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.res == nil {
		return nil, ""
	}
	return l.res.Body(), contentType(l.res)
}

// sendAck sends our ACK for the 2xx, once.
func (l *uac) sendAck(body []byte, ct string) {
	ack := l.newAck(body, ct)
	if ack == nil {
		return
	}
	// sendAck runs on the call's goroutine: a connection to open or a
	// name to resolve (a Contact or Record-Route elsewhere) must not stall
	// the call.
	if writesAtOnce(ack) {
		l.writeAck(ack)
		return
	}
	l.inOrder(func() { l.writeAck(ack) })
}

// inOrder runs f on a goroutine of its own after every earlier inOrder of
// the leg has finished, so that an ACK sent in the background still goes
// out before the BYE that follows it.
func (l *uac) inOrder(f func()) {
	done := make(chan struct{})
	l.mu.Lock()
	prev := l.lastSend
	l.lastSend = done
	l.mu.Unlock()
	l.c.s.spawn(func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		f()
	})
}

// newAck builds and records our ACK for the 2xx; nil when it exists.
func (l *uac) newAck(body []byte, ct string) *sipmsg.Request {
	l.mu.Lock()
	if l.ack != nil {
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	ack := l.newRequest(sipmsg.ACK, inviteCSeq)
	setBody(ack, body, ct)
	l.mu.Lock()
	l.ack = ack
	l.mu.Unlock()
	return ack
}

func (l *uac) writeAck(ack *sipmsg.Request) {
	if err := l.client.WriteRequest(ack); err != nil {
		l.log.Info("ACK to member failed", zap.Error(err))
	}
}

// ackAndBye ends the leg's answered dialog from a goroutine of its own,
// the ACK (if not sent yet) before the BYE; done, if set, runs after.
func (l *uac) ackAndBye(done func()) {
	ack := l.newAck(nil, "")
	bye := l.newRequest(sipmsg.BYE, 0)
	l.inOrder(func() {
		if ack != nil {
			l.writeAck(ack)
		}
		l.c.s.sendAndWait(l.client, bye, l.log)
		if done != nil {
			done()
		}
	})
}

// ackAnswer is called when the caller ACKed our 200: for a delayed offer
// its ACK carries the answer the member is waiting for.
func (l *uac) ackAnswer(body []byte, ct string) {
	l.mu.Lock()
	need := l.delayed && l.ack == nil && !l.ending
	l.mu.Unlock()
	if need {
		l.sendAck(body, ct)
	}
}

// hangUp ends an answered leg with BYE.
func (l *uac) hangUp() {
	l.mu.Lock()
	if !l.answered || l.ending {
		l.mu.Unlock()
		return
	}
	l.ending = true
	l.mu.Unlock()
	l.ackAndBye(l.end)
}

// onBye: the member hung up. It reports whether this ends the leg.
func (l *uac) onBye() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ending {
		return false
	}
	l.ending = true
	return true
}

// end reports an answered leg over.
func (l *uac) end() {
	l.mu.Lock()
	if l.terminal {
		l.mu.Unlock()
		return
	}
	l.terminal = true
	l.mu.Unlock()
	l.c.s.dialogs.remove(l.callID, l.localTag())
	l.c.s.members.remove(l)
	l.c.s.recent.add(l.callID)
	l.c.s.live.legs.Add(-1)
	_, code := l.status.get()
	l.status.set("ended", code)
	l.c.post(routing.LegEnded{Leg: l.id})
}

// fail reports a leg that ended without answering.
func (l *uac) fail(code int, contacts []string) {
	l.mu.Lock()
	if l.terminal {
		l.mu.Unlock()
		return
	}
	l.terminal = true
	l.mu.Unlock()
	if l.callID != "" {
		l.c.s.recent.add(l.callID)
	}
	l.c.s.members.remove(l)
	// Nothing reads a failed leg's INVITE again (a 2xx for it is ACKed
	// and BYEd from the response alone), and the leg stays in legOrder
	// for the status API as long as the call lasts.
	l.inv, l.wire = nil, nil
	l.c.s.live.legs.Add(-1)
	l.status.set("ended", code)
	l.c.post(routing.LegFailed{Leg: l.id, Code: code, Contacts: contacts})
}

// redirectTargets are a 3xx's Contacts, highest q first.
func redirectTargets(res *sipmsg.Response) []string {
	if res.StatusCode < 300 || res.StatusCode >= 400 {
		return nil
	}
	type target struct {
		uri string
		q   float64
	}
	var ts []target
	for _, h := range res.GetHeaders("Contact") {
		ct, ok := h.(*sipmsg.ContactHeader)
		if !ok || ct.Address.Wildcard {
			continue
		}
		q := 1.0
		if v, ok := ct.Params.Get("q"); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		ts = append(ts, target{ct.Address.String(), q})
	}
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].q > ts[j].q })
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.uri
	}
	return out
}

// ackAndBye ends a dialog a stray 2xx set up with us (RFC 3261
// §13.2.2.4: every 2xx is ACKed, and one we do not want is then BYEd). It
// is built from the response alone.
func (s *Server) ackAndBye(client *sipgo.Client, res *sipmsg.Response, ruri *sipmsg.Uri, dest string) {
	from, to, cid, cseq := res.From(), res.To(), res.CallID(), res.CSeq()
	if from == nil || to == nil || cid == nil || cseq == nil {
		return
	}
	d := &dialog{
		callID:    cid.Value(),
		local:     &sipmsg.FromHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: from.Params.Clone()},
		remote:    &sipmsg.ToHeader{DisplayName: to.DisplayName, Address: *to.Address.Clone(), Params: to.Params.Clone()},
		cseq:      cseq.SeqNo,
		client:    client,
		transport: res.Transport(),
	}
	if ct := res.Contact(); ct != nil {
		d.remoteTarget = ct.Address.Clone()
	} else if ruri != nil {
		d.remoteTarget = ruri
	} else {
		return
	}
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		if h, ok := rr[i].(*sipmsg.RecordRouteHeader); ok {
			d.routeSet = append(d.routeSet, *h.Address.Clone())
		}
	}
	d.destination = dest
	d.contact = s.contact(d.transport)
	ack := d.newRequest(sipmsg.ACK, cseq.SeqNo)
	ack.SetBody(nil)
	if err := client.WriteRequest(ack); err != nil {
		s.log.Debug("ACK for stray 2xx failed", zap.String("call_id", d.callID), zap.Error(err))
	}
	bye := d.newRequest(sipmsg.BYE, 0)
	s.spawn(func() { s.sendAndWait(client, bye, s.log.WithLazy(zap.String("call_id", d.callID))) })
}

// onStrayResponse gets responses that match no transaction: none of
// sipgo's, and no member leg awaiting its INVITE's final response. A
// failure of one of our INVITEs is ACKed again (reAckFailure). For a 2xx
// to one of our INVITEs this is where RFC 6026 puts the TU: every 2xx
// after a leg's first comes here, from its call's goroutine (answer has
// put the leg in the dialog table by then) or, once the leg is over,
// straight from sipgo. A retransmission of the 2xx that won a live leg is
// ACKed again (the member did not get our ACK); any other 2xx of a live
// leg (a forking proxy in front of the member, a second phone answering)
// or of a leg that ended recently is ACKed and BYEd.
func (s *Server) onStrayResponse(res *sipmsg.Response) {
	select {
	case <-s.closing:
		// An ACK or BYE written through sipgo now would open a socket
		// that nothing closes (see sweepLate).
		return
	default:
	}
	cseq, cid, from, to := res.CSeq(), res.CallID(), res.From(), res.To()
	if cseq == nil || cid == nil || from == nil || to == nil || cseq.MethodName != sipmsg.INVITE {
		return
	}
	if res.StatusCode >= 300 {
		s.reAckFailure(res)
		return
	}
	if !res.IsSuccess() {
		return
	}
	client, ok := s.client(res.Transport())
	if !ok {
		return
	}
	ours, _ := from.Params.Get("tag")
	theirs, _ := to.Params.Get("tag")
	s.dialogs.mu.Lock()
	r := s.dialogs.m[dialogKey(cid.Value(), ours)]
	s.dialogs.mu.Unlock()
	if l := r.leg; l != nil {
		l.mu.Lock()
		won, _ := l.remote.Params.Get("tag")
		ack := l.ack
		l.mu.Unlock()
		if won == theirs {
			// For a delayed offer the ACK waits for the caller's.
			if ack != nil {
				_ = l.client.WriteRequest(ack)
			}
			return
		}
		s.ackAndBye(client, res, l.requestURI(), l.sentTo())
		return
	}
	if !s.recent.has(cid.Value()) {
		return
	}
	s.log.Debug("ACK and BYE for a late 2xx", zap.String("call_id", cid.Value()))
	s.ackAndBye(client, res, nil, "")
}

// ackTarget is what an ACK for a failure needs of its INVITE besides the
// response (RFC 3261 §17.1.1.3): the Request-URI and the address it went
// to. No Route: ringroute's INVITEs carry none.
type ackTarget struct {
	uri string
	to  netip.AddrPort
}

// rememberFailed keeps, for linger, how to ACK a retransmission of the
// failure the leg's INVITE just got.
func (l *uac) rememberFailed() {
	if w := l.wire; w != nil {
		l.c.s.failed.put(&ackTarget{uri: l.t.URI, to: w.to}, l.branch)
		return
	}
	l.c.s.rememberFailed(l.inv, l.t.URI)
}

// rememberFailed keeps, for linger, how to ACK a retransmission of the
// failure inv just got, by inv's branch. Only for UDP to an address: over
// TCP and TLS nothing is retransmitted.
func (s *Server) rememberFailed(inv *sipmsg.Request, uri string) {
	if inv == nil || sipmsg.IsReliable(inv.Transport()) || s.udpConn == nil {
		return
	}
	to, err := netip.ParseAddrPort(inv.Destination())
	if err != nil {
		return
	}
	if branch, ok := inv.Via().Params.Get("branch"); ok {
		s.failed.put(&ackTarget{uri: uri, to: to}, branch)
	}
}

// reAckFailure ACKs a failure to one of our INVITEs that its member sent
// again after sipgo dropped the transaction: our ACK was lost, and without
// another one the member would resend it for 64*T1. The ACK leaves from
// the UDP listener, as the INVITE did; straight from its socket, since a
// write through sipgo while the server closes would open a new one.
func (s *Server) reAckFailure(res *sipmsg.Response) {
	via := res.Via()
	if via == nil {
		return
	}
	branch, _ := via.Params.Get("branch")
	t, ok := s.failed.get(branch)
	if !ok || branch == "" {
		return
	}
	var ruri sipmsg.Uri
	if err := sipmsg.ParseUri(t.uri, &ruri); err != nil {
		return
	}
	ack, ok := appendFailureAck(nil, []byte(ruri.String()), []byte(via.Value()), res)
	if !ok {
		return
	}
	if _, err := s.udpConn.WriteToUDPAddrPort(ack, t.to); err != nil {
		s.log.Debug("ACK for a retransmitted failure failed", zap.String("call_id", res.CallID().Value()), zap.Error(err))
	}
}

// uriTransport is the transport sipgo's Request.Transport works out for a
// request to ruri that has no Via yet and no Route (a leg's INVITE, as
// built), without its cost: sipgo looks the Route up on each call, and a
// request without one costs an allocation each time (two calls a leg).
func uriTransport(ruri *sipmsg.Uri) string {
	tp := sipmsg.DefaultProtocol
	if ruri.UriParams != nil {
		if v, ok := ruri.UriParams.Get("transport"); ok && v != "" {
			tp = strings.ToUpper(v)
		}
	}
	if ruri.IsEncrypted() {
		switch tp {
		case "TCP":
			tp = "TLS"
		case "WS":
			tp = "WSS"
		}
	}
	return tp
}

// uriDestination is sipgo's Request.Destination for such a request sent
// over tp, likewise.
func uriDestination(ruri *sipmsg.Uri, tp string) string {
	port := ruri.Port
	if port <= 0 {
		port = sipmsg.DefaultPort(tp)
	}
	return ruri.Host + ":" + strconv.Itoa(port)
}

// newCallID is a fresh Call-ID for a leg: random, and recognisably ours in
// traces.
func newCallID() string { return "rr-" + sipmsg.GenerateTagN(22) }

// writesAtOnce reports whether sending req cannot block: UDP to an IP
// address, no connection to open and no name to resolve.
func writesAtOnce(req *sipmsg.Request) bool {
	if sipmsg.IsReliable(req.Transport()) {
		return false
	}
	_, err := netip.ParseAddrPort(req.Destination())
	return err == nil
}
