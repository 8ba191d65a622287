package sip

import (
	"net/netip"
	"strings"
	"time"
	"weak"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/routing"
)

// routes wires one handler per method into sipgo, each behind the checks
// every request must pass.
func (s *Server) routes() {
	s.srv.OnInvite(s.guard(s.onInvite))
	s.srv.OnAck(s.guard(s.onAck))
	s.srv.OnBye(s.guard(s.onBye))
	s.srv.OnCancel(s.guard(s.onUnmatchedCancel))
	s.srv.OnOptions(s.guard(s.onOptions))
	s.srv.OnRegister(s.guard(s.onRegister))
	s.srv.OnUpdate(s.guard(s.onInDialog))
	s.srv.OnInfo(s.guard(s.onInDialog))
	s.srv.OnNoRoute(s.guard(s.onOther))
}

// guard refuses what sipgo parses but no handler should see: another SIP
// version (505, RFC 3261 §21.5.6, the response itself in SIP/2.0) and
// requests missing the headers every request needs, or whose top Via has
// no host to answer to (400). An ACK is never answered, only dropped.
func (s *Server) guard(h func(*sipmsg.Request, sipmsg.ServerTransaction)) func(*sipmsg.Request, sipmsg.ServerTransaction) {
	return func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		// Handlers may block (an INVITE until its final response, a
		// relayed re-INVITE until its ACK); Close waits for them.
		if !s.bg.add() {
			s.sweepLate()
			return
		}
		defer s.bg.done()
		if s.admit(req, tx) {
			h(req, tx)
		}
	}
}

// admit is guard's checks: whether req goes on to its handler. What it
// refuses is answered here (an ACK only dropped).
func (s *Server) admit(req *sipmsg.Request, tx sipmsg.ServerTransaction) bool {
	select {
	case <-s.closing:
		return false
	default:
	}
	if !req.IsAck() && !s.allowSource(req, tx) {
		return false
	}
	if req.SipVersion != "SIP/2.0" {
		if !req.IsAck() {
			res := sipmsg.NewResponseFromRequest(req, 505, "Version Not Supported", nil)
			res.SipVersion = "SIP/2.0"
			_ = tx.Respond(res)
		}
		return false
	}
	normalizeParams(req)
	if lowerMethod(req) {
		// sipgo upper-cases the request-line method; the CSeq keeps it
		// as sent. Methods are case-sensitive (RFC 3261 §7.1): this is a
		// method we do not know.
		if !req.IsAck() {
			_ = s.respond(req, tx, 501, reasonPhrase(501), s.hdrAllow)
		}
		return false
	}
	if !valid(req) {
		if !req.IsAck() {
			_ = s.respond(req, tx, 400, "Bad Request")
		}
		return false
	}
	return true
}

// serveInvite handles an INVITE that came in over UDP, with our
// transaction (udpReader.takeInvite counted it in bg), on a stepper
// (inviteJob), the read loop or a goroutine of its own (mayWait): guard's
// checks, then the handler. A call's first step runs
// here; it returns once the call has nothing to do (it rings), and
// handlerDone runs at the call's end.
//
// cfg is the config the read loop decided by (mayWait), so that the
// handler cannot take for a pickup, after a reload, what the read loop
// took for a call: the config of an INVITE is the one it came in under.
func (s *Server) serveInvite(cfg *config.Config, req *sipmsg.Request, tx *inviteServerTx) {
	defer s.bg.done()
	if !s.admit(req, tx) {
		tx.handlerDone()
		return
	}
	s.startInvite(cfg, req, tx, tx.handlerDone)
}

// onInvite is sipgo's INVITE handler (TCP, TLS): a new call, or a
// re-INVITE inside a dialog. sipgo requires the handler not to return
// before the final response is sent: when it returns sipgo ends the
// transaction. So it waits here for the call's end.
func (s *Server) onInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	ended := make(chan struct{})
	if s.startInvite(s.Config(), req, tx, func() { close(ended) }) {
		<-ended
	}
}

// startInvite handles an INVITE, and reports whether a call started: it
// then runs by itself (call.begin), and end runs once it is over.
// Otherwise the INVITE is done with, end has run, and it reports false.
func (s *Server) startInvite(cfg *config.Config, req *sipmsg.Request, tx sipmsg.ServerTransaction, end func()) bool {
	c, done := s.acceptInvite(cfg, req, tx)
	if c == nil {
		if done != nil {
			done()
		}
		end()
		return false
	}
	c.onEnd = func() {
		s.bg.done() // startCall counted the call
		done()
		end()
	}
	c.begin()
	return true
}

