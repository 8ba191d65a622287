package sip

import (
	"bytes"
	"net"
	"net/netip"

	sipmsg "github.com/emiago/sipgo/sip"
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
	// trying stands for every 100 (Trying) to a leg's INVITE, and ringing
	// for every 180 (Ringing) without a body. All a 100 tells a leg is that
	// its INVITE arrived (RFC 3261 §17.1.1.2: Timers A and B stop), and all
	// a bodiless 180 tells it is that the member rings (early media needs
	// an SDP body, which takes the full parse): the leg reads nothing else
	// of either, so they are not parsed. That is six parses fewer in a call
	// to a 3-member group. Never written after newUDPReader.
	trying, ringing *sipmsg.Response
}

func newUDPReader(s *Server, c *net.UDPConn) *udpReader {
	standIn := func(code int, reason string) *sipmsg.Response {
		r := sipmsg.NewResponse(code, reason)
		r.AppendHeader(&sipmsg.CSeqHeader{SeqNo: 1, MethodName: sipmsg.INVITE})
		r.SetTransport("UDP")
		return r
	}
	return &udpReader{UDPConn: c, s: s, parser: sipmsg.NewParser(),
		trying: standIn(100, "Trying"), ringing: standIn(180, "Ringing")}
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

// take delivers data to its leg's call if it is a response to a leg's
// INVITE or CANCEL, and reports whether it did.
func (u *udpReader) take(data []byte, from netip.AddrPort) bool {
	if !bytes.HasPrefix(data, statusLinePrefix) {
		return false
	}
	if code, b := provisionalBranch(data); b != nil {
		if l := u.s.members.byBranch(b); l != nil {
			res := u.trying
			if code == 180 {
				res = u.ringing
			}
			// For a call that has just ended there is nothing to do: a
			// stray 1xx changes nothing.
			l.c.deliver(l, res)
			return true
		}
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
	res.SetSource(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()).String())
	if !l.c.deliver(l, res) {
		// Its call has just ended. A stray may be ACKed and BYEd, which
		// must not hold up the read loop.
		u.s.spawn(func() { u.s.onStrayResponse(res) })
	}
	return true
}

var crlf = []byte("\r\n")

// provisionalBranch reads a 100 or a 180 to an INVITE, with no body,
// without parsing the message: its status code and its top Via's branch.
// The branch is nil when data is anything else, or anything about it is
// unusual (a folded line, a top Via not of the form we write ours in, a
// header line without a colon, a body), and the full parse takes it.
func provisionalBranch(data []byte) (int, []byte) {
	var code int
	switch {
	case bytes.HasPrefix(data, []byte("SIP/2.0 100 ")):
		code = 100
	case bytes.HasPrefix(data, []byte("SIP/2.0 180 ")):
		code = 180
	default:
		return 0, nil
	}
	i := bytes.Index(data, crlf)
	if i < 0 {
		return 0, nil
	}
	rest := data[i+2:]
	var branch []byte
	var via, invite bool
	for {
		i := bytes.Index(rest, crlf)
		if i < 0 {
			return 0, nil // no end of the headers
		}
		line := rest[:i]
		rest = rest[i+2:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 0, nil // a folded header line (RFC 3261 §7.3.1)
		}
		c := bytes.IndexByte(line, ':')
		if c < 0 {
			return 0, nil
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
				return 0, nil
			}
			if branch = branchParam(value); !bytes.HasPrefix(branch, []byte("z9hG4bK")) {
				return 0, nil
			}
		case bytes.EqualFold(name, []byte("content-length")) || bytes.EqualFold(name, []byte("l")):
			if string(value) != "0" {
				return 0, nil
			}
		case bytes.EqualFold(name, []byte("cseq")):
			// "1 INVITE", as we wrote it.
			n, method, ok := bytes.Cut(value, []byte(" "))
			if !ok || len(n) == 0 || !allDigits(n) || string(method) != "INVITE" {
				return 0, nil
			}
			invite = true
		}
	}
	if !invite || len(rest) > 0 {
		return 0, nil
	}
	return code, branch
}

// branchParam is the branch parameter of one Via value, nil for none. It
// reads it exactly as the full path does (sipgo's parser, then a
// case-sensitive lookup): "branch=" in lower case, nothing around the
// "=". Anything else is left to that path, so both agree on every leg.
func branchParam(via []byte) []byte {
	params := via
	for {
		j := bytes.IndexByte(params, ';')
		if j < 0 {
			return nil
		}
		params = params[j+1:]
		p := params
		if k := bytes.IndexByte(p, ';'); k >= 0 {
			p = p[:k]
		}
		if value, ok := bytes.CutPrefix(p, []byte("branch=")); ok {
			if len(value) == 0 || bytes.ContainsAny(value, " \t") {
				return nil
			}
			return value
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
