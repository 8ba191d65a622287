package sip

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/ringroute/ringroute/routing"
)

const wait = 3 * time.Second

func isReq(m sipmsg.RequestMethod) func(sipmsg.Message) bool {
	return func(x sipmsg.Message) bool {
		r, ok := x.(*sipmsg.Request)
		return ok && r.Method == m
	}
}

func tag(h interface{ Value() string }) string {
	_, after, _ := strings.Cut(h.Value(), "tag=")
	t, _, _ := strings.Cut(after, ";")
	return t
}

// SPEC "One call" 1, 4, 6, 9: one member answers; the caller gets one
// 180 and one 200 with the member's SDP; a caller BYE reaches the member.
func TestAnsweredCallEndToEnd(t *testing.T) {
	caller, member := newPeer(t, "caller"), newPeer(t, "m1")
	_, cdrs := startServer(t, groupConfig("all", member.uri("m1")), caller, member)

	cid := caller.invite("600")
	caller.response(100, wait)
	inv := member.request(sipmsg.INVITE, wait)
	if inv.CallID().Value() == cid {
		t.Errorf("leg reuses the caller's Call-ID; each leg must be a new dialog")
	}
	if got := inv.From().DisplayName; got != "Alice" {
		t.Errorf("From display toward member = %q, want the caller's", got)
	}
	if got := inv.From().Address.User; got != "+15551234" {
		t.Errorf("From user toward member = %q, want the caller's", got)
	}
	if inv.Contact() == nil {
		t.Errorf("INVITE to member has no Contact")
	}
	if mf := inv.MaxForwards(); mf == nil || mf.Val() != 69 {
		t.Errorf("Max-Forwards toward member = %v, want 69 (decremented, RFC 7332)", mf)
	}
	if string(inv.Body()) != sdp {
		t.Errorf("direct mode must pass the offer untouched; got %q", inv.Body())
	}

	member.reply(inv, 180, "m1tag", "")
	ring := caller.response(180, wait)
	answer := strings.ReplaceAll(sdp, "4000", "5000")
	member.reply(inv, 200, "m1tag", answer)
	member.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	if tag(ok.To()) != tag(ring.To()) || tag(ok.To()) == "" {
		t.Errorf("200 To tag %q differs from 180's %q", tag(ok.To()), tag(ring.To()))
	}
	if string(ok.Body()) != answer {
		t.Errorf("caller's 200 body = %q, want the member's answer", ok.Body())
	}
	if ok.Contact() == nil {
		t.Errorf("200 to caller has no Contact")
	}
	caller.ackFor(ok)
	caller.quiet("second 180", func(m sipmsg.Message) bool {
		r, ok := m.(*sipmsg.Response)
		return ok && r.StatusCode == 180
	}, 100*time.Millisecond)

	caller.inDialogBye(ok, 2)
	caller.response(200, wait)
	bye := member.request(sipmsg.BYE, wait)
	if bye.CallID().Value() != inv.CallID().Value() || tag(bye.To()) != "m1tag" {
		t.Errorf("BYE is not in the member's dialog: %s", bye.StartLine())
	}
	member.reply(bye, 200, "", "")

	recs := cdrs.wait(t, 1)
	if r := recs[0]; r.Outcome != routing.OutcomeAnswered || r.Code != 200 || r.AnsweredBy != "uri:"+member.uri("m1") || r.CallID != cid {
		t.Errorf("CDR = %+v", r)
	}
}

