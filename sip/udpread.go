package sip

import (
	"bytes"
	"net"
	"net/netip"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/ringroute/ringroute/config"
)

// udpReader is a UDP listener as sipgo reads it, with a short way in for
// the responses to the legs' INVITEs and CANCELs: they are parsed and
// queued for their call right in the read loop, and sipgo never sees them.
//
// sipgo starts a goroutine for every datagram it reads. For a response to
// one of our legs (most of what a ringing call receives: a 100, a 180 and
// a final response per member, and a 200 per CANCEL) that goroutine only
// found the leg and handed the response on to the call's goroutine, and it
// waited in the run queue behind every other datagram's: under load the
// runtime held close to a thousand runnable goroutines, and a response
// waited 9 ms on average and 50 ms at p99 before it reached its call
// (docs/behaviour.md). Taken here it costs one wake-up of the call, and
// the call sees its responses in the order they came off the socket.
//
// Everything else (requests, responses to sipgo's own transactions, what
// does not parse) goes to sipgo unchanged; a response that is not a leg's
// is parsed twice, which is rare and cheap beside the goroutine it saves.
type udpReader struct {
	*net.UDPConn
	s      *Server
	parser *sipmsg.Parser // this read loop's alone
	// trying stands for every 100 (Trying) to a leg's INVITE, ringing
	// for every 180 (Ringing) without a body, and cancelled for every 200
	// to a leg's CANCEL. All a 100 tells a leg is that its INVITE arrived
	// (RFC 3261 §17.1.1.2: Timers A and B stop), all a bodiless 180 tells
	// it is that the member rings (early media needs an SDP body, which
	// takes the full parse), and all the 200 tells it is that its CANCEL
	// arrived (the 487 to the INVITE ends the leg): the leg reads nothing
	// else of any, so they are not parsed (lightResponse). That is eight
	// parses fewer in a call to a 3-member group. Never written after
	// newUDPReader.
	trying, ringing, cancelled *sipmsg.Response
	// failures stand for failures to a leg's INVITE by code (failure),
	// made on the read loop as they first come; each, once made, is
	// never written again.
	failures map[int]*sipmsg.Response
}

func newUDPReader(s *Server, c *net.UDPConn) *udpReader {
	u := &udpReader{UDPConn: c, s: s, parser: sipmsg.NewParser()}
	u.trying = u.standIn(100, "Trying", sipmsg.INVITE)
	u.ringing = u.standIn(180, "Ringing", sipmsg.INVITE)
	u.cancelled = u.standIn(200, "OK", sipmsg.CANCEL)
	return u
}

// standIn is a response read unparsed: a status and a CSeq method.
func (u *udpReader) standIn(code int, reason string, method sipmsg.RequestMethod) *sipmsg.Response {
	r := sipmsg.NewResponse(code, reason)
	r.AppendHeader(&sipmsg.CSeqHeader{SeqNo: 1, MethodName: method})
	r.SetTransport("UDP")
	return r
}

// ReadFrom is what sipgo's read loop calls: the next datagram that is not
// a leg's response.
func (u *udpReader) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := u.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, nil, err
		}
		if u.take(b[:n], from) {
			continue
		}
		return n, net.UDPAddrFromAddrPort(from), nil
	}
}

var statusLinePrefix = []byte("SIP/2.0 ")

var (
	invitePrefix = []byte("INVITE ")
	cancelPrefix = []byte("CANCEL ")
	ackPrefix    = []byte("ACK ")
)

// take delivers data to its leg's call if it is a response to a leg's
// INVITE or CANCEL, or to our INVITE server transactions if it is an
// INVITE, or a CANCEL or ACK of one of theirs, and reports whether it did.
func (u *udpReader) take(data []byte, from netip.AddrPort) bool {
	switch {
	case bytes.HasPrefix(data, statusLinePrefix):
		return u.takeResponse(data, from)
	case bytes.HasPrefix(data, invitePrefix):
		return u.takeInvite(data, from)
	case bytes.HasPrefix(data, cancelPrefix), bytes.HasPrefix(data, ackPrefix):
		return u.takeCancelOrAck(data, from)
	}
	return false
}

