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
}

func newUDPReader(s *Server, c *net.UDPConn) *udpReader {
	return &udpReader{UDPConn: c, s: s, parser: sipmsg.NewParser()}
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
