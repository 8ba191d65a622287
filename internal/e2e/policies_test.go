//go:build unix

package e2e

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// policyCases are issue 5's sipp end-to-end cases: strategies with memory
// or timing of their own (memorized_round_robin, progressive), the group
// policies (max_calls, permissions, schedule) and nested groups. Like
// callCases, each runs over UDP and over TCP with its own daemon.
var policyCases = []struct {
	name string
	run  func(e *env)
}{
	{"round_robin_rotates_1_2_3_1", roundRobinRotates},
	{"max_calls_1_second_call_486", maxCallsCongestion},
	{"permissions_deny_403_allow_answered", permissionsDenyAllow},
	{"schedule_closed_fallback", scheduleClosed},
	{"progressive_1_then_1_and_2", progressiveRing},
	{"nested_group_by_its_strategy", nestedGroup},
}

func TestPolicies(t *testing.T) {
	needDaemon(t)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			for _, c := range policyCases {
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

// memorized_round_robin, three members that answer at once, four calls in a
// row (one at a time: -l 1): each call starts after the member who answered
// the one before, so the answers go m1 m2 m3 m1, and each call rings only
// the member whose turn it is.
func roundRobinRotates(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_answer.xml", 2, 100*ms, nil)
	m2 := e.member("m2", "uas_answer.xml", 1, 100*ms, nil)
	m3 := e.member("m3", "uas_answer.xml", 1, 100*ms, nil)
	e.daemon(sales("memorized_round_robin", 7*time.Second, 2*time.Second, m1, m2, m3))
	c := e.call("caller", "uac_answer.xml", "600", 200*ms, func(s *sippSpec) {
		s.calls = 4
		s.extra = append(s.extra, "-l", "1") // one call at a time: each starts when the last has ended
	})
	e.finish()

	want := []*sipp{m1, m2, m3, m1}
	// The wire: the caller's four INVITEs, and for each the member that got
	// the first leg INVITE after it.
	calls := initialInvites(sentMsgs(c.messages(t)))
	calls = dedupCalls(calls)
	if len(calls) != 4 {
		t.Fatalf("caller sent %d calls, want 4", len(calls))
	}
	legs := legInvites(t, m1, m2, m3)
	var rang []string
	for i, call := range calls {
		// Each SIPp stamps its log from its own reading of the clock, so a
		// leg INVITE may be logged a little before the caller's INVITE
		// that caused it; the calls are 400 ms apart.
		const skew = 50 * ms
		start, end := call.at.Add(-skew), time.Time{}
		if i+1 < len(calls) {
			end = calls[i+1].at.Add(-skew)
		}
		first := ""
		n := 0
		for _, l := range legs {
			if l.at.Before(start) || (!end.IsZero() && !l.at.Before(end)) {
				continue
			}
			if first == "" {
				first = l.member
			}
			n++
		}
		rang = append(rang, first)
		if n != 1 {
			t.Errorf("call %d rang %d legs, want 1 (the member whose turn it is answers at once)", i+1, n)
		}
	}
	if w := sippNames(want); !slices.Equal(rang, w) {
		t.Errorf("first leg INVITE of calls 1-4 went to %v, want %v", rang, w)
	}
	// The CDRs: who answered each call, in the order the calls started.
	recs := e.d.cdrs(t, 4)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Start.Before(recs[j].Start) })
	var answered []string
	for i, r := range recs {
		expectCDR(t, r, "answered", 200)
		if i < len(calls) && r.CallID != calls[i].callID() {
			t.Errorf("CDR %d call_id %q, want call %d's %q", i+1, r.CallID, i+1, calls[i].callID())
		}
		answered = append(answered, r.AnsweredBy)
		noFallbackNotes(t, r)
	}
	var wantKeys []string
	for _, m := range want {
		wantKeys = append(wantKeys, key(m))
	}
	if !slices.Equal(answered, wantKeys) {
		t.Errorf("CDR answered_by of calls 1-4 = %v, want %v", answered, wantKeys)
	}
}

