package sip

import (
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
	branch := func(r *sipmsg.Request) string { b, _ := r.Via().Params.Get("branch"); return b }
	if b := branch(inv); b == "" || b != branch(first) {
		t.Fatalf("retransmitted INVITE has branch %q, want the first one's", b)
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
	if branch(ack) != branch(inv) || tag(ack.To()) != "m1" || ack.CSeq().SeqNo != inv.CSeq().SeqNo {
		t.Errorf("ACK for the 487: branch %q To tag %q CSeq %d, want the INVITE's %q, m1 and %d",
			branch(ack), tag(ack.To()), ack.CSeq().SeqNo, branch(inv), inv.CSeq().SeqNo)
	}
	if n := m.countOf(sameLeg); n != 3 {
		t.Errorf("member got %d INVITEs for the first leg, want 3 (none after its 180)", n)
	}
}