// SPEC "One call" 6: the first 2xx wins, the other ringing member gets
// CANCEL with the RFC 3326 Reason; a 2xx that crosses that CANCEL is ACKed
// and BYEd, and the caller sees one answer.
func TestCrossing2xxIsAckedAndByed(t *testing.T) {
	caller, a, b := newPeer(t, "caller"), newPeer(t, "a"), newPeer(t, "b")
	_, cdrs := startServer(t, groupConfig("all", a.uri("a"), b.uri("b")), caller, a, b)

	caller.invite("600")
	ia := a.request(sipmsg.INVITE, wait)
	ib := b.request(sipmsg.INVITE, wait)
	a.reply(ia, 180, "atag", "")
	b.reply(ib, 180, "btag", "")
	a.reply(ia, 200, "atag", sdp)
	a.request(sipmsg.ACK, wait)
	cancel := b.request(sipmsg.CANCEL, wait)
	if got := cancel.GetHeader("Reason"); got == nil || got.Value() != `SIP;cause=200;text="Call completed elsewhere"` {
		t.Errorf("CANCEL Reason = %v", got)
	}
	if cancel.Via().Value() != ib.Via().Value() || cancel.CSeq().SeqNo != ib.CSeq().SeqNo {
		t.Errorf("CANCEL does not match the INVITE's Via/CSeq (RFC 3261 9.1)")
	}
	// b picked up just as the CANCEL came: its 200 crosses it.
	b.reply(cancel, 200, "", "")
	b.reply(ib, 200, "btag", sdp)
	ack := b.request(sipmsg.ACK, wait)
	if tag(ack.To()) != "btag" {
		t.Errorf("ACK to the crossing 2xx has To tag %q", tag(ack.To()))
	}
	bye := b.request(sipmsg.BYE, wait)
	b.reply(bye, 200, "", "")

	ok := caller.response(200, wait)
	caller.ackFor(ok)
	winTag := tag(ok.To())
	caller.quiet("a second answer", func(m sipmsg.Message) bool {
		r, isRes := m.(*sipmsg.Response)
		return isRes && r.StatusCode == 200 && r.CSeq().MethodName == sipmsg.INVITE && tag(r.To()) != winTag
	}, 200*time.Millisecond)
	if n := a.count(sipmsg.BYE); n != 0 {
		t.Errorf("winner got %d BYE", n)
	}
	// End the call from the member side: the caller gets the BYE.
	a.send(fmt.Sprintf(`BYE %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-abye
From: %s
To: %s
Call-ID: %s
CSeq: 1 BYE
Max-Forwards: 70

`, ia.Contact().Address.String(), a.port(), ia.To().Value()+";tag=atag", ia.From().Value(), ia.CallID().Value()))
	a.response(200, wait)
	cb := caller.request(sipmsg.BYE, wait)
	caller.reply(cb, 200, "", "")
	recs := cdrs.wait(t, 1)
	if r := recs[0]; r.Outcome != routing.OutcomeAnswered || r.AnsweredBy != "uri:"+a.uri("a") {
		t.Errorf("CDR = %+v", r)
	}
}

// The forking proxy's second 2xx may come right behind the first, before
// the call has taken the first from the transaction (CI caught it). It must
// still be ACKed and BYEd, and the first dialog connected.
func TestForked2xxBackToBack(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	startServer(t, groupConfig("all", m.uri("m")), caller, m)

	// The race is sipgo's goroutines' to lose: a few calls make it likely.
	for call := 0; call < 10; call++ {
		cid := caller.invite("600")
		inv := m.request(sipmsg.INVITE, wait)
		m.reply(inv, 200, "first", sdp)
		m.reply(inv, 200, "second", sdp)
		ackedBoth(t, m)
		// sipgo hands each datagram to a goroutine of its own, so either
		// 2xx may be the one the transaction takes: that one wins, the
		// other is hung up.
		bye := m.request(sipmsg.BYE, wait)
		won := map[string]string{"first": "second", "second": "first"}[tag(bye.To())]
		if won == "" {
			t.Fatalf("call %d: BYE went to dialog %q", call, tag(bye.To()))
		}
		connectWinner(t, caller, m, cid, bye, won)
	}
}

// ackedBoth: the member's 2xx with To tags first and second are both ACKed.
func ackedBoth(t *testing.T, m *peer) {
	t.Helper()
	acked := map[string]bool{}
	for range 2 {
		acked[tag(m.request(sipmsg.ACK, wait).To())] = true
	}
	if !acked["first"] || !acked["second"] {
		t.Fatalf("ACKs went to %v, want first and second", acked)
	}
}