// takeInvite starts the transaction of a new INVITE and has its handler
// (serveInvite) run by the steppers, or answers a retransmission from
// the transaction. An INVITE without an RFC 3261 branch is sipgo's.
func (u *udpReader) takeInvite(data []byte, from netip.AddrPort) bool {
	req := u.parseRequest(data, from)
	if req == nil || req.Method != sipmsg.INVITE {
		return false
	}
	branch, sentBy, ok := inviteKey(req)
	if !ok || req.CSeq().MethodName != sipmsg.INVITE {
		return false
	}
	tx, existing := u.s.itx.begin(u.UDPConn, req, branch, sentBy, unmapped(from))
	if existing {
		if tx.sentBy != sentBy {
			return false // another sender's branch: sipgo keeps it apart
		}
		tx.retransmitted()
		return true
	}
	if !u.s.bg.add() {
		tx.Terminate() // closing: dropped
		return true
	}
	cfg := u.s.Config()
	switch {
	case mayWait(cfg, req):
		go u.s.serveInvite(cfg, req, tx)
	case u.s.steppers.behind():
		u.s.serveInvite(cfg, req, tx) // see urgent
	default:
		u.s.steppers.run(&inviteJob{u.s, cfg, req, tx})
	}
	return true
}

// mayWait reports whether the handler of INVITE req may wait on others,
// so that it needs a goroutine of its own: a re-INVITE (a To tag) waits
// for the other side's answer and then for the ACK, which come in on this
// very socket, and a pickup waits for the picked call's step to send its
// 200. Neither may hold up the read loop, nor a stepper, for the 32 s
// either may take. A new call's handler returns once the call rings.
func mayWait(cfg *config.Config, req *sipmsg.Request) bool {
	to := req.To()
	if to == nil {
		return true // refused: no hurry
	}
	for _, p := range to.Params {
		// As admit will read it (normalizeParams): RFC 3261 lets a
		// "tag = x" have spaces around its "=".
		if strings.TrimSpace(p.K) == "tag" {
			return true
		}
	}
	return isPickup(cfg, unescapeUser(req.Recipient.User))
}

// inviteJob is a new INVITE's handler (serveInvite) for the steppers: on
// a goroutine of its own it started on a 2 KiB stack that setting up the
// call grew to 8 KiB and more, copying it on the way (at 2000 calls/s
// newstack took 8% of the daemon's CPU, a third of it here). The handler
// does not block: it returns once the call rings.
type inviteJob struct {
	s   *Server
	cfg *config.Config
	req *sipmsg.Request
	tx  *inviteServerTx
}

func (j *inviteJob) step() { j.s.serveInvite(j.cfg, j.req, j.tx) }

// takeCancelOrAck hands a CANCEL, or the ACK of a failure, to the INVITE
// transaction it names. What names none is sipgo's, and most of it (the
// ACK of every 2xx) is told apart by its branch without a parse.
func (u *udpReader) takeCancelOrAck(data []byte, from netip.AddrPort) bool {
	if b := requestBranch(data); b != nil && !u.s.itx.has(b) {
		return false
	}
	req := u.parseRequest(data, from)
	if req == nil || req.Method != sipmsg.CANCEL && req.Method != sipmsg.ACK {
		return false
	}
	branch, sentBy, ok := inviteKey(req)
	if !ok {
		return false
	}
	tx := u.s.itx.match(branch, sentBy)
	if tx == nil {
		return false
	}
	if req.IsCancel() {
		answerCancel(u.UDPConn, req, unmapped(from))
		tx.cancel(req)
	} else {
		tx.acked()
	}
	return true
}

// parseRequest parses a request and marks it as sipgo's UDP transport
// does; nil if it does not parse.
func (u *udpReader) parseRequest(data []byte, from netip.AddrPort) *sipmsg.Request {
	msg, err := u.parser.ParseSIP(data)
	if err != nil {
		return nil // sipgo parses it again, logs it and drops it
	}
	req, ok := msg.(*sipmsg.Request)
	if !ok {
		return nil
	}
	req.SetTransport("UDP")
	req.SetSource(unmapped(from).String())
	return req
}

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// takeResponse delivers a response to a leg's INVITE or CANCEL to its call.
func (u *udpReader) takeResponse(data []byte, from netip.AddrPort) bool {
	if code, b, to := lightResponse(data); b != nil {
		// A CANCEL has its INVITE's branch (RFC 3261 §9.1).
		l := u.s.members.byBranch(b)
		switch {
		case l == nil:
		case code < 400:
			// For a call that has just ended there is nothing to do: a
			// stray 1xx, or a stray 200 to a CANCEL, changes nothing.
			l.c.deliver(l, u.standInFor(code))
			return true
		case l.c.toInbox(l, u.failure(code), bytes.Clone(to)):
			l.c.kick()
			return true
		}
		// No leg, or its call has just ended: parsed below, a stray
		// failure goes to onStrayResponse, as any stray does.
	}
	msg, err := u.parser.ParseSIP(data)
	if err != nil {
		return false // sipgo logs it and drops it
	}
	res, ok := msg.(*sipmsg.Response)
	if !ok {
		return false
	}
	l := u.s.members.match(res)
	if l == nil {
		return false
	}
	// As sipgo's UDP transport marks what it reads.
	res.SetTransport("UDP")
	res.SetSource(unmapped(from).String())
	if !l.c.toInbox(l, res, nil) {
		// Its call has just ended. A stray may be ACKed and BYEd, which
		// must not hold up the read loop.
		u.s.spawn(func() { u.s.onStrayResponse(res) })
		return true
	}
	if urgent(res) && u.s.steppers.behind() && l.c.a.udp() && !l.c.streamPicker() && l.live() {
		l.c.stepHere()
	} else {
		l.c.kick()
	}
	return true
}