// max_calls: 1. The first call rings m1 (which answers after 0.8 s, then
// talks 1 s); a second call while the first holds the slot is refused 486
// by the default fallback.congestion without ringing anyone; a third call
// after the first has hung up gets the slot back and is answered.
func maxCallsCongestion(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_answer.xml", 2, 800*ms, nil)
	g := sales("all", 5*time.Second, 4*time.Second, m1)
	g.extra = []string{"max_calls: 1"}
	e.daemon(g)
	c1 := e.call("c1", "uac_answer.xml", "600", time.Second)
	waitMsg(t, m1, "the first call's INVITE", isReq("INVITE"))
	c2 := e.call("c2", "uac_486.xml", "600", 0)
	if code, ok := c2.wait(10 * time.Second); !ok || code != 0 {
		t.Errorf("second caller: exit %d (ended %v), want 486 and exit 0", code, ok)
	}
	if code, ok := c1.wait(10 * time.Second); !ok || code != 0 {
		t.Errorf("first caller: exit %d (ended %v), want answered and exit 0", code, ok)
	}
	c3 := e.call("c3", "uac_answer.xml", "600", 200*ms)
	e.finish()

	c2m, m1m := c2.messages(t), m1.messages(t)
	tryingAtOnce(t, c2m)
	if n := len(responses(received(c2m), 180, "INVITE")); n != 0 {
		t.Errorf("the refused caller got %d 180 Ringing, want none (nobody may ring)", n)
	}
	inv2 := at(c2m, func(m sipMsg) bool { return m.sent && m.method() == "INVITE" })
	busy := at(c2m, func(m sipMsg) bool { return !m.sent && m.code() == 486 })
	bye1 := at(c1.messages(t), func(m sipMsg) bool { return m.sent && m.method() == "BYE" })
	if !inv2.IsZero() && !busy.IsZero() {
		within(t, "the second caller's 486 after its INVITE", busy.Sub(inv2), 0, time.Second)
	}
	if busy.IsZero() || bye1.IsZero() || !busy.Before(bye1) {
		t.Errorf("the second caller's 486 at %v, the first caller's BYE at %v: want the 486 while the first call still rings or talks",
			busy.Format("15:04:05.000"), bye1.Format("15:04:05.000"))
	}
	if n := len(dedupCalls(initialInvites(received(m1m)))); n != 2 {
		t.Errorf("m1 got %d calls, want 2 (the first and the third; the second must not ring)", n)
	}
	answeredWith(t, c1.messages(t), m1)
	answeredWith(t, c3.messages(t), m1)

	byID := cdrsByCall(t, e.d.cdrs(t, 3))
	if r, ok := byID[callerCallID(t, c2)]; ok {
		expectCDR(t, r, "congestion", 486)
		if len(r.Legs) != 0 {
			t.Errorf("CDR of the refused call lists legs %+v, want none", r.Legs)
		}
		if r.Group != "sales" || r.Fallback != "congestion:reject:486" {
			t.Errorf("CDR of the refused call: group %q fallback %q, want sales and congestion:reject:486", r.Group, r.Fallback)
		}
		if !anyContains(r.Notes, "max_calls 1") {
			t.Errorf("CDR notes %q do not say max_calls refused the call", r.Notes)
		}
	} else {
		t.Errorf("no CDR for the second call %s", callerCallID(t, c2))
	}
	for _, c := range []*sipp{c1, c3} {
		if r, ok := byID[callerCallID(t, c)]; ok {
			expectCDR(t, r, "answered", 200)
			expectLegs(t, r, map[string]int{key(m1): 200})
		} else {
			t.Errorf("no CDR for %s's call", c.spec.name)
		}
	}
}