// connectWinner goes on from ringroute's BYE to the member's dialog that
// lost: it is answered, the caller gets its 200 and hangs up, and that BYE
// must reach won, the member's dialog that stayed.
func connectWinner(t *testing.T, caller, m *peer, cid string, bye *sipmsg.Request, won string) {
	t.Helper()
	of := func(method sipmsg.RequestMethod) func(sipmsg.Message) bool {
		is := isRes(method, 200)
		return func(m sipmsg.Message) bool { return is(m) && m.CallID().Value() == cid }
	}
	m.reply(bye, 200, "", "")
	ok := caller.next("200 to the INVITE", of(sipmsg.INVITE), wait).(*sipmsg.Response)
	caller.ackFor(ok)
	caller.inDialogBye(ok, 2)
	b := m.request(sipmsg.BYE, wait)
	if tag(b.To()) != won {
		t.Errorf("caller's BYE went to %q, want %q, the dialog that was not hung up", tag(b.To()), won)
	}
	m.reply(b, 200, "", "")
	caller.next("200 to the BYE", of(sipmsg.BYE), wait)
}

// sipgo runs each datagram on a goroutine of its own, so of two 2xx back
// to back either may reach the call first. The first the call takes wins;
// the other is ACKed and BYEd once the winner is in the dialog table. It
// was dropped when the leg had not answered yet, since nothing was in the
// table for it. Here the second comes in through sipgo's hook for
// unmatched responses before the member's first.
func TestFirst2xxToReachTheCallWins(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	srv, _ := startServer(t, groupConfig("all", m.uri("m")), caller, m)

	cid := caller.invite("600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 180, "first", "")
	caller.response(180, wait)
	second, err := sipmsg.ParseMessage([]byte(m.responseTo(inv, 200, "second", sdp).String()))
	if err != nil {
		t.Fatal(err)
	}
	second.SetTransport("UDP") // as sipgo's transport layer hands it over
	second.SetSource(m.conn.LocalAddr().String())
	srv.onResponse(second.(*sipmsg.Response))
	if a := m.request(sipmsg.ACK, wait); tag(a.To()) != "second" {
		t.Fatalf("ACK to dialog %q, want second", tag(a.To()))
	}

	m.reply(inv, 200, "first", sdp)
	if a := m.request(sipmsg.ACK, wait); tag(a.To()) != "first" {
		t.Fatalf("ACK to dialog %q, want first", tag(a.To()))
	}
	bye := m.request(sipmsg.BYE, wait)
	if tag(bye.To()) != "first" {
		t.Fatalf("BYE went to dialog %q, want the one that came second", tag(bye.To()))
	}
	connectWinner(t, caller, m, cid, bye, "second")
}

// A proxy in front of a member may fork: a second 2xx with another To tag
// is a second dialog, which is ACKed and BYEd (RFC 3261 13.2.2.4); the
// first stays up.
func TestForked2xxWithOtherTagIsByed(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	startServer(t, groupConfig("all", m.uri("m")), caller, m)

	cid := caller.invite("600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 200, "first", sdp)
	if a := m.request(sipmsg.ACK, wait); tag(a.To()) != "first" {
		t.Fatalf("first ACK to tag %q", tag(a.To()))
	}
	m.reply(inv, 200, "second", sdp)
	ack := m.request(sipmsg.ACK, wait)
	if tag(ack.To()) != "second" {
		t.Fatalf("ACK for the forked 2xx has To tag %q", tag(ack.To()))
	}
	bye := m.request(sipmsg.BYE, wait)
	if tag(bye.To()) != "second" {
		t.Fatalf("BYE went to dialog %q, want the forked one", tag(bye.To()))
	}
	connectWinner(t, caller, m, cid, bye, "first")
}

// RFC 3261 9.1: no CANCEL before a provisional response. A silent member
// whose time is up gets none; when it answers late it is ACKed and BYEd.
func TestNoCancelBeforeProvisional(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	_, cdrs := startServer(t, groupConfig("linear", m.uri("m")), caller, m)

	caller.invite("600")
	inv := m.request(sipmsg.INVITE, wait)
	// Ring time 2 s, group timeout 3 s: the caller gets 480.
	caller.response(480, 5*time.Second)
	if n := m.count(sipmsg.CANCEL); n != 0 {
		t.Fatalf("member got %d CANCEL before sending any provisional", n)
	}
	m.reply(inv, 200, "late", sdp)
	m.request(sipmsg.ACK, wait)
	bye := m.request(sipmsg.BYE, wait)
	m.reply(bye, 200, "", "")
	if r := cdrs.wait(t, 1)[0]; r.Outcome != routing.OutcomeNoAnswer || r.Code != 480 {
		t.Errorf("CDR = %+v", r)
	}
}

// SPEC "One call" 6: the caller's CANCEL gets 200 and 487 (with the same
// To tag as the 180) and cancels every ringing leg, without the
// answered-elsewhere Reason.
func TestCallerCancel(t *testing.T) {
	caller, a, b := newPeer(t, "caller"), newPeer(t, "a"), newPeer(t, "b")
	_, cdrs := startServer(t, groupConfig("all", a.uri("a"), b.uri("b")), caller, a, b)

	cid := caller.invite("600")
	ia := a.request(sipmsg.INVITE, wait)
	ib := b.request(sipmsg.INVITE, wait)
	a.reply(ia, 180, "atag", "")
	b.reply(ib, 180, "btag", "")
	ring := caller.response(180, wait)
	caller.send(fmt.Sprintf(`CANCEL sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s
From: "Alice" <sip:+15551234@127.0.0.1:%d>;tag=caller1
To: <sip:600@127.0.0.1:%d>
Call-ID: %s
CSeq: 1 CANCEL
Max-Forwards: 70

`, caller.to.Port, caller.port(), cid, caller.port(), caller.to.Port, cid))
	caller.response(200, wait)
	term := caller.response(487, wait)
	if tag(term.To()) != tag(ring.To()) {
		t.Errorf("487 To tag %q differs from 180's %q", tag(term.To()), tag(ring.To()))
	}
	for _, p := range []*peer{a, b} {
		inv := ia
		if p == b {
			inv = ib
		}
		c := p.request(sipmsg.CANCEL, wait)
		if c.GetHeader("Reason") != nil {
			t.Errorf("%s: caller CANCEL must not claim answered elsewhere: %v", p.name, c.GetHeader("Reason"))
		}
		p.reply(c, 200, "", "")
		p.reply(inv, 487, p.name+"tag", "")
		p.request(sipmsg.ACK, wait) // sipgo ACKs the 487 itself
	}
	if r := cdrs.wait(t, 1)[0]; r.Outcome != routing.OutcomeCancelled || len(r.Legs) != 2 {
		t.Errorf("CDR = %+v", r)
	}
}

// SPEC "One call" 9: a re-INVITE after answer reaches the other side in
// its own dialog, and the answer comes back.
func TestReinviteRelayed(t *testing.T) { eachP(t, testReinviteRelayed) }

func testReinviteRelayed(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	startServer(t, groupConfig("all", m.uri("m")), caller, m)

	cid := caller.invite("600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 200, "mtag", sdp)
	m.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	caller.ackFor(ok)

	hold := strings.Replace(sdp, "m=audio 4000 RTP/AVP 0\r\n", "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n", 1)
	// Spaces around the tag's "=", as RFC 3261's SWS allows: still a
	// re-INVITE, which must not be handled where it cannot wait (mayWait).
	to := strings.Replace(ok.To().Value(), ";tag=", " ;tag = ", 1)
	caller.send(fmt.Sprintf(`INVITE %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-reinv1
From: %s
To: %s
Call-ID: %s
CSeq: 3 INVITE
Max-Forwards: 70
Contact: <sip:caller@127.0.0.1:%d>
Content-Type: application/sdp

%s`, ok.Contact().Address.String(), caller.port(), ok.From().Value(), to, cid, caller.port(), hold))
	re := m.request(sipmsg.INVITE, wait)
	if re.CallID().Value() != inv.CallID().Value() || tag(re.To()) != "mtag" {
		t.Fatalf("re-INVITE not in the member's dialog: %s", re)
	}
	if string(re.Body()) != hold {
		t.Errorf("re-INVITE body changed in direct mode: %q", re.Body())
	}
	if re.CSeq().SeqNo <= inv.CSeq().SeqNo {
		t.Errorf("re-INVITE CSeq %d not above the INVITE's %d", re.CSeq().SeqNo, inv.CSeq().SeqNo)
	}
	// While the other side decides, the re-INVITE has its 100 (RFC 3261
	// §17.2.1), so its sender stops retransmitting it.
	caller.next("100 for the re-INVITE", func(x sipmsg.Message) bool {
		r, ok := x.(*sipmsg.Response)
		return ok && r.StatusCode == 100 && r.CSeq().SeqNo == 3
	}, wait)
	held := strings.Replace(sdp, "m=audio 4000 RTP/AVP 0\r\n", "m=audio 4000 RTP/AVP 0\r\na=recvonly\r\n", 1)
	m.reply(re, 200, "", held)
	m.request(sipmsg.ACK, wait)
	r2 := caller.next("200 for re-INVITE", func(x sipmsg.Message) bool {
		r, ok := x.(*sipmsg.Response)
		return ok && r.StatusCode == 200 && r.CSeq().SeqNo == 3
	}, wait).(*sipmsg.Response)
	if string(r2.Body()) != held {
		t.Errorf("re-INVITE answer body = %q", r2.Body())
	}
	caller.ackFor(r2)

	// The member hangs up; the caller gets BYE.
	m.send(fmt.Sprintf(`BYE %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-mbye
From: %s
To: %s
Call-ID: %s
CSeq: 1 BYE
Max-Forwards: 70

`, inv.Contact().Address.String(), m.port(), inv.To().Value()+";tag=mtag", inv.From().Value(), inv.CallID().Value()))
	m.response(200, wait)
	b := caller.request(sipmsg.BYE, wait)
	caller.reply(b, 200, "", "")
}

// SPEC "One call" 1 and "Bad input": the answers ringroute gives without
// ringing anyone.
func TestRefusals(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	_, cdrs := startServer(t, groupConfig("all", m.uri("m")), caller, m)

	caller.invite("999")
	caller.response(404, wait)

	caller.send(fmt.Sprintf(`OPTIONS sip:127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-opt1
From: <sip:lb@127.0.0.1>;tag=o1
To: <sip:127.0.0.1>
Call-ID: opt-1
CSeq: 1 OPTIONS
Max-Forwards: 70

`, caller.to.Port, caller.port()))
	if r := caller.response(200, wait); r.GetHeader("Allow") == nil {
		t.Errorf("OPTIONS 200 without Allow")
	}

	for method, code := range map[string]int{"SUBSCRIBE": 405, "FROBNICATE": 501} {
		caller.send(fmt.Sprintf(`%s sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s
From: <sip:x@127.0.0.1>;tag=x1
To: <sip:600@127.0.0.1>
Call-ID: m-%s
CSeq: 1 %s
Max-Forwards: 70

`, method, caller.to.Port, caller.port(), method, method, method))
		caller.response(code, wait)
	}

	// BYE for no dialog.
	caller.send(fmt.Sprintf(`BYE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-nobye
From: <sip:x@127.0.0.1>;tag=x1
To: <sip:600@127.0.0.1>;tag=nope
Call-ID: no-such-call
CSeq: 2 BYE
Max-Forwards: 70

`, caller.to.Port, caller.port()))
	caller.response(481, wait)

	// An INVITE without Contact cannot set up a dialog.
	caller.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-nocontact
From: <sip:x@127.0.0.1>;tag=x1
To: <sip:600@127.0.0.1>
Call-ID: no-contact
CSeq: 1 INVITE
Max-Forwards: 70

`, caller.to.Port, caller.port()))
	caller.response(400, wait)

	// Max-Forwards 0: a loop.
	caller.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-mf0
From: <sip:x@127.0.0.1>;tag=x1
To: <sip:600@127.0.0.1>
Call-ID: mf0
CSeq: 1 INVITE
Max-Forwards: 0
Contact: <sip:x@127.0.0.1:%d>

`, caller.to.Port, caller.port(), caller.port()))
	caller.response(483, wait)

	// A source that is no trunk.
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Skipf("no 127.0.0.2: %v", err)
	}
	stranger := &peer{t: t, name: "stranger", conn: other, in: make(chan sipmsg.Message, 8), to: caller.to}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := other.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if m, err := sipmsg.ParseMessage(append([]byte(nil), buf[:n]...)); err == nil {
				stranger.in <- m
			}
		}
	}()
	defer other.Close()
	stranger.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.2:%d;branch=z9hG4bK-stranger