// standInFor is the stand-in for a 100 or a 180 to a leg's INVITE, or a
// 200 to its CANCEL, as lightResponse reads them.
func (u *udpReader) standInFor(code int) *sipmsg.Response {
	switch code {
	case 180:
		return u.ringing
	case 200:
		return u.cancelled
	}
	return u.trying
}

// failure is the stand-in for a failure to a leg's INVITE with this
// code, read unparsed (lightResponse): its status and CSeq method are all
// a leg reads of it but its To, which goes with it (legResponse.to).
func (u *udpReader) failure(code int) *sipmsg.Response {
	if r := u.failures[code]; r != nil {
		return r
	}
	r := u.standIn(code, reasonPhrase(code), sipmsg.INVITE)
	if u.failures == nil {
		u.failures = map[int]*sipmsg.Response{}
	}
	u.failures[code] = r
	return r
}

// urgent reports whether a leg's response sets its call up: a 2xx to its
// INVITE, the answer.
//
// What sets a call up is stepped on the read loop itself when the
// steppers are behind (steppers.behind), and so is a new INVITE's handler
// (takeInvite) unless it may wait (mayWait). SIPp, like many a trunk,
// sends in bursts, one per tick of its clock, and each burst is read whole
// before the steppers run what it queued: a call's answer or its first
// member's INVITE waited behind the burst's 180s, 487s and CANCEL 200s,
// and behind the reading of the rest of the burst. Stepped here, the fork
// and the answer go out in the order their datagrams came in, and the rest
// waits for the steppers (parallel group, five alternating pairs: at 1000
// calls/s added setup p50 1.0–1.4 → 0.7–0.9 ms, p99 4.6–10.2 → 3.0–5.1 ms;
// at 1600/s p50 1.8–2.6 → 1.1–1.4 ms, p99 11–23 → 6–11 ms).
//
// Only a call whose caller (and picker, if one waits) came over UDP, and
// only for a leg still ringing: such a step writes datagrams, never to a
// connection that could block (a TCP or TLS leg's requests go out from a
// goroutine of the leg's, inOrder; a stray 2xx is ACKed and BYEd from one
// of its own), and waits on nothing but a ringback player's stop. A
// failure is left to the steppers: the last one ends the call, whose CDR
// line and log go to disk. (A new INVITE the handler refuses writes its
// CDR line here.)
func urgent(res *sipmsg.Response) bool {
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		return false
	}
	cseq := res.CSeq()
	return cseq != nil && cseq.MethodName == sipmsg.INVITE
}

var crlf = []byte("\r\n")

