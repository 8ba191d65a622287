//go:build unix

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

// callCases each run once over UDP and once over TCP (members, caller and
// the member URIs all use that transport), each with its own daemon.
// Timeouts are short to keep the suite fast; timing checks are loose
// because the machine may be busy with other cases.
var callCases = []struct {
	name string
	run  func(e *env)
}{
	{"parallel_first_answer_wins", parallelFirstAnswerWins},
	{"answered_elsewhere_off_no_reason", answeredElsewhereOff},
	{"linear_ring_out_then_next", linearRingOutThenNext},
	{"linear_busy_ends_try_at_once", linearBusyEndsTry},
	{"all_busy_486", allBusy486},
	{"group_timeout_480", groupTimeout480},
	{"noanswer_uri_voicemail", noanswerURI},
	{"noanswer_group_fallback", noanswerGroup},
	{"caller_cancel_while_ringing", callerCancel},
	{"unknown_number_404", unknownNumber404},
	{"two_members_answer_at_once", twoAnswerAtOnce},
	{"redirect_302_followed", redirect302},
	{"reinvite_after_answer", reinviteAfterAnswer},
	{"member_bye_reaches_caller", memberBye},
	{"non_trunk_source_403", nonTrunk403},
	{"options_200", options200},
}

func TestCalls(t *testing.T) {
	needDaemon(t)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			for _, c := range callCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					e := newEnv(t, tr)
					c.run(e)
					e.done()
				})
			}
		})
	}
}

func sales(strategy string, timeout, memberTimeout time.Duration, members ...*sipp) group {
	return group{name: "sales", ext: "600", strategy: strategy, timeout: timeout, memberTimeout: memberTimeout, members: uris(members...)}
}

