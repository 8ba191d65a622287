package sip

import (
	"strconv"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// A member leg's INVITE transaction (invitetx.go) on the wire, over UDP:
// the INVITE is sent again T1 and then 2*T1 later (Timer A, RFC 3261
// §17.1.1.2), a provisional response stops that, and the failure that
// ends it is ACKed with the INVITE's branch and the tag the member added
// (§17.1.1.3).
func TestMemberInviteTransaction(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	// member_timeout 5 s: the leg rings past 3.5 s, when a fourth INVITE
	// would come were Timer A still running after the 180.
	conf := strings.NewReplacer("timeout: 3s", "timeout: 6s", "member_timeout: 2s", "member_timeout: 5s").
		Replace(groupConfig("all", m.uri("m")))
	startServer(t, conf, caller, m)

	caller.invite("600")
	var at []time.Time
	var first, inv *sipmsg.Request
	for range 3 {
		inv = m.request(sipmsg.INVITE, wait)
		at = append(at, time.Now())
		if first == nil {
			first = inv
		}
	}
	if b := viaBranch(inv); b == "" || b != viaBranch(first) {
		t.Fatalf("retransmitted INVITE has branch %q, want the first one's", b)
	}
	if inv.String() != first.String() {
		t.Errorf("retransmitted INVITE differs from the first:\n%s\nwant\n%s", inv, first)
	}
	for i, want := range []time.Duration{sipmsg.T1, 2 * sipmsg.T1} {
		if gap := at[i+1].Sub(at[i]); gap < want-200*time.Millisecond || gap > want+300*time.Millisecond {
			t.Errorf("INVITE %d came %v after the one before, want %v (Timer A)", i+2, gap, want)
		}
	}

	m.reply(inv, 180, "m1", "")
	// The group retries the member as a new leg (a new Call-ID) once
	// this one has ended; only this leg's INVITEs count.
	sameLeg := func(msg sipmsg.Message) bool {
		r, ok := msg.(*sipmsg.Request)
		return ok && r.Method == sipmsg.INVITE && r.CallID().Value() == first.CallID().Value()
	}
	m.quiet("INVITE of the first leg after its 180", sameLeg, time.Until(at[0].Add(4500*time.Millisecond)))
	cancel := m.request(sipmsg.CANCEL, 2*time.Second)
	m.reply(cancel, 200, "m1", "")
	m.reply(inv, 487, "m1", "")
	ack := m.request(sipmsg.ACK, wait)
	if viaBranch(ack) != viaBranch(inv) || tag(ack.To()) != "m1" || ack.CSeq().SeqNo != inv.CSeq().SeqNo {
		t.Errorf("ACK for the 487: branch %q To tag %q CSeq %d, want the INVITE's %q, m1 and %d",
			viaBranch(ack), tag(ack.To()), ack.CSeq().SeqNo, viaBranch(inv), inv.CSeq().SeqNo)
	}
	sameAsInvite(t, "ACK for the 487", ack, inv, false)
	sameAsInvite(t, "CANCEL", cancel, inv, true)
	if n := m.countOf(sameLeg); n != 3 {
		t.Errorf("member got %d INVITEs for the first leg, want 3 (none after its 180)", n)
	}
}

// A leg's CANCEL is a transaction of its own (RFC 3261 §17.1.2), also run
// by the leg: over UDP it is sent again T1 and then 2*T1 later while the
// member does not answer it (Timer E), with the INVITE's branch, and not
// again once the member has; the 487 then ends the leg.
func TestMemberCancelTransaction(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	// The group gives up at 3 s, while the leg still waits for its 487:
	// the caller's answer does not end the leg's transactions.
	conf := strings.Replace(groupConfig("all", m.uri("m")), "member_timeout: 2s", "member_timeout: 1s", 1)
	startServer(t, conf, caller, m)

	caller.invite("600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 180, "m1", "")
	thisLeg := func(msg sipmsg.Message) bool {
		r, ok := msg.(*sipmsg.Request)
		return ok && r.Method == sipmsg.CANCEL && r.CallID().Value() == inv.CallID().Value()
	}
	var at []time.Time
	var cancel *sipmsg.Request
	for range 3 { // member_timeout cancels the leg; the first two go unanswered
		cancel = m.next("CANCEL of the leg", thisLeg, 3*time.Second).(*sipmsg.Request)
		at = append(at, time.Now())
		if b, ib := viaBranch(cancel), viaBranch(inv); b != ib {
			t.Fatalf("CANCEL has branch %q, want the INVITE's %q", b, ib)
		}
	}
	for i, want := range []time.Duration{sipmsg.T1, 2 * sipmsg.T1} {
		if gap := at[i+1].Sub(at[i]); gap < want-200*time.Millisecond || gap > want+300*time.Millisecond {
			t.Errorf("CANCEL %d came %v after the one before, want %v (Timer E)", i+2, gap, want)
		}
	}
	m.reply(cancel, 200, "m1", "")
	// The next would be due 4*T1 after the third.
	m.quiet("CANCEL after the member answered it", thisLeg, 4*sipmsg.T1+500*time.Millisecond)
	m.reply(inv, 487, "m1", "")
	if ack := m.request(sipmsg.ACK, wait); viaBranch(ack) != viaBranch(inv) {
		t.Errorf("ACK for the 487 has branch %q, want the INVITE's", viaBranch(ack))
	}
	if n := m.countOf(thisLeg); n != 3 {
		t.Errorf("member got %d CANCELs for the leg, want 3", n)
	}
}

// sameAsInvite checks what RFC 3261 wants req to share with the INVITE it
// cancels (§9.1) or ACKs after a failure (§17.1.1.3): the Request-URI, the
// top Via exactly, From, Call-ID and the CSeq number, and for a CANCEL the
// To (an ACK's has the tag of the response).
func sameAsInvite(t *testing.T, what string, req, inv *sipmsg.Request, sameTo bool) {
	t.Helper()
	for _, c := range []struct{ field, got, want string }{
		{"Request-URI", req.Recipient.String(), inv.Recipient.String()},
		{"Via", req.Via().Value(), inv.Via().Value()},
		{"From", req.From().Value(), inv.From().Value()},
		{"Call-ID", req.CallID().Value(), inv.CallID().Value()},
		{"CSeq number", strconv.Itoa(int(req.CSeq().SeqNo)), strconv.Itoa(int(inv.CSeq().SeqNo))},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s %q, want the INVITE's %q", what, c.field, c.got, c.want)
		}
	}
	if sameTo && req.To().Value() != inv.To().Value() {
		t.Errorf("%s: To %q, want the INVITE's %q", what, req.To().Value(), inv.To().Value())
	}
}
