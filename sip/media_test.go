package sip

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	caller.inDialogBye(ok, 2)
	bye := m.request(sipmsg.BYE, wait)
	m.reply(bye, 200, "", "")
	rec := cdrs.wait(t, 1)[0]
	if rec.RTP == nil || rec.RTP.FromCaller != 5 || rec.RTP.FromMember != 5 || rec.RTP.Dropped != 0 ||
		rec.RTP.BytesFromCaller != 5*172 || rec.RTP.BytesFromMember != 5*172 {
		t.Errorf("CDR rtp = %+v, want 5 packets (172 bytes each) each way, none dropped", rec.RTP)
	}
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

// invite sends a relay-mode INVITE offering the caller's RTP socket.
// callerHangsUp: the caller sends BYE in the dialog of ok, and member, the
// other side of the bridge, gets it and answers 200.
func callerHangsUp(caller, member *peer, ok *sipmsg.Response) {
	caller.t.Helper()
	caller.inDialog(ok, "BYE", 2, "", "")
	member.reply(member.request(sipmsg.BYE, wait), 200, "", "")
}

func relayInvite(caller *peer, crtp *rtpPeer, number string) string {
	return relayInviteID(caller, crtp, number, "rl-"+sipmsg.GenerateTagN(8))
}

func relayInviteID(caller *peer, crtp *rtpPeer, number, cid string) string {
	caller.send(fmt.Sprintf(`INVITE sip:%s@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s
From: "Alice" <sip:+15551234@127.0.0.1:%d>;tag=caller1
To: <sip:%s@127.0.0.1:%d>
Call-ID: %s
CSeq: 1 INVITE
Contact: <sip:caller@127.0.0.1:%d>
Content-Type: application/sdp

%s`, number, caller.to.Port, caller.port(), cid, caller.port(), number, caller.to.Port, cid, caller.port(), crtp.sdp("")))
	return cid
}

// inDialogRequest sends a request inside the caller's dialog of ok.
func (p *peer) inDialog(ok *sipmsg.Response, method string, cseq int, ctype, body string) {
	p.t.Helper()
	extra := ""
	if body != "" {
		extra = "Contact: <sip:caller@127.0.0.1:" + strconv.Itoa(p.port()) + ">\nContent-Type: " + ctype + "\n"
	}
	p.send(fmt.Sprintf(`%s %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s
From: %s
To: %s
Call-ID: %s
CSeq: %d %s
Max-Forwards: 70
%s
%s`, method, ok.Contact().Address.String(), p.port(), sipmsg.GenerateTagN(10), ok.From().Value(), ok.To().Value(), ok.CallID().Value(), cseq, method, extra, body))
}

func ulaw(u byte) float64 {
	u = ^u
	t := (int(u&0x0f) << 3) + 0x84
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return float64(0x84 - t)
	}
	return float64(t - 0x84)
}

// goertzel is the power of frequency f in samples at 8 kHz.
func goertzel(x []float64, f float64) float64 {
	w := 2 * math.Pi * f / 8000
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = v+c*s1-s2, s1
	}
	return s1*s1 + s2*s2 - c*s1*s2
}

