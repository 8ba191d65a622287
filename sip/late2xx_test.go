package sip

import (
	"fmt"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// answeredCall is a call from caller to group 600 whose one member, m1,
// answered: the member has our ACK, the caller has our 200 and has not
// ACKed it yet.
type answeredCall struct {
	s              *Server
	caller, member *peer
	cid            string
	memberOK       *sipmsg.Response // the member's 200
	ok             *sipmsg.Response // ours to the caller
}

func answerCall(t *testing.T) *answeredCall {
	t.Helper()
	a := &answeredCall{caller: newPeer(t, "caller"), member: newPeer(t, "m1")}
	a.s, _ = startServer(t, groupConfig("all", a.member.uri("m1")), a.caller, a.member)
	a.cid = a.caller.invite("600")
	inv := a.member.request(sipmsg.INVITE, wait)
	a.memberOK = a.member.reply(inv, 200, "m1tag", strings.ReplaceAll(sdp, "4000", "5000"))
	a.member.request(sipmsg.ACK, wait)
	a.ok = a.caller.response(200, wait)
	return a
}

// hangUp ACKs our 200 and ends the call from the caller's side.
func (a *answeredCall) hangUp() {
	a.caller.ackFor(a.ok)
	a.bye()
}

// bye: the caller's BYE gets 200, and the member's BYE from us is answered.
func (a *answeredCall) bye() {
	a.caller.inDialogBye(a.ok, 2)
	a.caller.response(200, wait)
	a.member.reply(a.member.request(sipmsg.BYE, wait), 200, "", "")
}

// isRes matches a response to method with code (any code for 0).
func isRes(method sipmsg.RequestMethod, code int) func(sipmsg.Message) bool {
	return func(m sipmsg.Message) bool {
		r, ok := m.(*sipmsg.Response)
		return ok && r.CSeq().MethodName == method && (code == 0 || r.StatusCode == code)
	}
}

// Every later 2xx of a leg reaches ringroute as RFC 6026 hands them to
// the TU: the leg's own INVITE transaction (invitetx.go) takes it while the
// call's goroutine runs, the stray handler after that. A retransmission of
// the 2xx that won a live leg (our ACK was lost) must be ACKed again, never BYEd; a 2xx with
// another To tag (a second phone behind a forking proxy) is ACKed and
// BYEd while the first dialog stays.
func TestLate2xxOfLiveLegIsAckedNotByed(t *testing.T) {
	a := answerCall(t)
	caller, member, ok, res := a.caller, a.member, a.memberOK, a.ok
	caller.ackFor(res)

	for i := 0; i < 2; i++ {
		member.sendMsg(ok) // the member did not get our ACK
		member.request(sipmsg.ACK, wait)
	}
	member.quiet("BYE", isReq(sipmsg.BYE), 300*time.Millisecond)

	m, err := sipmsg.ParseMessage([]byte(strings.Replace(ok.String(), "tag=m1tag", "tag=other", 1)))
	if err != nil {
		t.Fatal(err)
	}
	member.sendMsg(m)
	member.request(sipmsg.ACK, wait)
	bye := member.request(sipmsg.BYE, wait)
	if tag(bye.To()) != "other" {
		t.Errorf("BYE went to %q, want the other phone", tag(bye.To()))
	}
	member.reply(bye, 200, "", "")

	a.bye()
}

// sipgo drops the caller's INVITE transaction at our 200 (Timer L is 0,
// see linger), but RFC 3261 §13.3.1.4 has the 200 resent until the ACK,
// from T1 doubling: 0.5, 1.5 and 3.5 s after the first.
func TestOKRetransmittedWithoutTransaction(t *testing.T) {
	a := answerCall(t)
	start := time.Now()
	var at []time.Duration
	for range 3 {
		a.caller.response(200, 3*time.Second)
		at = append(at, time.Since(start))
	}
	for i, want := range []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond, 3500 * time.Millisecond} {
		if d := at[i] - want; d < -100*time.Millisecond || d > 300*time.Millisecond {
			t.Errorf("200 copy %d came %v after the first, want about %v", i+2, at[i].Round(time.Millisecond), want)
		}
	}
	a.hangUp()
}

// A caller that got neither our 100 nor our 200 resends its INVITE after
// sipgo has dropped the transaction (at the 200). It is the same call: it
// must not ring the group again (RFC 6026 Accepted state absorbs it), and
// the caller still gets the 200 from its retransmissions.
func TestInviteRetransmittedAfter2xxIsAbsorbed(t *testing.T) {
	a := answerCall(t)
	a.caller.send(a.caller.inviteText("600", a.cid))
	a.member.quiet("a second INVITE", isReq(sipmsg.INVITE), 300*time.Millisecond)
	again := a.caller.response(200, 2*time.Second)
	if tag(again.To()) != tag(a.ok.To()) {
		t.Errorf("200 after the retransmitted INVITE has To tag %q, want the dialog's %q", tag(again.To()), tag(a.ok.To()))
	}
	a.hangUp()
}