// acceptInvite does all of an INVITE but run its call: the call to run,
// if one starts, and what ends its setup (setupTable) once it has run.
func (s *Server) acceptInvite(cfg *config.Config, req *sipmsg.Request, tx sipmsg.ServerTransaction) (started *call, setupDone func()) {
	// sipgo drops an INVITE's transaction at its 2xx (Timer L is 0, see
	// linger), so a retransmission of it can get here. It is absorbed, as
	// in RFC 6026's Accepted state: the 2xx goes out again from awaitACK.
	if cid, branch, ok := txKey(req); ok && !s.invites.first(cid, branch) {
		return
	}
	if req.Contact() == nil {
		_ = s.respond(req, tx, 400, "Bad Request")
		return
	}
	if _, ok := req.To().Params.Get("tag"); ok {
		s.onInDialog(req, tx)
		return
	}
	// Our To tag goes into the request before anything answers it, so every
	// response, including the 487 sipgo builds itself after a CANCEL,
	// carries the same tag as our 180 and 200 (RFC 3261 §8.2.6.2).
	tag := sipmsg.GenerateTagN(16)
	req.To().Params.Add("tag", tag)
	// The same call again while it is being set up (a retransmission with
	// the same branch never gets here: its transaction absorbs it).
	done, code := s.setups.begin(req)
	if code != 0 {
		var hdrs []sipmsg.Header
		if code == 500 {
			hdrs = append(hdrs, sipmsg.NewHeader("Retry-After", "1"))
		}
		_ = s.respond(req, tx, code, reasonPhrase(code), hdrs...)
		return
	}
	defer func() {
		if started == nil {
			done()
		}
	}()
	// The user part may carry escapes: sip:%36%30%30@ is sip:600@ (RFC 3261
	// §19.1.4); routing, the CDR and the API see it unescaped.
	req.Recipient.User = unescapeUser(req.Recipient.User)
	_ = s.respond(req, tx, 100, "Trying")

	callID := req.CallID().Value()
	// Built for the calls that need it (rejected, authenticated, pickups):
	// a routed call gets one logger, with its group, in startCall.
	var log *zap.Logger
	callLog := func() *zap.Logger {
		if log == nil {
			log = s.log.WithLazy(zap.String("call_id", callID))
		}
		return log
	}
	user := "" // the authenticated caller, once it has proved it
	reject := func(code int, why string, hdrs ...sipmsg.Header) {
		callLog().Info("call rejected", zap.Int("code", code), zap.String("why", why),
			zap.String("from", req.From().Address.String()), zap.String("user", user), zap.String("source", req.Source()))
		_ = s.respond(req, tx, code, reasonPhrase(code), hdrs...)
		s.writeRejected(req, code, user)
	}

	if s.draining.Load() {
		reject(503, "draining", sipmsg.NewHeader("Retry-After", "30"))
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		reject(483, "Max-Forwards is 0")
		return
	}
	if req.Recipient.Scheme != "sip" && req.Recipient.Scheme != "sips" {
		reject(416, "request-URI is not a SIP URI")
		return
	}
	if ext := unsupported(req); ext != "" {
		reject(420, "requires "+ext, sipmsg.NewHeader("Unsupported", ext))
		return
	}
	if !cfg.ServesDomain(req.Recipient.Host) {
		reject(404, "domain not served")
		return
	}
	if !s.trusted(cfg, req) {
		// Not a trunk: a configured user proving who it is, or nobody.
		// Nothing is rung for a caller that is neither (no open relay).
		var r authResult
		if user, r = s.authenticate(cfg, req, tx, callLog()); r != authOK {
			return
		}
	}
	num := req.Recipient.User
	if isPickup(cfg, num) {
		s.onPickup(cfg, req, tx, tag, user, callLog())
		return
	}
	g := cfg.GroupByNumber(num)
	if g == nil {
		if u := cfg.UserByExtension(num); u != nil {
			g = userGroup(u)
		}
	}
	if g == nil {
		reject(404, "no group or user has this number")
		return
	}
	if c := s.startCall(cfg, g, req, tx, tag, user, s.log.WithLazy(zap.String("call_id", callID), zap.String("group", g.Name))); c != nil {
		return c, done
	}
	return nil, nil
}