// permissions: globs on the caller's From URI, and deny wins over allow.
// The denied caller (From sip:intruder@..., from the trunk; allowed and
// denied) gets 403 and rings nobody; then an allowed caller
// (sip:caller@...) is answered by m1, m1's only call.
func permissionsDenyAllow(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_answer.xml", 1, 100*ms, nil)
	g := sales("all", 4*time.Second, 3*time.Second, m1)
	g.extra = []string{`permissions: {allow: ["sip:caller@*", "sip:intruder@*"], deny: ["sip:intruder@*"]}`}
	e.daemon(g)
	denied := e.call("denied", "uac_403.xml", "600", 0)
	if code, ok := denied.wait(10 * time.Second); !ok || code != 0 {
		t.Errorf("denied caller: exit %d (ended %v), want 403 and exit 0", code, ok)
	}
	allowed := e.call("caller", "uac_answer.xml", "600", 200*ms)
	e.finish()

	dm := denied.messages(t)
	tryingAtOnce(t, dm)
	if n := len(responses(received(dm), 407, "INVITE")); n != 0 {
		t.Errorf("the trunk caller got %d 407 challenges; a trunk is trusted and only permissions may refuse it", n)
	}
	if n := len(responses(received(dm), 180, "INVITE")); n != 0 {
		t.Errorf("the denied caller got %d 180 Ringing, want none", n)
	}
	if n := len(responses(received(dm), 403, "INVITE")); n == 0 {
		t.Error("the denied caller got no 403")
	}
	invs := dedupCalls(initialInvites(received(m1.messages(t))))
	if len(invs) != 1 {
		t.Errorf("m1 got %d calls, want 1 (the allowed caller's)", len(invs))
	}
	for _, inv := range invs {
		if strings.Contains(inv.header("from"), "intruder") {
			t.Errorf("m1 was rung for the denied caller: From %q", inv.header("from"))
		}
	}
	answeredWith(t, allowed.messages(t), m1)

	byID := cdrsByCall(t, e.d.cdrs(t, 2))
	if r, ok := byID[callerCallID(t, denied)]; ok {
		expectCDR(t, r, "denied", 403)
		if len(r.Legs) != 0 {
			t.Errorf("CDR of the denied call lists legs %+v, want none", r.Legs)
		}
		if !strings.Contains(r.Caller, "sip:intruder@127.0.0.1") {
			t.Errorf("CDR caller %q, want the denied From URI sip:intruder@127.0.0.1:...", r.Caller)
		}
		if r.Fallback != "" {
			t.Errorf("CDR fallback %q; a denied call takes no fallback (403)", r.Fallback)
		}
		if !anyContains(r.Notes, "sip:intruder@*") {
			t.Errorf("CDR notes %q do not name the deny pattern that matched", r.Notes)
		}
	} else {
		t.Errorf("no CDR for the denied call %s", callerCallID(t, denied))
	}
	if r, ok := byID[callerCallID(t, allowed)]; ok {
		expectCDR(t, r, "answered", 200)
		expectLegs(t, r, map[string]int{key(m1): 200})
	} else {
		t.Errorf("no CDR for the allowed call")
	}
}