// A BYE's transaction is ended as it is answered (see linger). The same
// BYE again (our 200 was lost) gets 200 once more, not 481; another BYE
// for the ended dialog still gets 481.
func TestByeRetransmissionGets200Again(t *testing.T) {
	a := answerCall(t)
	caller, member, ok := a.caller, a.member, a.ok
	caller.ackFor(ok)
	bye := fmt.Sprintf("BYE %s SIP/2.0\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bK-bye-%s\nFrom: %s\nTo: %s\nCall-ID: %s\nCSeq: 2 BYE\nMax-Forwards: 70\n\n",
		ok.Contact().Address.String(), caller.ip(), caller.port(), sipmsg.GenerateTagN(8), ok.From().Value(), ok.To().Value(), ok.CallID().Value())
	caller.send(bye)
	caller.response(200, wait)
	member.reply(member.request(sipmsg.BYE, wait), 200, "", "")
	noLiveCalls(t, a.s, wait) // the dialog is gone: only byes can answer
	caller.send(bye)
	caller.response(200, wait)
	caller.send(strings.Replace(bye, "branch=z9hG4bK-bye-", "branch=z9hG4bK-other-", 1))
	caller.response(481, wait)
}

// A member's INVITE transaction is dropped at its failure (Timer D is 0,
// see linger). The failure sent again (our ACK was lost) is ACKed again,
// as the transaction would have (RFC 3261 §17.1.1.3): same Request-URI,
// branch and CSeq number, the response's To tag. A failure on a branch
// that is not one of ours gets nothing.
func TestRetransmittedFailureIsAckedAgain(t *testing.T) {
	caller, member := newPeer(t, "caller"), newPeer(t, "m1")
	startServer(t, groupConfig("all", member.uri("m1")), caller, member)

	caller.invite("600")
	inv := member.request(sipmsg.INVITE, wait)
	busy := member.reply(inv, 486, "m1tag", "")
	member.request(sipmsg.ACK, wait)
	caller.response(486, wait)
	time.Sleep(50 * time.Millisecond) // the transaction is gone by now
	for range 2 {
		member.sendMsg(busy)
		ack := member.request(sipmsg.ACK, wait)
		if ack.Recipient.String() != inv.Recipient.String() {
			t.Errorf("ACK Request-URI %s, want the INVITE's %s", ack.Recipient.String(), inv.Recipient.String())
		}
		want, _ := inv.Via().Params.Get("branch")
		if got, _ := ack.Via().Params.Get("branch"); got != want {
			t.Errorf("ACK branch %q, want the INVITE's %q", got, want)
		}
		if tag(ack.To()) != "m1tag" || ack.CSeq().SeqNo != inv.CSeq().SeqNo || ack.CallID().Value() != inv.CallID().Value() {
			t.Errorf("ACK To tag %q, CSeq %d, Call-ID %s; want m1tag, %d, %s", tag(ack.To()), ack.CSeq().SeqNo, ack.CallID().Value(), inv.CSeq().SeqNo, inv.CallID().Value())
		}
	}
	forged, err := sipmsg.ParseMessage([]byte(strings.Replace(busy.String(), "branch=", "branch=z9hG4bKforged", 1)))
	if err != nil {
		t.Fatal(err)
	}
	member.sendMsg(forged)
	member.quiet("an ACK for a branch not ours", isReq(sipmsg.ACK), 300*time.Millisecond)
}

// A CANCEL that crosses our 200 gets 200 and changes nothing (RFC 3261
// §9.2), though the INVITE's transaction ended at the 200; a CANCEL for
// an INVITE never seen gets 481.
func TestCancelAfter2xxGets200(t *testing.T) {
	a := answerCall(t)
	caller, cid := a.caller, a.cid
	cancel := func(branch string) string {
		return fmt.Sprintf("CANCEL sip:600@127.0.0.1:%d SIP/2.0\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bK-%s\nFrom: \"Alice\" <sip:+15551234@%s:%d>;tag=caller1\nTo: <sip:600@127.0.0.1:%d>\nCall-ID: %s\nCSeq: 1 CANCEL\nMax-Forwards: 70\n\n",
			caller.to.Port, caller.ip(), caller.port(), branch, caller.ip(), caller.port(), caller.to.Port, cid)
	}
	caller.send(cancel(cid))
	caller.next("200 to the CANCEL", isRes(sipmsg.CANCEL, 200), wait)
	a.member.quiet("CANCEL or BYE for an answered call", func(m sipmsg.Message) bool {
		return isReq(sipmsg.CANCEL)(m) || isReq(sipmsg.BYE)(m)
	}, 300*time.Millisecond)
	caller.send(cancel("never-sent"))
	caller.response(481, wait)
	a.hangUp()
}

// A BYE from the caller shows it has our 200 though its ACK never came:
// the 200 is not sent again (it would only cross the BYE's own 200), even
// while the member takes its time to answer our BYE.
func TestByeStops2xxRetransmission(t *testing.T) {
	a := answerCall(t) // and no ACK from the caller: it was lost
	a.caller.inDialogBye(a.ok, 2)
	a.caller.next("200 to the BYE", isRes(sipmsg.BYE, 200), wait)
	bye := a.member.request(sipmsg.BYE, wait)
	a.caller.quiet("the INVITE's 200 again", isRes(sipmsg.INVITE, 0), 1200*time.Millisecond)
	a.member.reply(bye, 200, "", "")
}