// startCall sets up one call for its goroutine to run (nil if it was
// refused here).
func (s *Server) startCall(cfg *config.Config, g *config.Group, req *sipmsg.Request, tx sipmsg.ServerTransaction, tag, user string, log *zap.Logger) *call {
	c := &call{s: s, log: log, cfg: cfg, group: g, start: time.Now()}
	// Ours until begin's first step is done: whatever kicks the call
	// before (a CANCEL that came first, a Post) leaves it to that step.
	c.sched.Store(schedRunning)
	// Close waits for the call to end: it runs on no goroutine that bg
	// counts (see call.begin). onEnd uncounts it.
	if !s.bg.add() {
		_ = s.respond(req, tx, 503, reasonPhrase(503))
		s.writeRejected(req, 503, user)
		return nil
	}
	c.a = newUAS(c, req, tx)
	if s.pool != nil {
		m, code := s.newCallMedia(c, req)
		if code != 0 {
			s.bg.done()
			_ = s.respond(req, tx, code, reasonPhrase(code))
			s.writeRejected(req, code, user)
			return nil
		}
		c.m = m
	}
	party := s.identity(req, user)
	c.party = party
	c.runner = routing.NewRunner(routing.Setup{
		CallID:    c.a.callID,
		Config:    cfg,
		Group:     g,
		Dialled:   req.Recipient.User,
		Caller:    party,
		Directory: s,
		State:     s.state,
		Trace:     c.trace,
		Rand:      s.newRand(),
		Notify:    c.kick,
	}, s.clock, c, s.log) // the runner adds call_id and group itself
	s.dialogs.add(c.a.callID, tag, dialogRef{call: c})
	// The transaction may outlive the call (see linger); held weakly,
	// the call can be collected once it is over.
	wa := weak.Make(c.a)
	if !tx.OnCancel(func(*sipmsg.Request) {
		if a := wa.Value(); a != nil {
			a.onCancel()
		}
	}) {
		// The CANCEL beat us to it.
		c.a.onCancel()
	}
	wc := weak.Make(c)
	if !tx.OnTerminate(func(string, error) {
		if c := wc.Value(); c != nil {
			c.callerEnd()
		}
	}) {
		c.callerEnded.Store(true)
	}
	s.calls.Add(1)
	s.live.calls.Add(1)
	s.active.Store(c, struct{}{})
	return c
}

// allowSource applies limits.requests_per_source to sources that are not
// trunks: over the limit a request gets 503 with Retry-After (at most one
// a second per source; the rest are dropped, so a flood is not answered
// packet for packet), logged once per flood and counted.
func (s *Server) allowSource(req *sipmsg.Request, tx sipmsg.ServerTransaction) bool {
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return true
	}
	ip := src.Addr().Unmap()
	cfg := s.Config()
	if cfg.Limits.RequestsPerSource <= 0 || cfg.Trunk(ip) != nil {
		return true
	}
	switch s.flood.allow(ip) {
	case pass:
		return true
	case drop:
		// nothing
	case startFlood:
		s.log.Warn("source over limits.requests_per_source; refusing its requests", zap.Stringer("source", ip),
			zap.Int("per_second", cfg.Limits.RequestsPerSource))
		fallthrough
	default:
		_ = s.respond(req, tx, 503, reasonPhrase(503), sipmsg.NewHeader("Retry-After", "5"))
	}
	s.metrics.RateLimited()
	return false
}

// identity is who the caller is: a trunk's caller as its From says, an
// authenticated user as the user it proved to be (its From is only what
// the phone claims): that is what members, permissions and the CDR see.
func (s *Server) identity(req *sipmsg.Request, user string) routing.Party {
	p := callerParty(req)
	if user != "" {
		p.User = user
		p.URI = "sip:" + user + "@" + s.Config().Realm
	}
	return p
}

// isPickup reports whether num is a pickup code: pickup.any, or
// pickup.group_prefix followed by something ("" turns either off).
func isPickup(cfg *config.Config, num string) bool {
	if cfg.Pickup.Any != "" && num == cfg.Pickup.Any {
		return true
	}
	// A number a group or a user has is theirs, whatever its first digits.
	p := cfg.Pickup.GroupPrefix
	return p != "" && len(num) > len(p) && strings.HasPrefix(num, p) &&
		cfg.GroupByNumber(num) == nil && cfg.UserByExtension(num) == nil
}

// trusted reports whether the request comes from a trunk.
func (s *Server) trusted(cfg *config.Config, req *sipmsg.Request) bool {
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return false
	}
	return cfg.Trunk(src.Addr()) != nil
}