// A schedule that is closed now (open one minute a day, twelve hours from
// now, UTC) sends the call to fallback.closed without ringing the member:
// group night with the default {reject: 480} (outcome closed), group
// nightvm with {uri: vm} (the voicemail answers).
func scheduleClosed(e *env) {
	t := e.t
	idle := e.idle("m1")
	vm := e.member("vm", "uas_answer.xml", 1, 100*ms, nil)
	sched := closedNow(time.Now())
	night := group{name: "night", ext: "600", strategy: "all", timeout: 3 * time.Second, memberTimeout: 2 * time.Second,
		members: uris(idle), extra: []string{sched}}
	nightvm := group{name: "nightvm", ext: "601", strategy: "all", timeout: 3 * time.Second, memberTimeout: 2 * time.Second,
		members: uris(idle), extra: []string{sched},
		fallback: map[string]string{"closed": fmt.Sprintf("{uri: %q}", vm.uri("vm"))}}
	e.daemon(night, nightvm)
	c480 := e.call("caller", "uac_480.xml", "600", 0)
	cvm := e.call("cvm", "uac_answer.xml", "601", 200*ms)
	e.finish()
	e.expectIdle(idle)

	cm := c480.messages(t)
	tryingAtOnce(t, cm)
	if n := len(responses(received(cm), 180, "INVITE")); n != 0 {
		t.Errorf("the caller of a closed group got %d 180 Ringing, want none", n)
	}
	answeredWith(t, cvm.messages(t), vm)

	byID := cdrsByCall(t, e.d.cdrs(t, 2))
	if r, ok := byID[callerCallID(t, c480)]; ok {
		expectCDR(t, r, "closed", 480)
		if len(r.Legs) != 0 {
			t.Errorf("CDR of the closed call lists legs %+v, want none", r.Legs)
		}
		if r.Fallback != "closed:reject:480" {
			t.Errorf("CDR fallback %q, want closed:reject:480", r.Fallback)
		}
		if !anyContains(r.Notes, "closed by its schedule") {
			t.Errorf("CDR notes %q do not say the schedule closed the group", r.Notes)
		}
	} else {
		t.Errorf("no CDR for the call to night")
	}
	if r, ok := byID[callerCallID(t, cvm)]; ok {
		expectCDR(t, r, "answered", 200)
		if want := "closed:uri:" + vm.uri("vm"); r.Fallback != want {
			t.Errorf("CDR fallback %q, want %q", r.Fallback, want)
		}
		if len(r.Legs) != 1 || !strings.Contains(r.Legs[0].URI, fmt.Sprintf("@127.0.0.1:%d", vm.port)) {
			t.Errorf("CDR legs %+v, want only the closed fallback's voicemail", r.Legs)
		}
	} else {
		t.Errorf("no CDR for the call to nightvm")
	}
}

// closedNow is a schedule line that is closed at now: open one minute a
// day, twelve hours away, in UTC.
func closedNow(now time.Time) string {
	from := now.UTC().Add(12 * time.Hour).Truncate(time.Minute)
	to := from.Add(time.Minute).Format("15:04")
	if to == "00:00" {
		to = "24:00"
	}
	return fmt.Sprintf(`schedule: {timezone: UTC, open: ["mon-sun %s-%s"]}`, from.Format("15:04"), to)
}

// progressive, member_timeout 1s: m1 rings at 0, m1 and m2 from 1 s (m1
// is not cancelled and rung again, it keeps its one INVITE); m2 answers at
// about 1.2 s, well before m3's turn at 2 s; m1 is then CANCELled as answered
// elsewhere and m3 never rings.
func progressiveRing(e *env) {
	t := e.t
	m1 := e.member("m1", "uas_ring_cancel_reason.xml", 1, 0, nil)
	m2 := e.member("m2", "uas_answer.xml", 1, 200*ms, nil)
	m3 := e.idle("m3")
	e.daemon(sales("progressive", 5*time.Second, time.Second, m1, m2, m3))
	c := e.call("caller", "uac_answer.xml", "600", 200*ms)
	e.finish()
	e.expectIdle(m3)

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	oneRinging(t, cm)
	answeredWith(t, cm, m2)
	m1m, m2m := m1.messages(t), m2.messages(t)
	if n := len(initialInvites(received(m1m))); n != 1 {
		t.Errorf("m1 got %d INVITEs, want 1: it keeps ringing when m2 joins", n)
	}
	inv1, can1, inv2 := at(m1m, isReq("INVITE")), at(m1m, isReq("CANCEL")), at(m2m, isReq("INVITE"))
	ok2 := at(m2m, func(m sipMsg) bool { return m.sent && m.code() == 200 && m.cseqMethod() == "INVITE" })
	if inv1.IsZero() || inv2.IsZero() || can1.IsZero() || ok2.IsZero() {
		t.Fatalf("m1 INVITE %v CANCEL %v, m2 INVITE %v 200 %v: want all four", inv1, can1, inv2, ok2)
	}
	within(t, "m2's INVITE after m1's (member_timeout 1s)", inv2.Sub(inv1), 900*ms, 1800*ms)
	if !can1.After(inv2) {
		t.Errorf("m1 was CANCELled at %v, before m2 started ringing at %v; progressive keeps m1 ringing",
			can1.Format("15:04:05.000"), inv2.Format("15:04:05.000"))
	}
	within(t, "m1's CANCEL after m2's answer", can1.Sub(ok2), -5*ms, 500*ms)

	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	if r.AnsweredBy != key(m2) {
		t.Errorf("CDR answered_by %q, want %q", r.AnsweredBy, key(m2))
	}
	expectLegs(t, r, map[string]int{key(m1): 487, key(m2): 200})
	if l1, l2 := legsOf(r, key(m1)), legsOf(r, key(m2)); len(l1) == 1 && len(l2) == 1 {
		within(t, "CDR: m2's leg start after m1's", l2[0].Start.Sub(l1[0].Start), 900*ms, 1800*ms)
	}
	noFallbackNotes(t, r)
}

