package sip

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// rtpPeer is a phone's media socket.
type rtpPeer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newRTPPeer(t *testing.T) *rtpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rtpPeer{t: t, conn: c}
}

func (r *rtpPeer) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

func (r *rtpPeer) sdp(dir string) string {
	extra := ""
	if dir != "" {
		extra = "a=" + dir + "\r\n"
	}
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n%s", r.port(), extra)
}

func rtpPacket(seq uint16, payload []byte) []byte {
	b := make([]byte, 12, 12+len(payload))
	b[0] = 0x80
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(b[8:], 0x1234)
	return append(b, payload...)
}

func (r *rtpPeer) sendTo(to netip.AddrPort, seq uint16, payload []byte) {
	r.t.Helper()
	if _, err := r.conn.WriteToUDPAddrPort(rtpPacket(seq, payload), to); err != nil {
		r.t.Fatal(err)
	}
}

// recv reads one datagram, and from where.
func (r *rtpPeer) recv(d time.Duration) ([]byte, netip.AddrPort, bool) {
	buf := make([]byte, 2048)
	_ = r.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := r.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}, false
	}
	return buf[:n], from, true
}

// mediaOf is the c= address and m= port of an SDP body.
func mediaOf(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	var addr netip.Addr
	port := -1
	for _, line := range strings.Split(string(body), "\r\n") {
		switch {
		case strings.HasPrefix(line, "c=IN IP4 "):
			a, err := netip.ParseAddr(strings.TrimPrefix(line, "c=IN IP4 "))
			if err != nil {
				t.Fatalf("bad c= line %q", line)
			}
			addr = a
		case strings.HasPrefix(line, "m=audio "):
			p, err := strconv.Atoi(strings.Fields(line)[1])
			if err != nil {
				t.Fatalf("bad m= line %q", line)
			}
			port = p
		}
	}
	if !addr.IsValid() || port < 0 {
		t.Fatalf("no c=/m= in SDP:\n%s", body)
	}
	return netip.AddrPortFrom(addr, uint16(port))
}

const relayConfig = `
listen: [udp://127.0.0.1:%UDP%]
media: {mode: relay, address: 127.0.0.1, ports: 31000-31019, rtp_timeout: 2s}
admin: {listen: ""}
cdr: {path: ""}
registrar: {state_file: ""}
trunks: [{name: local, from: [127.0.0.1/32]}]
groups:
  - name: sales
    extension: "600"
    strategy: all
    timeout: 3s
    member_timeout: 2s
    retry_delay: 0s
    members: [%MEMBERS%]
`

func relayServer(t *testing.T, peers []*peer, members ...*peer) (*Server, *cdrRecorder) {
	var ms []string
	for _, m := range members {
		ms = append(ms, fmt.Sprintf("{uri: %q}", m.uri(m.name)))
	}
	return startServer(t, strings.Replace(relayConfig, "%MEMBERS%", strings.Join(ms, ", "), 1), peers...)
}

func inRelayRange(ap netip.AddrPort) bool {
	return ap.Addr() == netip.MustParseAddr("127.0.0.1") && ap.Port() >= 31000 && ap.Port() <= 31019
}