// unsupported lists the option tags the caller requires that we do not
// support (RFC 3261 §8.2.2.3); we support none.
func unsupported(req *sipmsg.Request) string {
	var tags []string
	for _, h := range req.GetHeaders("Require") {
		for _, t := range strings.Split(h.Value(), ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	}
	return strings.Join(tags, ", ")
}

// writeRejected writes the CDR of a call refused before routing; user is
// the authenticated caller, if any.
func (s *Server) writeRejected(req *sipmsg.Request, code int, user string) {
	now := s.clock.Now()
	s.record(routing.Record{
		CallID:  req.CallID().Value(),
		Caller:  s.identity(req, user).URI,
		Dialled: req.Recipient.User,
		Start:   now,
		End:     now,
		Outcome: routing.OutcomeRejected,
		Code:    code,
		Groups:  []string{},
		Legs:    []routing.LegRecord{},
	})
}

// onAck takes the ACK for a 2xx of ours (ACKs for failures are absorbed by
// their transaction). An ACK is never answered.
func (s *Server) onAck(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	r, ok := s.dialogs.match(req)
	if !ok {
		return
	}
	switch {
	case r.pick != nil:
		r.pick.u.onAck(req)
	case r.leg != nil:
		r.leg.onAck(req)
	default:
		r.call.a.onAck(req)
	}
}

// onBye ends the call from either side.
func (s *Server) onBye(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	r, ok := s.dialogs.match(req)
	if !ok {
		if cid, branch, ok := txKey(req); ok && s.byes.has(cid, branch) {
			// Our 200 was lost and the BYE's transaction is gone.
			s.acceptBye(req, tx)
			return
		}
		_ = s.respond(req, tx, 481, reasonPhrase(481))
		return
	}
	s.acceptBye(req, tx)
	if p := r.pick; p != nil {
		if p.u.onBye() {
			r.call.log.Debug("picker hung up")
			p.end()
		}
		return
	}
	if r.leg == nil {
		a := r.call.a
		if a.byeBeforeAnswer() {
			// Not valid SIP (RFC 3261 §15: CANCEL, not BYE, before the
			// final response), but the caller is gone: its INVITE still
			// gets its final response, and the legs are cancelled.
			r.call.log.Debug("caller sent BYE before answer")
			a.reject(487)
			r.call.post(routing.CallerCancelled{})
			return
		}
		if a.onBye() {
			r.call.log.Debug("caller hung up")
			// A BYE in the dialog shows the caller has our 200: its ACK
			// was lost or is late, and sending the 200 again would
			// only cross the BYE's own 200.
			a.stop()
			r.call.post(routing.CallerEnded{})
		}
		return
	}
	if r.leg.onBye() {
		r.leg.log.Debug("member hung up")
		r.leg.end()
	}
}

// acceptBye answers a BYE with 200 and ends its transaction at once: a
// retransmission finds the BYE in byes instead and gets its 200 again.
// That leaves a hash in a map the GC does not scan where sipgo's Timer J
// would keep the BYE and its response.
func (s *Server) acceptBye(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if cid, branch, ok := txKey(req); ok {
		s.byes.add(cid, branch)
	}
	_ = s.respond(req, tx, 200, "OK")
	tx.Terminate()
}

// onUnmatchedCancel: CANCELs that match an INVITE never get here (sipgo
// answers them and sends 487); what is left matches nothing.
//
// A CANCEL for an INVITE we have answered 2xx finds no transaction either
// (sipgo drops it at the 2xx, see linger), but the INVITE is in invites
// (a CANCEL has its INVITE's branch, RFC 3261 §9.1): it gets 200 and
// changes nothing, as it would have from the transaction (§9.2).
func (s *Server) onUnmatchedCancel(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if cid, branch, ok := txKey(req); ok && s.invites.has(cid, branch) {
		_ = s.respond(req, tx, 200, "OK")
		return
	}
	_ = s.respond(req, tx, 481, reasonPhrase(481))
}

// onOptions answers keepalive pings from trunks and load balancers, in or
// out of a dialog.
func (s *Server) onOptions(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	_ = s.respond(req, tx, 200, "OK",
		s.hdrAllow,
		sipmsg.NewHeader("Accept", "application/sdp"),
	)
}

// onOther answers methods we do not handle.
func (s *Server) onOther(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if req.IsAck() {
		return
	}
	if knownMethods[req.Method] {
		_ = s.respond(req, tx, 405, reasonPhrase(405), s.hdrAllow)
		return
	}
	_ = s.respond(req, tx, 501, reasonPhrase(501), s.hdrAllow)
}