// A nested group member: sales (strategy all) rings p1 and {group: team};
// team rings by its own strategy, linear with member_timeout 1s: t1 first,
// t2 after t1 rang out (not together, as sales' all would). t2 answers;
// p1 is CANCELled as answered elsewhere.
func nestedGroup(e *env) {
	t := e.t
	p1 := e.member("p1", "uas_ring_cancel_reason.xml", 1, 0, nil)
	t1 := e.member("t1", "uas_ring_cancel.xml", 1, 0, nil)
	t2 := e.member("t2", "uas_answer.xml", 1, 100*ms, nil)
	parent := sales("all", 6*time.Second, 4*time.Second, p1)
	parent.members = append(parent.members, "{group: team}")
	team := group{name: "team", ext: "601", strategy: "linear", timeout: 5 * time.Second, memberTimeout: time.Second, members: uris(t1, t2)}
	e.daemon(parent, team)
	c := e.call("caller", "uac_answer.xml", "600", 200*ms)
	e.finish()

	cm := c.messages(t)
	tryingAtOnce(t, cm)
	oneRinging(t, cm)
	answeredWith(t, cm, t2)
	p1m, t1m, t2m := p1.messages(t), t1.messages(t), t2.messages(t)
	invP, invT1, canT1, invT2 := at(p1m, isReq("INVITE")), at(t1m, isReq("INVITE")), at(t1m, isReq("CANCEL")), at(t2m, isReq("INVITE"))
	if invP.IsZero() || invT1.IsZero() || canT1.IsZero() || invT2.IsZero() {
		t.Fatalf("p1 INVITE %v, t1 INVITE %v CANCEL %v, t2 INVITE %v: want all four", invP, invT1, canT1, invT2)
	}
	within(t, "t1's INVITE after p1's (sales rings both members at once)", invT1.Sub(invP), -300*ms, 300*ms)
	within(t, "t2's INVITE after t1's (team: linear, member_timeout 1s)", invT2.Sub(invT1), 900*ms, 1800*ms)
	within(t, "t1 ringing (team's member_timeout 1s)", canT1.Sub(invT1), 800*ms, 1800*ms)
	// t1's CANCEL and t2's INVITE go out at the same instant (ring end
	// first); the two SIPps stamp them from their own clock readings.
	if canT1.After(invT2.Add(50 * ms)) {
		t.Errorf("t1 still rang when t2 started (CANCEL %v, t2 INVITE %v): team is linear", canT1, invT2)
	}
	for _, rs := range cancelReasons(t1m) {
		if isElsewhere(rs) {
			t.Errorf("t1 rang out but its CANCEL says %q", rs)
		}
	}

	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	nk := func(m *sipp) string { return "group:team/" + key(m) }
	if r.AnsweredBy != nk(t2) {
		t.Errorf("CDR answered_by %q, want %q (the way the leg was reached)", r.AnsweredBy, nk(t2))
	}
	if r.Group != "sales" || !slices.Equal(r.Groups, []string{"sales"}) {
		t.Errorf("CDR group %q groups %v, want sales [sales] (a nested member is not a group the call entered)", r.Group, r.Groups)
	}
	noFallbackNotes(t, r)
	expectLegs(t, r, map[string]int{key(p1): 487, nk(t1): 487, nk(t2): 200})
	for _, l := range r.Legs {
		if l.Group != "sales" {
			t.Errorf("CDR leg %d (%s) group %q, want sales (legs of a nested member carry the entered group)", l.Leg, l.Member, l.Group)
		}
	}
}

