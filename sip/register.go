package sip

import (
	"net/netip"
	"strconv"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/registrar"
	"github.com/ringroute/ringroute/routing"
)

// Contacts implements routing.Directory over the registrar: a user member
// rings every live binding, at the address its REGISTER came from (the
// Contact's own host may be private behind NAT, and a TCP phone is
// reached over the connection it opened).
func (s *Server) Contacts(user string) []routing.Contact {
	bs := s.reg.Contacts(user)
	out := make([]routing.Contact, 0, len(bs))
	for _, b := range bs {
		out = append(out, routing.Contact{URI: b.URI, Destination: b.Destination(), Transport: b.Transport})
	}
	return out
}

var _ routing.Directory = (*Server)(nil)

// authResult is the outcome of authenticating a request.
type authResult int

const (
	authOK       authResult = iota // user is set
	authAnswered                   // a 401/407/403 went out; stop
)

// authenticate runs digest authentication (RFC 8760, through package
// registrar) on a request from a source that is not a trunk. REGISTER is
// challenged with 401/WWW-Authenticate, everything else with
// 407/Proxy-Authenticate. A source that failed too often gets 403 without
// its credentials being looked at.
func (s *Server) authenticate(cfg *config.Config, req *sipmsg.Request, tx sipmsg.ServerTransaction, log *zap.Logger) (string, authResult) {
	src, _ := netip.ParseAddrPort(req.Source())
	ip := src.Addr()
	if !s.limiter.Allow(ip) {
		s.counters.authBlocked.Add(1)
		s.metrics.AuthFailed(true)
		_ = s.respond(req, tx, 403, "Forbidden")
		return "", authAnswered
	}
	reqHdr, chalHdr, code := "Proxy-Authorization", "Proxy-Authenticate", 407
	hint := req.From().Address.User
	if req.Method == sipmsg.REGISTER {
		reqHdr, chalHdr, code = "Authorization", "WWW-Authenticate", 401
		hint = req.To().Address.User
	}
	var creds []string
	for _, h := range req.GetHeaders(reqHdr) {
		creds = append(creds, h.Value())
	}
	lookup := registrar.UserLookup(cfg.Users)
	user, res, err := s.auth.Verify(cfg.Realm, string(req.Method), creds, lookup)
	switch res {
	case registrar.AuthOK:
		return user, authOK
	case registrar.AuthMissing, registrar.AuthStale:
		stale := res == registrar.AuthStale
		if stale {
			log.Debug("stale nonce; challenging again", zap.Error(err))
			hint = user
		}
		var hdrs []sipmsg.Header
		for _, c := range s.auth.Challenge(cfg.Realm, stale, hint, lookup, cfg.DigestAlgorithms...) {
			hdrs = append(hdrs, sipmsg.NewHeader(chalHdr, c))
		}
		_ = s.respond(req, tx, code, reasonPhrase(code), hdrs...)
		return "", authAnswered
	}
	s.counters.authFailures.Add(1)
	s.metrics.AuthFailed(false)
	log.Info("authentication failed", zap.String("source", req.Source()), zap.String("user", user), zap.Error(err))
	if s.limiter.Fail(ip) {
		log.Warn("too many authentication failures; source blocked for a while", zap.Stringer("source", ip))
	}
	_ = s.respond(req, tx, 403, "Forbidden")
	if req.IsInvite() {
		// A refused call attempt is a CDR line (fraud shows up there); a
		// challenge is not, nor is a source already blocked (a flood).
		s.writeRejected(req, 403, "")
	}
	return "", authAnswered
}