// SPEC "One call" 5, `ringback: tone`: the caller gets 183 with
// ringroute's SDP and hears a US ringback (440+480 Hz) as RTP before
// answer; on answer it hears the member instead.
func TestRingbackTone(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	cfg := strings.Replace(relayConfig, "%MEMBERS%", fmt.Sprintf("{uri: %q}", m.uri("m")), 1)
	cfg = strings.Replace(cfg, "    members:", "    ringback: tone\n    ringback_tone: us\n    members:", 1)
	cfg = strings.Replace(cfg, "timeout: 3s", "timeout: 8s", 1)
	s, _ := startServer(t, cfg, caller, m)
	crtp, mrtp := newRTPPeer(t), newRTPPeer(t)

	relayInvite(caller, crtp, "600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 180, "mtag", "")
	early := caller.response(183, wait)
	from := mediaOf(t, early.Body())
	if !inRelayRange(from) {
		t.Fatalf("183 SDP points at %v", from)
	}
	caller.quiet("180 as well as the 183", func(x sipmsg.Message) bool {
		r, ok := x.(*sipmsg.Response)
		return ok && r.StatusCode == 180
	}, 100*time.Millisecond)

	var samples []float64
	for len(samples) < 8000 { // the first second: all tone (2 s on)
		b, src, ok := crtp.recv(wait)
		if !ok {
			t.Fatalf("no ringback RTP after %d samples", len(samples))
		}
		if src != from || len(b) < 12 || b[0]>>6 != 2 || b[1]&0x7f != 0 {
			t.Fatalf("ringback packet from %v, header % x", src, b[:min(12, len(b))])
		}
		for _, u := range b[12:] {
			samples = append(samples, ulaw(u))
		}
	}
	p440, p480, p1000 := goertzel(samples, 440), goertzel(samples, 480), goertzel(samples, 1000)
	if p440 < 100*p1000 || p480 < 100*p1000 {
		t.Fatalf("ringback is not 440+480 Hz: power 440=%.3g 480=%.3g 1000=%.3g", p440, p480, p1000)
	}

	m.reply(inv, 200, "mtag", mrtp.sdp(""))
	m.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	if got := mediaOf(t, ok.Body()); got != from {
		t.Errorf("200 SDP %v differs from the 183's %v: the caller's media address must not move", got, from)
	}
	caller.ackFor(ok)
	toMember := mediaOf(t, inv.Body())
	// The tone stops: after the member speaks, what the caller gets is the
	// member's packets.
	mrtp.sendTo(toMember, 7, bytes.Repeat([]byte{0x55}, 160))
	deadline := time.Now().Add(wait)
	for {
		b, _, ok := crtp.recv(time.Until(deadline))
		if !ok {
			t.Fatal("the member's audio never reached the caller")
		}
		if bytes.Equal(b, rtpPacket(7, bytes.Repeat([]byte{0x55}, 160))) {
			break
		}
	}
	callerHangsUp(caller, m, ok)
	waitPortsFree(t, s)
}

// Hold through the relay: the re-INVITE keeps the call's ports, and a held
// call's silence does not trip rtp_timeout; resumed, it does.
func TestHoldKeepsPortsAndSkipsRTPTimeout(t *testing.T) {
	eachP(t, testHoldKeepsPortsAndSkipsRTPTimeout)
}

func testHoldKeepsPortsAndSkipsRTPTimeout(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	s, cdrs := relayServer(t, []*peer{caller, m}, m)
	crtp, mrtp := newRTPPeer(t), newRTPPeer(t)

	relayInvite(caller, crtp, "600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 200, "mtag", mrtp.sdp(""))
	m.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	caller.ackFor(ok)

	caller.inDialog(ok, "INVITE", 2, "application/sdp", crtp.sdp("sendonly"))
	re := m.request(sipmsg.INVITE, wait)
	if got, want := mediaOf(t, re.Body()), mediaOf(t, inv.Body()); got != want {
		t.Errorf("hold re-INVITE moved the member side from %v to %v", want, got)
	}
	if !strings.Contains(string(re.Body()), "a=sendonly") {
		t.Errorf("direction lost in the relayed hold:\n%s", re.Body())
	}
	m.reply(re, 200, "", mrtp.sdp("recvonly"))
	m.request(sipmsg.ACK, wait)
	r2 := caller.next("200 for hold", func(x sipmsg.Message) bool {
		r, isRes := x.(*sipmsg.Response)
		return isRes && r.StatusCode == 200 && r.CSeq().SeqNo == 2
	}, wait).(*sipmsg.Response)
	if got, want := mediaOf(t, r2.Body()), mediaOf(t, ok.Body()); got != want {
		t.Errorf("hold answer moved the caller side from %v to %v", want, got)
	}
	caller.ackFor(r2)

	// On hold and silent for longer than rtp_timeout (2 s): no BYE.
	m.quiet("BYE while on hold", isReq(sipmsg.BYE), 3*time.Second)

	caller.inDialog(ok, "INVITE", 3, "application/sdp", crtp.sdp(""))
	re = m.request(sipmsg.INVITE, wait)
	m.reply(re, 200, "", mrtp.sdp(""))
	m.request(sipmsg.ACK, wait)
	r3 := caller.next("200 for resume", func(x sipmsg.Message) bool {
		r, isRes := x.(*sipmsg.Response)
		return isRes && r.StatusCode == 200 && r.CSeq().SeqNo == 3
	}, wait).(*sipmsg.Response)
	caller.ackFor(r3)
	// Resumed and silent: rtp_timeout hangs up.
	bye := m.request(sipmsg.BYE, 5*time.Second)
	m.reply(bye, 200, "", "")
	cb := caller.request(sipmsg.BYE, wait)
	caller.reply(cb, 200, "", "")
	if r := cdrs.wait(t, 1)[0]; r.EndedBy != "rtp_timeout" {
		t.Errorf("ended_by %q", r.EndedBy)
	}
	waitPortsFree(t, s)
}

// `record`: an answered call is written as a stereo WAV (caller left,
// member right) named in the CDR.
func TestRecording(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	dir := t.TempDir()
	cfg := strings.Replace(relayConfig, "%MEMBERS%", fmt.Sprintf("{uri: %q}", m.uri("m")), 1)
	cfg = strings.Replace(cfg, "    members:", "    record: {enabled: true, dir: "+strconv.Quote(dir)+"}\n    members:", 1)
	s, cdrs := startServer(t, cfg, caller, m)
	crtp, mrtp := newRTPPeer(t), newRTPPeer(t)

	relayInvite(caller, crtp, "600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 200, "mtag", mrtp.sdp(""))
	m.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	caller.ackFor(ok)
	toCaller, toMember := mediaOf(t, ok.Body()), mediaOf(t, inv.Body())
	const packets = 50 // one second each way
	for i := 0; i < packets; i++ {
		crtp.sendTo(toCaller, uint16(i), bytes.Repeat([]byte{0x20}, 160)) // loud on the left
		mrtp.sendTo(toMember, uint16(i), bytes.Repeat([]byte{0xa0}, 160)) // loud on the right
		time.Sleep(20 * time.Millisecond)
		crtp.recv(10 * time.Millisecond)
		mrtp.recv(10 * time.Millisecond)
	}
	callerHangsUp(caller, m, ok)
	rec := cdrs.wait(t, 1)[0]
	waitPortsFree(t, s) // the WAV is finished when the session closes
	if rec.Recording == "" || filepath.Dir(rec.Recording) != dir {
		t.Fatalf("CDR recording = %q, want a file in %s", rec.Recording, dir)
	}
	wav, err := os.ReadFile(rec.Recording)
	if err != nil {
		t.Fatal(err)
	}
	if len(wav) < 44 || string(wav[0:4]) != "RIFF" || string(wav[8:12]) != "WAVE" {
		t.Fatalf("not a WAV file: % x", wav[:min(len(wav), 16)])
	}
	channels := binary.LittleEndian.Uint16(wav[22:24])
	rate := binary.LittleEndian.Uint32(wav[24:28])
	bits := binary.LittleEndian.Uint16(wav[34:36])
	if channels != 2 || rate != 8000 || bits != 16 {
		t.Fatalf("WAV is %d ch %d Hz %d bit, want 2 ch 8000 Hz 16 bit", channels, rate, bits)
	}
	data := wav[44:]
	frames := len(data) / 4
	if frames < 7000 || frames > 12000 {
		t.Errorf("%d frames recorded, want about 8000 (one second)", frames)
	}
	var left, right float64
	for i := 0; i+3 < len(data); i += 4 {
		left += math.Abs(float64(int16(binary.LittleEndian.Uint16(data[i:]))))
		right += math.Abs(float64(int16(binary.LittleEndian.Uint16(data[i+2:]))))
	}
	if left == 0 || right == 0 {
		t.Errorf("a channel is silent: left %.0f right %.0f", left, right)
	}
}

// `ringback: passthrough` (the default): the first member whose 18x
// carries SDP is the caller's early media; on answer the caller hears the
// winner, on the same relay address.
func TestEarlyMediaPassthrough(t *testing.T) {
	caller, a, b := newPeer(t, "caller"), newPeer(t, "a"), newPeer(t, "b")
	s, _ := relayServer(t, []*peer{caller, a, b}, a, b)
	crtp, artp, brtp := newRTPPeer(t), newRTPPeer(t), newRTPPeer(t)

	relayInvite(caller, crtp, "600")
	ia := a.request(sipmsg.INVITE, wait)
	ib := b.request(sipmsg.INVITE, wait)
	toMembers := mediaOf(t, ia.Body())
	if got := mediaOf(t, ib.Body()); got != toMembers {
		t.Fatalf("ringing legs got different relay ports %v and %v; they share the member side", toMembers, got)
	}
	a.reply(ia, 183, "atag", artp.sdp(""))
	early := caller.response(183, wait)
	toCaller := mediaOf(t, early.Body())
	if !inRelayRange(toCaller) {
		t.Fatalf("183 SDP points at %v", toCaller)
	}
	artp.sendTo(toMembers, 1, bytes.Repeat([]byte{0x11}, 160))
	if got, _, ok := crtp.recv(wait); !ok || !bytes.Equal(got, rtpPacket(1, bytes.Repeat([]byte{0x11}, 160))) {
		t.Fatal("the early member's ringback did not reach the caller")
	}
	// Before answer, nothing goes from the caller to the members.
	crtp.sendTo(toCaller, 2, bytes.Repeat([]byte{0x22}, 160))
	if _, _, ok := artp.recv(200 * time.Millisecond); ok {
		t.Error("caller audio reached a member before answer")
	}

	// b answers: the caller hears b, and a's audio is no longer relayed.
	b.reply(ib, 200, "btag", brtp.sdp(""))
	b.request(sipmsg.ACK, wait)
	c := a.request(sipmsg.CANCEL, wait)
	a.reply(c, 200, "", "")
	a.reply(ia, 487, "atag", "")
	ok := caller.response(200, wait)
	if got := mediaOf(t, ok.Body()); got != toCaller {
		t.Errorf("caller's media address moved from %v to %v on answer", toCaller, got)
	}
	caller.ackFor(ok)
	brtp.sendTo(toMembers, 3, bytes.Repeat([]byte{0x33}, 160))
	for {
		got, _, ok := crtp.recv(wait)
		if !ok {
			t.Fatal("the winner's audio never reached the caller")
		}
		if bytes.Equal(got, rtpPacket(3, bytes.Repeat([]byte{0x33}, 160))) {
			break
		}
	}
	artp.sendTo(toMembers, 4, bytes.Repeat([]byte{0x44}, 160))
	if got, _, ok := crtp.recv(300 * time.Millisecond); ok && bytes.Equal(got, rtpPacket(4, bytes.Repeat([]byte{0x44}, 160))) {
		t.Error("the losing member's audio still reaches the caller (RTP bleed)")
	}
	callerHangsUp(caller, b, ok)
	waitPortsFree(t, s)
}

// An empty port pool refuses the call with 503 and breaks nothing else:
// the next call after the pool frees up connects.
func TestPortPoolExhausted(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	cfg := strings.Replace(relayConfig, "ports: 31000-31019", "ports: 31000-31003", 1) // two pairs: one call
	cfg = strings.Replace(cfg, "%MEMBERS%", fmt.Sprintf("{uri: %q}", m.uri("m")), 1)
	s, cdrs := startServer(t, cfg, caller, m)
	crtp, mrtp := newRTPPeer(t), newRTPPeer(t)

	relayInvite(caller, crtp, "600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 180, "m1", "")
	caller.response(180, wait)

	relayInvite(caller, crtp, "600")
	caller.response(503, wait)
	if n := s.counters.poolExhausted.Load(); n != 1 {
		t.Errorf("pool exhaustion counted %d times", n)
	}
	m.reply(inv, 200, "m1", mrtp.sdp(""))
	m.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	caller.ackFor(ok)
	callerHangsUp(caller, m, ok)
	cdrs.wait(t, 2)
	waitPortsFree(t, s)

	relayInvite(caller, crtp, "600")
	inv = m.request(sipmsg.INVITE, wait)
	m.reply(inv, 486, "m2", "")
	caller.response(486, wait)
}

// A member whose 200 carries SDP the relay cannot read is hung up on, and
// the hunt goes on with the others: the caller is answered by the next.
func TestWinnerWithUnusableSDPIsSkipped(t *testing.T) {
	caller, a, b := newPeer(t, "caller"), newPeer(t, "a"), newPeer(t, "b")
	s, cdrs := relayServer(t, []*peer{caller, a, b}, a, b)
	crtp, brtp := newRTPPeer(t), newRTPPeer(t)

	relayInvite(caller, crtp, "600")
	ia := a.request(sipmsg.INVITE, wait)
	ib := b.request(sipmsg.INVITE, wait)
	b.reply(ib, 180, "btag", "")
	res := sipmsg.NewResponseFromRequest(ia, 200, "OK", nil)
	res.To().Params.Add("tag", "atag")
	res.AppendHeader(sipmsg.NewHeader("Contact", fmt.Sprintf("<sip:a@127.0.0.1:%d>", a.port())))
	res.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	res.SetBody([]byte("v=0\r\nnot sdp at all\r\n"))
	a.sendMsg(res)
	a.request(sipmsg.ACK, wait)
	bye := a.request(sipmsg.BYE, wait)
	a.reply(bye, 200, "", "")
	b.reply(ib, 200, "btag", brtp.sdp(""))
	b.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	if !inRelayRange(mediaOf(t, ok.Body())) {
		t.Errorf("caller's 200 SDP: %s", ok.Body())
	}
	caller.ackFor(ok)
	callerHangsUp(caller, b, ok)
	r := cdrs.wait(t, 1)[0]
	if r.Outcome != "answered" || r.AnsweredBy != "uri:"+b.uri("b") {
		t.Errorf("CDR outcome %q answered_by %q", r.Outcome, r.AnsweredBy)
	}
	waitPortsFree(t, s)
}

// A recording is started beside the call, not in its way: while the disk
// blocks the WAV's open (a FIFO nobody reads, standing in for a hung NFS
// mount) the caller still gets its 200 and can hang up, and the call ends
// cleanly once the open returns.
func TestRecordingOpenDoesNotHoldTheAnswer(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	dir, cid := t.TempDir(), "rl-slowdisk"
	// The WAV is named by the UTC second of the answer and the Call-ID.
	var fifos []string
	now := time.Now().UTC()
	for d := -2; d <= 20; d++ {
		p := filepath.Join(dir, now.Add(time.Duration(d)*time.Second).Format("20060102T150405Z")+"-"+cid+".wav")
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		fifos = append(fifos, p)
	}
	var readers []*os.File
	t.Cleanup(func() { // last: after the server has stopped
		for _, r := range readers {
			r.Close()
		}
	})
	release := func() { // a reader on each FIFO lets the open return
		if readers != nil {
			return
		}
		for _, p := range fifos {
			r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Error(err)
				continue
			}
			readers = append(readers, r)
		}
	}
	cfg := strings.Replace(relayConfig, "%MEMBERS%", fmt.Sprintf("{uri: %q}", m.uri("m")), 1)
	cfg = strings.Replace(cfg, "    members:", "    record: {enabled: true, dir: "+strconv.Quote(dir)+"}\n    members:", 1)
	s, cdrs := startServer(t, cfg, caller, m)
	t.Cleanup(release) // first: a failed test must not leave the open hanging
	crtp, mrtp := newRTPPeer(t), newRTPPeer(t)

	relayInviteID(caller, crtp, "600", cid)
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 200, "mtag", mrtp.sdp(""))
	m.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	caller.ackFor(ok)
	callerHangsUp(caller, m, ok)
	caller.response(200, wait)
	release()
	if rec := cdrs.wait(t, 1)[0]; rec.Outcome != "answered" || rec.EndedBy != "caller" {
		t.Errorf("outcome %q ended_by %q, want answered by the caller", rec.Outcome, rec.EndedBy)
	}
	waitPortsFree(t, s)
}