// lightResponse reads a 100 or a 180 to an INVITE, a 200 to a CANCEL or
// a 4xx, 5xx or 6xx to an INVITE, with no body, without parsing the
// message: its status code, its top Via's branch and, for a failure, the
// value of its To (which the ACK repeats, RFC 3261 §17.1.1.3). The branch
// is nil when data is anything else, or anything about it is unusual (a
// folded line, a top Via not of the form we write ours in, a header line
// without a colon, a failure with no To or two, a body), and the full
// parse takes it. A 3xx is parsed: its Contacts are where to ring.
func lightResponse(data []byte) (code int, branch, to []byte) {
	method := "INVITE"
	switch {
	case bytes.HasPrefix(data, []byte("SIP/2.0 100 ")):
		code = 100
	case bytes.HasPrefix(data, []byte("SIP/2.0 180 ")):
		code = 180
	case bytes.HasPrefix(data, []byte("SIP/2.0 200 ")):
		code, method = 200, "CANCEL"
	case len(data) > 12 && bytes.HasPrefix(data, statusLinePrefix) && data[11] == ' ' &&
		'4' <= data[8] && data[8] <= '6' && allDigits(data[9:11]):
		code = int(data[8]-'0')*100 + int(data[9]-'0')*10 + int(data[10]-'0')
	default:
		return 0, nil, nil
	}
	i := bytes.Index(data, crlf)
	if i < 0 {
		return 0, nil, nil
	}
	rest := data[i+2:]
	var via, cseq, toSeen bool
	for {
		i := bytes.Index(rest, crlf)
		if i < 0 {
			return 0, nil, nil // no end of the headers
		}
		line := rest[:i]
		rest = rest[i+2:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 0, nil, nil // a folded header line (RFC 3261 §7.3.1)
		}
		c := bytes.IndexByte(line, ':')
		if c < 0 {
			return 0, nil, nil
		}
		name, value := bytes.TrimSpace(line[:c]), bytes.TrimSpace(line[c+1:])
		switch {
		case bytes.EqualFold(name, []byte("via")) || bytes.EqualFold(name, []byte("v")):
			if via {
				continue // only the top Via counts
			}
			via = true
			if j := bytes.IndexByte(value, ','); j >= 0 {
				value = value[:j]
			}
			// Our own Via, as we wrote it: anything else is for the parser.
			if !bytes.HasPrefix(value, []byte("SIP/2.0/UDP ")) {
				return 0, nil, nil
			}
			if branch = branchParam(value); !bytes.HasPrefix(branch, []byte("z9hG4bK")) {
				return 0, nil, nil
			}
		case bytes.EqualFold(name, []byte("content-length")) || bytes.EqualFold(name, []byte("l")):
			if string(value) != "0" {
				return 0, nil, nil
			}
		case code >= 400 && (bytes.EqualFold(name, []byte("to")) || bytes.EqualFold(name, []byte("t"))):
			if toSeen || len(value) == 0 {
				return 0, nil, nil
			}
			toSeen, to = true, value
		case bytes.EqualFold(name, []byte("cseq")):
			// "1 INVITE" or "1 CANCEL", as we wrote it.
			n, m, ok := bytes.Cut(value, []byte(" "))
			if !ok || len(n) == 0 || !allDigits(n) || string(m) != method {
				return 0, nil, nil
			}
			cseq = true
		}
	}
	if !cseq || len(rest) > 0 || code >= 400 && !toSeen {
		return 0, nil, nil
	}
	return code, branch, to
}

// requestBranch is the top Via's branch of a request, read off the
// datagram as lightResponse reads a response's; nil when anything
// about the headers before it is unusual, and the full parse decides.
func requestBranch(data []byte) []byte {
	i := bytes.Index(data, crlf)
	if i < 0 {
		return nil
	}
	rest := data[i+2:]
	for {
		i := bytes.Index(rest, crlf)
		if i <= 0 {
			return nil // no end of the line, or the headers end with no Via
		}
		line := rest[:i]
		rest = rest[i+2:]
		if line[0] == ' ' || line[0] == '\t' {
			return nil
		}
		c := bytes.IndexByte(line, ':')
		if c < 0 {
			return nil
		}
		name := bytes.TrimSpace(line[:c])
		if !bytes.EqualFold(name, []byte("via")) && !bytes.EqualFold(name, []byte("v")) {
			continue
		}
		if len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			return nil // the Via goes on in a folded line
		}
		value := bytes.TrimSpace(line[c+1:])
		if j := bytes.IndexByte(value, ','); j >= 0 {
			value = value[:j]
		}
		if !bytes.HasPrefix(value, []byte("SIP/2.0/UDP ")) {
			return nil
		}
		if b := branchParam(value); bytes.HasPrefix(b, []byte("z9hG4bK")) {
			return b
		}
		return nil
	}
}

// branchParam is the branch parameter of one Via value, nil for none. It
// reads it exactly as the full path does (sipgo's parser, then a
// case-sensitive lookup): "branch=" in lower case, nothing around the
// "=", and only one (the parser keeps the last of several). Anything else
// is left to that path, so both agree on every leg.
func branchParam(via []byte) []byte {
	var branch []byte
	params := via
	for {
		j := bytes.IndexByte(params, ';')
		if j < 0 {
			return branch
		}
		params = params[j+1:]
		p := params
		if k := bytes.IndexByte(p, ';'); k >= 0 {
			p = p[:k]
		}
		if value, ok := bytes.CutPrefix(p, []byte("branch=")); ok {
			if branch != nil || len(value) == 0 || bytes.ContainsAny(value, " \t") {
				return nil
			}
			branch = value
		}
	}
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