// onRegister is the registrar (RFC 3261 §10.3): several contacts per user,
// Expires bounded by registrar.min_expires (423) and max_expires, `*` with
// Expires 0 removes every binding.
func (s *Server) onRegister(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	cfg := s.Config()
	log := s.log.WithLazy(zap.String("call_id", req.CallID().Value()))
	if !cfg.ServesDomain(req.Recipient.Host) {
		_ = s.respond(req, tx, 404, "Not Found")
		return
	}
	user, r := s.authenticate(cfg, req, tx, log)
	if r != authOK {
		return
	}
	if req.To().Address.User != user {
		// Or alice could register her phone as bob's.
		log.Info("REGISTER for another user refused", zap.String("user", user), zap.String("to", req.To().Address.User))
		_ = s.respond(req, tx, 403, "Forbidden")
		return
	}
	reg, ok := registerOf(req)
	if !ok {
		_ = s.respond(req, tx, 400, "Bad Request")
		return
	}
	src, _ := netip.ParseAddrPort(req.Source())
	reg.Source = src
	reg.Transport = sipmsg.NetworkToLower(req.Transport())
	res, err := s.reg.Apply(user, reg)
	if err != nil {
		log.Error("registrar", zap.Error(err))
		_ = s.respond(req, tx, 500, reasonPhrase(500))
		return
	}
	var hdrs []sipmsg.Header
	switch res.Status {
	case 200:
		for _, b := range res.Bindings {
			hdrs = append(hdrs, sipmsg.NewHeader("Contact", b.ContactValue()))
		}
		if res.Changed {
			log.Info("registration", zap.String("user", user), zap.Int("contacts", len(res.Bindings)), zap.String("source", req.Source()))
		}
	case 423:
		hdrs = append(hdrs, sipmsg.NewHeader("Min-Expires", strconv.Itoa(res.MinExpires)))
	default:
		log.Info("REGISTER refused", zap.Int("code", res.Status), zap.String("why", res.Detail))
	}
	reason := res.Reason
	if reason == "" {
		reason = reasonPhrase(res.Status)
	}
	_ = s.respond(req, tx, res.Status, reason, hdrs...)
}

// registerOf reads a REGISTER's bindings; false for a non-numeric expires
// or q.
func registerOf(req *sipmsg.Request) (registrar.Register, bool) {
	reg := registrar.Register{Expires: -1, CallID: req.CallID().Value(), CSeq: req.CSeq().SeqNo}
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || n < 0 {
			return reg, false
		}
		reg.Expires = n
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		reg.UserAgent = h.Value()
	}
	for _, h := range req.GetHeaders("Contact") {
		ct, ok := h.(*sipmsg.ContactHeader)
		if !ok {
			return reg, false
		}
		if ct.Address.Wildcard {
			reg.Wildcard = true
			continue
		}
		c := registrar.Contact{URI: ct.Address.String(), Expires: -1, Q: -1}
		if v, ok := ct.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return reg, false
			}
			c.Expires = n
		}
		if v, ok := ct.Params.Get("q"); ok {
			q, err := strconv.ParseFloat(v, 64)
			if err != nil || q < 0 || q > 1 {
				return reg, false
			}
			c.Q = q
		}
		reg.Contacts = append(reg.Contacts, c)
	}
	return reg, true
}

// userGroup is the group a dialled user extension rings: every registered
// contact of the user at once, for 30 s, then 480. Users are not groups in
// the config, but a call to one is routed like a call to a group of one.
func userGroup(u *config.User) *config.Group {
	return &config.Group{
		Name:              "user:" + u.Name,
		Label:             u.Name,
		Extension:         u.Extension,
		Enabled:           true,
		Strategy:          "all",
		Timeout:           30e9,
		MemberTimeout:     30e9,
		RingInUse:         true,
		AnsweredElsewhere: true,
		FollowForward:     true,
		Ringback:          "passthrough",
		RingbackTone:      "us",
		Permissions:       config.Permissions{Allow: []string{"*"}},
		Members:           []config.Member{{User: u.Name, Weight: 1}},
		Fallback: config.Fallbacks{
			NoAnswer:   config.Fallback{Reject: 480},
			Busy:       config.Fallback{Reject: 486},
			Congestion: config.Fallback{Reject: 486},
			Closed:     config.Fallback{Reject: 480},
		},
	}
}