From: <sip:x@127.0.0.2>;tag=x1
To: <sip:600@127.0.0.1>
Call-ID: stranger
CSeq: 1 INVITE
Max-Forwards: 70
Contact: <sip:x@127.0.0.2:%d>

`, caller.to.Port, stranger.port(), stranger.port()))
	// Not a trunk: it must prove it is a user (digest, RFC 8760).
	chal := stranger.response(407, wait)
	if len(chal.GetHeaders("Proxy-Authenticate")) == 0 {
		t.Errorf("407 without Proxy-Authenticate")
	}

	m.quiet("INVITE", isReq(sipmsg.INVITE), 200*time.Millisecond)
	// 404 and 483 are refused calls; a digest challenge is not (the
	// caller retries with credentials).
	recs := cdrs.wait(t, 2)
	if len(recs) != 2 {
		t.Errorf("%d CDRs, want 2", len(recs))
	}
	for _, r := range recs {
		if r.Outcome != routing.OutcomeRejected {
			t.Errorf("refused call CDR outcome %q", r.Outcome)
		}
	}
}

// "Bad input": junk datagrams and truncated INVITEs neither crash
// ringroute nor ring anyone, and a good call connects after them.
func TestJunkDoesNotRingAnyone(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	startServer(t, groupConfig("all", m.uri("m")), caller, m)

	good := fmt.Sprintf("INVITE sip:600@127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-junk\r\nFrom: <sip:x@127.0.0.1>;tag=j\r\nTo: <sip:600@127.0.0.1>\r\nCall-ID: junk\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		caller.to.Port, caller.port(), caller.port(), len(sdp), sdp)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		var b []byte
		switch i % 3 {
		case 0:
			b = make([]byte, 1+r.IntN(1400))
			for j := range b {
				b[j] = byte(r.IntN(256))
			}
		case 1:
			b = []byte("SIP/2.0 200 OK\r\nVia: garbage\r\n" + strings.Repeat("X", r.IntN(300)))
		default:
			b = []byte("INVITE sip:600@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\nContent-Length: 99999\r\n\r\n")
		}
		if _, err := caller.conn.WriteToUDP(b, caller.to); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		cut := good[:10+r.IntN(len(good)-200)]
		if _, err := caller.conn.WriteToUDP([]byte(cut), caller.to); err != nil {
			t.Fatal(err)
		}
	}
	m.quiet("INVITE", isReq(sipmsg.INVITE), 500*time.Millisecond)

	caller.invite("600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 200, "m", sdp)
	m.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	caller.ackFor(ok)
	caller.inDialogBye(ok, 2)
	bye := m.request(sipmsg.BYE, wait)
	m.reply(bye, 200, "", "")
}

// A BYE before the final response is not valid SIP, but the caller is gone:
// the BYE gets 200, the INVITE its 487, and the members a CANCEL.
func TestByeBeforeAnswer(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	_, cdrs := startServer(t, groupConfig("all", m.uri("m")), caller, m)

	cid := caller.invite("600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 180, "mtag", "")
	ring := caller.response(180, wait)
	caller.send(fmt.Sprintf(`BYE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-earlybye