// SPEC "Media", relay mode: both sides see ringroute's address and pool
// ports, never each other's; RTP flows both ways, byte-identical and in
// order; telephone-event and rtpmaps pass; every port is back in the pool
// when the call ends.
func TestRelayedCall(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	s, cdrs := relayServer(t, []*peer{caller, m}, m)
	crtp, mrtp := newRTPPeer(t), newRTPPeer(t)

	cid := "relay-" + sipmsg.GenerateTagN(6)
	caller.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s
From: "Alice" <sip:+15551234@127.0.0.1:%d>;tag=caller1
To: <sip:600@127.0.0.1:%d>
Call-ID: %s
CSeq: 1 INVITE
Contact: <sip:caller@127.0.0.1:%d>
Content-Type: application/sdp

%s`, caller.to.Port, caller.port(), cid, caller.port(), caller.to.Port, cid, caller.port(), crtp.sdp("")))

	inv := m.request(sipmsg.INVITE, wait)
	toMember := mediaOf(t, inv.Body())
	if !inRelayRange(toMember) || toMember.Port() == uint16(crtp.port()) {
		t.Fatalf("member offer points at %v, want ringroute's relay ports", toMember)
	}
	for _, want := range []string{"a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "RTP/AVP 0 101"} {
		if !strings.Contains(string(inv.Body()), want) {
			t.Errorf("member offer lost %q:\n%s", want, inv.Body())
		}
	}
	if in, _ := s.MediaPorts(); in != 2 {
		t.Errorf("%d port pairs in use during ringing, want 2 (caller side and the shared member side)", in)
	}
	m.reply(inv, 200, "mtag", mrtp.sdp(""))
	m.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	toCaller := mediaOf(t, ok.Body())
	if !inRelayRange(toCaller) || toCaller == toMember {
		t.Fatalf("caller answer points at %v, want ringroute's caller-side port", toCaller)
	}
	caller.ackFor(ok)

	// Caller to member, then member to caller, in order and untouched.
	for i := 0; i < 5; i++ {
		payload := bytes.Repeat([]byte{byte(0x10 + i)}, 160)
		crtp.sendTo(toCaller, uint16(100+i), payload)
		got, from, ok := mrtp.recv(wait)
		if !ok {
			t.Fatalf("packet %d from the caller never reached the member", i)
		}
		if !bytes.Equal(got, rtpPacket(uint16(100+i), payload)) {
			t.Fatalf("packet %d changed on the way", i)
		}
		if from != toMember {
			t.Fatalf("member got RTP from %v, want the port it was offered %v", from, toMember)
		}
		back := bytes.Repeat([]byte{byte(0x80 + i)}, 160)
		mrtp.sendTo(toMember, uint16(500+i), back)
		got, from, ok = crtp.recv(wait)
		if !ok || !bytes.Equal(got, rtpPacket(uint16(500+i), back)) || from != toCaller {
			t.Fatalf("packet %d from the member: ok=%v from %v", i, ok, from)
		}
	}

	// The caller hangs up; the relay's ports go back to the pool.
	caller.send(fmt.Sprintf(`BYE %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-rbye
From: %s
To: %s
Call-ID: %s
CSeq: 2 BYE
Max-Forwards: 70

`, ok.Contact().Address.String(), caller.port(), ok.From().Value(), ok.To().Value(), cid))
	bye := m.request(sipmsg.BYE, wait)
	m.reply(bye, 200, "", "")
	cdrs.wait(t, 1)
	waitPortsFree(t, s)
}

// rtp_timeout: an answered call whose media stops is hung up on both sides
// and the CDR says why.
func TestRTPTimeout(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	s, cdrs := relayServer(t, []*peer{caller, m}, m)
	crtp, mrtp := newRTPPeer(t), newRTPPeer(t)

	cid := "rtpto-" + sipmsg.GenerateTagN(6)
	caller.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s
From: <sip:+15551234@127.0.0.1:%d>;tag=caller1
To: <sip:600@127.0.0.1:%d>
Call-ID: %s
CSeq: 1 INVITE
Contact: <sip:caller@127.0.0.1:%d>
Content-Type: application/sdp

%s`, caller.to.Port, caller.port(), cid, caller.port(), caller.to.Port, cid, caller.port(), crtp.sdp("")))
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 200, "mtag", mrtp.sdp(""))
	m.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	caller.ackFor(ok)
	// Silence from both sides for 2 s: BYE both ways.
	start := time.Now()
	b1 := m.request(sipmsg.BYE, 5*time.Second)
	m.reply(b1, 200, "", "")
	b2 := caller.request(sipmsg.BYE, wait)
	caller.reply(b2, 200, "", "")
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("hung up after %v, before rtp_timeout (2s)", took)
	}
	if r := cdrs.wait(t, 1)[0]; r.EndedBy != "rtp_timeout" {
		t.Errorf("CDR ended_by = %q, want rtp_timeout", r.EndedBy)
	}
	waitPortsFree(t, s)
}

// A 488 for an offer the relay cannot read, and the ports stay free.
func TestRelayRefusesUnusableOffer(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	s, _ := relayServer(t, []*peer{caller, m}, m)
	caller.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-bad-sdp
From: <sip:x@127.0.0.1>;tag=x1
To: <sip:600@127.0.0.1>
Call-ID: bad-sdp
CSeq: 1 INVITE
Contact: <sip:x@127.0.0.1:%d>
Content-Type: application/sdp

v=0
this is not sdp
`, caller.to.Port, caller.port(), caller.port()))
	caller.response(488, wait)
	m.quiet("INVITE", isReq(sipmsg.INVITE), 200*time.Millisecond)
	waitPortsFree(t, s)
}

func waitPortsFree(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		in, _ := s.MediaPorts()
		if in == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d relay port pairs still in use after the call", in)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