// An `all` group of three: the first to answer wins, the two still ringing
// get CANCEL with Reason "Call completed elsewhere".
func parallelFirstAnswerWins(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_answer.xml", 1, 300*ms, nil)
	m2 := e.member("m2", "uas_ring_cancel_reason.xml", 1, 0, nil)
	m3 := e.member("m3", "uas_ring_cancel_reason.xml", 1, 0, nil)
	e.daemon(sales("all", 4*time.Second, 3*time.Second, m1, m2, m3))
	c := e.call("caller", "uac_answer.xml", "600", 300*ms)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	oneRinging(t, cm)
	answeredWith(t, cm, m1)
	for _, m := range []*sipp{m2, m3} {
		rs := cancelReasons(m.messages(t))
		if len(rs) != 1 || !isElsewhere(rs[0]) {
			t.Errorf("member %s got CANCELs with Reason %q, want one with SIP;cause=200;text=\"Call completed elsewhere\"", m.spec.name, rs)
		}
	}
	if n := len(requests(received(m1.messages(t)), "CANCEL")); n != 0 {
		t.Errorf("the winner got %d CANCELs", n)
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	if r.AnsweredBy != key(m1) {
		t.Errorf("CDR answered_by %q, want %q", r.AnsweredBy, key(m1))
	}
	if !strings.Contains(r.AnsweredURI, fmt.Sprintf("@127.0.0.1:%d", m1.port)) {
		t.Errorf("CDR answered_uri %q, want m1's URI", r.AnsweredURI)
	}
	if r.Group != "sales" || !slices.Equal(r.Groups, []string{"sales"}) {
		t.Errorf("CDR group %q groups %v, want sales [sales]", r.Group, r.Groups)
	}
	expectLegs(t, r, map[string]int{key(m1): 200, key(m2): 487, key(m3): 487})
	for _, l := range r.Legs {
		if l.Group != "sales" || l.URI == "" {
			t.Errorf("CDR leg %d: group %q uri %q, want sales and the member URI", l.Leg, l.Group, l.URI)
		}
	}
	// all three rang at once: the legs start together
	if len(r.Legs) == 3 {
		first, last := r.Legs[0].Start, r.Legs[0].Start
		for _, l := range r.Legs {
			first, last = minTime(first, l.Start), maxTime(last, l.Start)
		}
		within(t, "starting the three legs of an `all` group", last.Sub(first), 0, 500*ms)
	}
}

// With answered_elsewhere: false the losing legs are still CANCELled, but
// without the RFC 3326 Reason (SPEC step 6 and the example config).
func answeredElsewhereOff(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_answer.xml", 1, 300*ms, nil)
	m2 := e.member("m2", "uas_ring_cancel.xml", 1, 0, nil)
	g := sales("all", 4*time.Second, 3*time.Second, m1, m2)
	g.extra = []string{"answered_elsewhere: false"}
	e.daemon(g)
	c := e.call("caller", "uac_answer.xml", "600", 300*ms)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	answeredWith(t, cm, m1)
	rs := cancelReasons(m2.messages(t))
	if len(rs) != 1 {
		t.Errorf("the losing member got %d CANCELs, want 1", len(rs))
	}
	for _, r := range rs {
		if isElsewhere(r) {
			t.Errorf("answered_elsewhere is false but the CANCEL carries Reason %q", r)
		}
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	expectLegs(t, r, map[string]int{key(m1): 200, key(m2): 487})
}

// Linear: member 1 rings its whole member_timeout and is cancelled (not
// "completed elsewhere"), then member 2 rings and answers.
func linearRingOutThenNext(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_ring_cancel.xml", 1, 0, nil)
	m2 := e.member("m2", "uas_answer.xml", 1, 200*ms, nil)
	e.daemon(sales("linear", 6*time.Second, time.Second, m1, m2))
	c := e.call("caller", "uac_answer.xml", "600", 300*ms)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	oneRinging(t, cm)
	answeredWith(t, cm, m2)
	m1m, m2m := m1.messages(t), m2.messages(t)
	inv1, can1, inv2 := at(m1m, isReq("INVITE")), at(m1m, isReq("CANCEL")), at(m2m, isReq("INVITE"))
	if !inv1.IsZero() && !can1.IsZero() {
		within(t, "member 1 ringing (member_timeout 1s)", can1.Sub(inv1), 800*ms, 2*time.Second)
	}
	if !inv1.IsZero() && !inv2.IsZero() {
		within(t, "member 2's INVITE after member 1's", inv2.Sub(inv1), 900*ms, 2500*ms)
	}
	for _, rs := range cancelReasons(m1m) {
		if isElsewhere(rs) {
			t.Errorf("a ring-timeout CANCEL says %q; nothing was completed elsewhere", rs)
		}
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	if r.AnsweredBy != key(m2) {
		t.Errorf("CDR answered_by %q, want %q", r.AnsweredBy, key(m2))
	}
	expectLegs(t, r, map[string]int{key(m1): 487, key(m2): 200})
	if l1, l2 := legsOf(r, key(m1)), legsOf(r, key(m2)); len(l1) == 1 && len(l2) == 1 {
		within(t, "CDR: leg 2 start after leg 1 start", l2[0].Start.Sub(l1[0].Start), 900*ms, 2500*ms)
		within(t, "CDR: leg 1 ring_ms", time.Duration(l1[0].RingMS)*ms, 800*ms, 2*time.Second)
	}
}

// Linear: member 1 answers 486 after 200 ms, which ends its try at once:
// member 2 rings long before member 1's 2 s member_timeout would have run
// out, and member 1 is never cancelled.
func linearBusyEndsTry(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_busy.xml", 1, 200*ms, nil)
	m2 := e.member("m2", "uas_answer.xml", 1, 200*ms, nil)
	e.daemon(sales("linear", 8*time.Second, 2*time.Second, m1, m2))
	c := e.call("caller", "uac_answer.xml", "600", 300*ms)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	oneRinging(t, cm)
	answeredWith(t, cm, m2)
	m1m, m2m := m1.messages(t), m2.messages(t)
	if n := len(requests(received(m1m), "CANCEL")); n != 0 {
		t.Errorf("the busy member got %d CANCELs", n)
	}
	if inv1, inv2 := at(m1m, isReq("INVITE")), at(m2m, isReq("INVITE")); !inv1.IsZero() && !inv2.IsZero() {
		within(t, "member 2's INVITE after member 1's (486 after 200ms, member_timeout 2s)", inv2.Sub(inv1), 150*ms, 1200*ms)
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	expectLegs(t, r, map[string]int{key(m1): 486, key(m2): 200})
	if l1, l2 := legsOf(r, key(m1)), legsOf(r, key(m2)); len(l1) == 1 && len(l2) == 1 {
		within(t, "CDR: leg 2 start after leg 1 start", l2[0].Start.Sub(l1[0].Start), 150*ms, 1200*ms)
	}
}

// Every member busy: the default fallback.busy {reject: 486}, at once.
func allBusy486(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_busy.xml", 1, 100*ms, nil)
	m2 := e.member("m2", "uas_busy.xml", 1, 100*ms, nil)
	e.daemon(sales("all", 5*time.Second, 4*time.Second, m1, m2))
	c := e.call("caller", "uac_486.xml", "600", 0)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	inv, busy := at(cm, func(m sipMsg) bool { return m.sent && m.method() == "INVITE" }), at(cm, func(m sipMsg) bool { return !m.sent && m.code() == 486 })
	if !inv.IsZero() && !busy.IsZero() {
		within(t, "the caller's 486 after its INVITE (both busy after 100ms)", busy.Sub(inv), 50*ms, 1500*ms)
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "busy", 486)
	expectLegs(t, r, map[string]int{key(m1): 486, key(m2): 486})
}

// The group timeout cancels what rings and the default fallback.noanswer
// {reject: 480} answers the caller.
func groupTimeout480(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_ring_cancel.xml", 1, 0, nil)
	m2 := e.member("m2", "uas_ring_cancel.xml", 1, 0, nil)
	e.daemon(sales("all", 1500*ms, 5*time.Second, m1, m2))
	c := e.call("caller", "uac_480.xml", "600", 0)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	oneRinging(t, cm)
	inv, fin := at(cm, func(m sipMsg) bool { return m.sent && m.method() == "INVITE" }), at(cm, func(m sipMsg) bool { return !m.sent && m.code() == 480 })
	if !inv.IsZero() && !fin.IsZero() {
		within(t, "the caller's 480 after its INVITE (group timeout 1.5s)", fin.Sub(inv), 1300*ms, 3*time.Second)
	}
	for _, m := range []*sipp{m1, m2} {
		mm := m.messages(t)
		if inv, can := at(mm, isReq("INVITE")), at(mm, isReq("CANCEL")); !inv.IsZero() && !can.IsZero() {
			within(t, "member "+m.spec.name+" ringing until the group timeout", can.Sub(inv), 1300*ms, 3*time.Second)
		}
		for _, rs := range cancelReasons(mm) {
			if isElsewhere(rs) {
				t.Errorf("member %s: a group-timeout CANCEL says %q", m.spec.name, rs)
			}
		}
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "noanswer", 480)
	expectLegs(t, r, map[string]int{key(m1): 487, key(m2): 487})
}

// fallback.noanswer {uri: ...} rings the voicemail after the group timeout.
func noanswerURI(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_ring_cancel.xml", 1, 0, nil)
	vm := e.member("vm", "uas_answer.xml", 1, 100*ms, nil)
	g := sales("all", time.Second, 5*time.Second, m1)
	g.fallback = map[string]string{"noanswer": fmt.Sprintf("{uri: %q}", vm.uri("vm"))}
	e.daemon(g)
	c := e.call("caller", "uac_answer.xml", "600", 300*ms)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	oneRinging(t, cm)
	answeredWith(t, cm, vm)
	if can, vinv := at(m1.messages(t), isReq("CANCEL")), at(vm.messages(t), isReq("INVITE")); !can.IsZero() && !vinv.IsZero() && vinv.Before(can.Add(-100*ms)) {
		t.Errorf("voicemail rang at %v, before the group timeout cancelled m1 at %v", vinv, can)
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	if want := "noanswer:uri:" + vm.uri("vm"); r.Fallback != want {
		t.Errorf("CDR fallback %q, want %q", r.Fallback, want)
	}
	if !strings.Contains(r.AnsweredURI, fmt.Sprintf("@127.0.0.1:%d", vm.port)) {
		t.Errorf("CDR answered_uri %q, want the voicemail URI", r.AnsweredURI)
	}
	if len(r.Legs) != 2 || len(legsOf(r, key(m1))) != 1 {
		t.Errorf("CDR legs %+v, want m1 then the voicemail", r.Legs)
	}
}

// fallback.noanswer {group: overflow} enters overflow as if dialled there.
func noanswerGroup(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_ring_cancel.xml", 1, 0, nil)
	m2 := e.member("m2", "uas_answer.xml", 1, 100*ms, nil)
	g := sales("all", time.Second, 5*time.Second, m1)
	g.fallback = map[string]string{"noanswer": "{group: overflow}"}
	e.daemon(g, group{name: "overflow", ext: "601", strategy: "all", timeout: 4 * time.Second, memberTimeout: 3 * time.Second, members: uris(m2)})
	c := e.call("caller", "uac_answer.xml", "600", 300*ms)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	oneRinging(t, cm)
	answeredWith(t, cm, m2)
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	if r.Group != "sales" || !slices.Equal(r.Groups, []string{"sales", "overflow"}) {
		t.Errorf("CDR group %q groups %v, want sales [sales overflow]", r.Group, r.Groups)
	}
	if r.Fallback != "noanswer:group:overflow" {
		t.Errorf("CDR fallback %q, want noanswer:group:overflow", r.Fallback)
	}
	if r.AnsweredBy != key(m2) {
		t.Errorf("CDR answered_by %q, want %q", r.AnsweredBy, key(m2))
	}
	expectLegs(t, r, map[string]int{key(m1): 487, key(m2): 200})
	for _, l := range r.Legs {
		if want := map[string]string{key(m1): "sales", key(m2): "overflow"}[l.Member]; l.Group != want {
			t.Errorf("CDR leg %d (%s) group %q, want %q", l.Leg, l.Member, l.Group, want)
		}
	}
}

// The caller cancels while three members ring: all three get CANCEL, the
// caller gets 200 for the CANCEL and 487 for the INVITE.
func callerCancel(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_ring_cancel.xml", 1, 0, nil)
	m2 := e.member("m2", "uas_ring_cancel.xml", 1, 0, nil)
	m3 := e.member("m3", "uas_ring_cancel.xml", 1, 0, nil)
	e.daemon(sales("all", 6*time.Second, 5*time.Second, m1, m2, m3))
	c := e.call("caller", "uac_cancel.xml", "600", 500*ms)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	oneRinging(t, cm)
	if n := len(responses(received(cm), 200, "CANCEL")); n < 1 {
		t.Error("caller got no 200 for its CANCEL")
	}
	if n := len(responses(received(cm), 487, "INVITE")); n < 1 {
		t.Error("caller got no 487 for its INVITE")
	}
	ccan := at(cm, func(m sipMsg) bool { return m.sent && m.method() == "CANCEL" })
	for _, m := range []*sipp{m1, m2, m3} {
		mm := m.messages(t)
		if n := len(requests(received(mm), "CANCEL")); n != 1 {
			t.Errorf("member %s got %d CANCELs, want 1", m.spec.name, n)
		}
		if can := at(mm, isReq("CANCEL")); !can.IsZero() && !ccan.IsZero() {
			within(t, "member "+m.spec.name+"'s CANCEL after the caller's", can.Sub(ccan), -5*ms, time.Second)
		}
		for _, rs := range cancelReasons(mm) {
			if isElsewhere(rs) {
				t.Errorf("member %s: the caller gave up but the CANCEL says %q", m.spec.name, rs)
			}
		}
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "cancelled", 487)
	expectLegs(t, r, map[string]int{key(m1): 487, key(m2): 487, key(m3): 487})
}

// A number no group has: 404, and still one CDR line.
func unknownNumber404(e *env) {
	t := e.t
	// a group whose member is never started: ringing it would be a bug the
	// 404 check catches anyway
	e.daemon(group{name: "sales", ext: "600", strategy: "all", timeout: 2 * time.Second, memberTimeout: time.Second,
		members: []string{"sip:nobody@127.0.0.1:9"}})
	c := e.call("caller", "uac_404.xml", "999", 0)
	e.finish()

	cm := c.messages(t)
	if n := len(responses(received(cm), 180, "INVITE")); n != 0 {
		t.Errorf("caller got %d 180 for an unknown number", n)
	}
	r := e.oneCDR(c, "999")
	expectCDR(t, r, "rejected", 404)
	if len(r.Legs) != 0 {
		t.Errorf("CDR of an unknown number lists legs %+v", r.Legs)
	}
}

// Two members answer at once (200 without 1xx, so neither can be
// cancelled): one call; the loser's 2xx is ACKed and BYEd at once; the
// CDR names one winner.
func twoAnswerAtOnce(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_answer_now.xml", 1, 0, nil)
	m2 := e.member("m2", "uas_answer_now.xml", 1, 0, nil)
	e.daemon(sales("all", 4*time.Second, 3*time.Second, m1, m2))
	c := e.call("caller", "uac_answer.xml", "600", 1500*ms)
	e.finish()

	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	var winner, loser *sipp
	switch r.AnsweredBy {
	case key(m1):
		winner, loser = m1, m2
	case key(m2):
		winner, loser = m2, m1
	default:
		t.Fatalf("CDR answered_by %q, want one of %q %q", r.AnsweredBy, key(m1), key(m2))
	}
	cm := c.messages(t)
	tryingAtOnce(t, cm)
	answeredWith(t, cm, winner)
	lm := loser.messages(t)
	ack, bye := at(lm, isReq("ACK")), at(lm, isReq("BYE"))
	if ack.IsZero() || bye.IsZero() {
		t.Errorf("loser %s: ACK at %v, BYE at %v: want both", loser.spec.name, ack, bye)
	} else {
		// the caller talks 1.5s; the loser's BYE must come at once, not
		// when the call ends
		within(t, "loser's BYE after its ACK", bye.Sub(ack), 0, time.Second)
	}
	if len(r.Legs) != 2 || len(legsOf(r, key(winner))) != 1 || legsOf(r, key(winner))[0].Code != 200 {
		t.Errorf("CDR legs %+v, want two with the winner's code 200", r.Legs)
	}
}

// A member's 302 is followed to its Contact (a second SIPp) within that
// member's time.
func redirect302(e *env) {
	t := e.t
	m2 := newSipp(t, e.dir, sippSpec{name: "m2", scenario: "uas_answer.xml", transport: e.tr, pause: 200 * ms})
	m1 := e.member("m1", "uas_redirect.xml", 1, 0, map[string]string{"redirect": m2.uri("m2")})
	e.members = append(e.members, m2)
	e.daemon(sales("linear", 6*time.Second, 3*time.Second, m1))
	c := e.call("caller", "uac_answer.xml", "600", 300*ms)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	answeredWith(t, cm, m2)
	inv := initialInvites(received(m2.messages(t)))
	if len(inv) != 1 || !strings.Contains(inv[0].requestURI(), fmt.Sprintf("m2@127.0.0.1:%d", m2.port)) {
		t.Errorf("m2 got INVITEs %v, want one to the 302's Contact %s", firstLines(inv), m2.uri("m2"))
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	if !strings.Contains(r.AnsweredURI, fmt.Sprintf("@127.0.0.1:%d", m2.port)) {
		t.Errorf("CDR answered_uri %q, want the redirect target %s", r.AnsweredURI, m2.uri("m2"))
	}
	codes := []int{}
	for _, l := range r.Legs {
		codes = append(codes, l.Code)
	}
	if !slices.Equal(codes, []int{302, 200}) {
		t.Errorf("CDR leg codes %v, want [302 200] (the member, then its Contact)", codes)
	}
}

// After answer, the caller's re-INVITE (hold) reaches the member with its
// SDP and the member's answer comes back (both checked by the scenarios).
func reinviteAfterAnswer(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_reinvite.xml", 1, 0, nil)
	e.daemon(sales("all", 4*time.Second, 3*time.Second, m1))
	c := e.call("caller", "uac_reinvite.xml", "600", 300*ms)
	e.finish()

	mm := m1.messages(t)
	invs := requests(received(mm), "INVITE")
	if len(invs) < 2 {
		t.Fatalf("member got %d INVITEs, want the initial one and the re-INVITE", len(invs))
	}
	if invs[1].callID() != invs[0].callID() || invs[1].toTag() == "" {
		t.Errorf("re-INVITE Call-ID %q To-tag %q: want the leg's dialog (%q, with the member's tag)", invs[1].callID(), invs[1].toTag(), invs[0].callID())
	}
	n0, _ := invs[0].cseq()
	if n1, _ := invs[1].cseq(); n1 <= n0 {
		t.Errorf("re-INVITE CSeq %d not above the INVITE's %d", n1, n0)
	}
	tryingAtOnce(t, c.messages(t))
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
}

// The member hangs up: its BYE reaches the caller.
func memberBye(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_bye.xml", 1, 500*ms, nil)
	e.daemon(sales("all", 4*time.Second, 3*time.Second, m1))
	c := e.call("caller", "uac_wait_bye.xml", "600", 0)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	byes := requests(received(cm), "BYE")
	if len(byes) == 0 {
		t.Fatal("caller got no BYE")
	}
	ok := responses(received(cm), 200, "INVITE")
	if len(ok) > 0 {
		if byes[0].callID() != callerCallID(t, c) || byes[0].fromTag() != ok[0].toTag() {
			t.Errorf("BYE to the caller: Call-ID %q From tag %q, want the caller's dialog (%q, tag %q)",
				byes[0].callID(), byes[0].fromTag(), callerCallID(t, c), ok[0].toTag())
		}
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	if r.Answer != nil {
		within(t, "CDR talk time (member hangs up after 500ms)", r.End.Sub(*r.Answer), 300*ms, 3*time.Second)
	}
}

// A caller whose address is not a trunk (and has no credentials) must not
// reach the group.
func nonTrunk403(e *env) {
	t := e.t
	e.daemon(group{name: "sales", ext: "600", strategy: "all", timeout: 2 * time.Second, memberTimeout: time.Second,
		members: []string{"sip:nobody@127.0.0.1:9"}})
	c := e.call("caller", "uac_403.xml", "600", 0, func(s *sippSpec) { s.ip = "127.0.0.2" })
	e.finish()

	cm := c.messages(t)
	if n := len(responses(received(cm), 407, "INVITE")); n > 0 {
		t.Logf("ringroute challenged the non-trunk source with 407 (SPEC) and refused the wrong credentials with 403")
	} else {
		t.Logf("ringroute refused the non-trunk source with 403 at once (no challenge)")
	}
	recs := e.d.cdrs(t, 1)
	if len(recs) == 1 {
		if recs[0].Code != 403 || recs[0].Outcome != "rejected" {
			t.Errorf("CDR outcome %q code %d, want rejected 403", recs[0].Outcome, recs[0].Code)
		}
		if recs[0].CallID != callerCallID(t, c) {
			t.Errorf("CDR call_id %q, want %q", recs[0].CallID, callerCallID(t, c))
		}
	}
}

// OPTIONS outside a dialog: 200, and no CDR line (it is not a call).
func options200(e *env) {
	t := e.t
	e.daemon(group{name: "sales", ext: "600", strategy: "all", timeout: 2 * time.Second, memberTimeout: time.Second,
		members: []string{"sip:nobody@127.0.0.1:9"}})
	e.call("caller", "uac_options.xml", "600", 0)
	e.finish()
	e.d.cdrs(t, 0)
}

func firstLines(msgs []sipMsg) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.first)
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