From: "Alice" <sip:+15551234@127.0.0.1:%d>;tag=caller1
To: %s
Call-ID: %s
CSeq: 2 BYE
Max-Forwards: 70

`, caller.to.Port, caller.port(), caller.port(), ring.To().Value(), cid))
	caller.next("200 for BYE", func(x sipmsg.Message) bool {
		r, ok := x.(*sipmsg.Response)
		return ok && r.StatusCode == 200 && r.CSeq().MethodName == sipmsg.BYE
	}, wait)
	caller.response(487, wait)
	c := m.request(sipmsg.CANCEL, wait)
	m.reply(c, 200, "", "")
	m.reply(inv, 487, "mtag", "")
	if r := cdrs.wait(t, 1)[0]; r.Outcome != routing.OutcomeCancelled || r.Code != 487 {
		t.Errorf("CDR = %+v", r)
	}
}

// The end of a drain that timed out: a ringing call is refused with 503 and
// its legs cancelled, an answered one gets BYE on both sides.
func TestAbort(t *testing.T) {
	caller, a, b := newPeer(t, "caller"), newPeer(t, "a"), newPeer(t, "b")
	cfg := groupConfig("all", a.uri("a")) + `
  - name: other
    extension: "601"
    strategy: all
    members: [{uri: "` + b.uri("b") + `"}]