// ---------------------------------------------------------------------------
// Helpers

// idle starts a SIPp member that must receive nothing: it rings until
// cancelled if anything does reach it. It is not one of e.members (finish
// would wait for a call that never comes); expectIdle checks and stops it.
func (e *env) idle(name string) *sipp {
	s := newSipp(e.t, e.dir, sippSpec{name: name, scenario: "uas_ring_cancel.xml", transport: e.tr})
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.t.Log(s.report())
		}
	})
	e.idlers = append(e.idlers, s)
	return s
}

// expectIdle fails the case for every message an idle member got.
func (e *env) expectIdle(ss ...*sipp) {
	e.t.Helper()
	for _, s := range ss {
		if msgs := s.messages(e.t); len(msgs) != 0 {
			e.t.Errorf("member %s must not ring, but got %d messages, first %q", s.spec.name, len(msgs), msgs[0].first)
		}
		s.stop(time.Second)
	}
}

// legInvite is one leg INVITE a member got (retransmissions dropped).
type legInvite struct {
	member string
	at     time.Time
}

// legInvites returns the leg INVITEs of these members, oldest first.
func legInvites(t *testing.T, ms ...*sipp) []legInvite {
	t.Helper()
	var out []legInvite
	for _, m := range ms {
		for _, inv := range dedupCalls(initialInvites(received(m.messages(t)))) {
			out = append(out, legInvite{m.spec.name, inv.at})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// dedupCalls keeps the first message of each Call-ID (an INVITE and its
// retransmissions are one call).
func dedupCalls(msgs []sipMsg) []sipMsg {
	seen := map[string]bool{}
	return selectMsgs(msgs, func(m sipMsg) bool {
		if seen[m.callID()] {
			return false
		}
		seen[m.callID()] = true
		return true
	})
}

func sippNames(ms []*sipp) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.spec.name)
	}
	return out
}

// cdrsByCall indexes CDR lines by Call-ID; two lines for one call fail.
func cdrsByCall(t *testing.T, recs []cdrRecord) map[string]cdrRecord {
	t.Helper()
	out := map[string]cdrRecord{}
	for _, r := range recs {
		if _, dup := out[r.CallID]; dup {
			t.Errorf("two CDR lines for call %s", r.CallID)
		}
		out[r.CallID] = r
	}
	return out
}

// noFallbackNotes fails on a CDR note saying the daemon rang something
// other than what the config asks for (a strategy it did not implement, a
// member it skipped).
func noFallbackNotes(t *testing.T, r cdrRecord) {
	t.Helper()
	for _, n := range r.Notes {
		if strings.Contains(n, "not implemented") || strings.Contains(n, "skipped") {
			t.Errorf("CDR note %q: the call did not ring as configured", n)
		}
	}
}

func anyContains(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// waitMsg waits up to 5 s for s's message log to show a message matching f.
func waitMsg(t *testing.T, s *sipp, what string, f func(sipMsg) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, m := range s.messages(t) {
			if f(m) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sipp %s: no %s after 5s", s.spec.name, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