`
	s, cdrs := startServer(t, cfg, caller, a, b)

	caller.invite("600")
	ia := a.request(sipmsg.INVITE, wait)
	a.reply(ia, 200, "atag", sdp)
	a.request(sipmsg.ACK, wait)
	ok := caller.response(200, wait)
	caller.ackFor(ok)

	caller.invite("601")
	ib := b.request(sipmsg.INVITE, wait)
	b.reply(ib, 180, "btag", "")
	caller.response(180, wait)

	s.Abort()
	bye := a.request(sipmsg.BYE, wait)
	a.reply(bye, 200, "", "")
	cb := caller.request(sipmsg.BYE, wait)
	caller.reply(cb, 200, "", "")
	caller.response(503, wait)
	cancel := b.request(sipmsg.CANCEL, wait)
	b.reply(cancel, 200, "", "")
	b.reply(ib, 487, "btag", "")
	recs := cdrs.wait(t, 2)
	got := map[string]string{}
	for _, r := range recs {
		got[r.Group] = fmt.Sprintf("%s/%d", r.Outcome, r.Code)
	}
	if got["sales"] != "answered/200" || got["other"] != "failed/503" {
		t.Errorf("CDRs after Abort: %v", got)
	}
}

// "Bad input": requests sipgo parses but that must not reach a group.
func TestMalformedRequestsRefused(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	_, cdrs := startServer(t, groupConfig("all", m.uri("m")), caller, m)

	caller.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d SIP/7.0
Via: SIP/7.0/UDP 127.0.0.1:%d;branch=z9hG4bK-v7
From: <sip:x@127.0.0.1>;tag=x1
To: <sip:600@127.0.0.1>
Call-ID: v7
CSeq: 1 INVITE
Contact: <sip:x@127.0.0.1:%d>

`, caller.to.Port, caller.port(), caller.port()))
	if r := caller.response(505, wait); r.SipVersion != "SIP/2.0" {
		t.Errorf("505 sent as %q", r.SipVersion)
	}
	caller.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-nohostcheck
Via: SIP/2.0/UDP ;;;branch=z9hG4bK-x
From: <sip:x@127.0.0.1>;tag=x1
To: <sip:600@127.0.0.1>
Call-ID: v8
CSeq: 1 INVITE
Contact: <sip:x@127.0.0.1:%d>

`, caller.to.Port, caller.port(), caller.port()))
	// The bad Via is not the top one here, so this INVITE is fine...
	caller.response(100, wait)
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 486, "m", "")
	caller.response(486, wait)
	cdrs.wait(t, 1)
	// ...but a top Via without a host has nowhere to answer to but the
	// source, and is refused.
	caller.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP ;;;branch=z9hG4bK-nohost;rport
From: <sip:x@127.0.0.1>;tag=x1
To: <sip:600@127.0.0.1>
Call-ID: v9
CSeq: 1 INVITE
Contact: <sip:x@127.0.0.1:%d>

`, caller.to.Port, caller.port()))
	m.quiet("INVITE", isReq(sipmsg.INVITE), 300*time.Millisecond)
	if n := len(cdrs.wait(t, 1)); n != 1 {
		t.Errorf("%d CDRs: a malformed request became a call", n)
	}
}
