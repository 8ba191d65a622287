//go:build unix

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// env is one case: its own daemon, config, CDR file and SIPp instances, all
// in one directory, over one transport ("udp" or "tcp"; the daemon always
// listens on both).
type env struct {
	t       *testing.T
	tr      string
	dir     string
	d       *daemon
	members []*sipp
	callers []*sipp
	idlers  []*sipp // members that must get nothing (policies_test.go: idle)
}

func newEnv(t *testing.T, tr string) *env {
	t.Helper()
	needDaemon(t)
	e := &env{t: t, tr: tr, dir: workDir(t)}
	// Registered before any process, so it runs after they are stopped and
	// their logs are complete.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, s := range append(slices.Clone(e.callers), e.members...) {
			t.Log(s.report())
		}
	})
	return e
}

// member allocates a SIPp member (server mode) expecting calls INVITEs;
// pause is its -d. It starts with e.start.
func (e *env) member(name, scenario string, calls int, pause time.Duration, keys map[string]string) *sipp {
	s := newSipp(e.t, e.dir, sippSpec{name: name, scenario: scenario, transport: e.tr, calls: calls, pause: pause, keys: keys})
	e.members = append(e.members, s)
	return s
}

// daemon starts ringroute with these groups, then every member so far.
func (e *env) daemon(groups ...group) *daemon {
	e.d = startDaemon(e.t, e.dir, groups)
	for _, m := range append(slices.Clone(e.members), e.idlers...) {
		m.start(e.t)
	}
	return e.d
}

// call starts a SIPp caller dialling service on the daemon.
func (e *env) call(name, scenario, service string, pause time.Duration, spec ...func(*sippSpec)) *sipp {
	sp := sippSpec{name: name, scenario: scenario, transport: e.tr, remote: e.d.sipAddr(), service: service, pause: pause}
	for _, f := range spec {
		f(&sp)
	}
	s := newSipp(e.t, e.dir, sp)
	s.start(e.t)
	e.callers = append(e.callers, s)
	return s
}

// finish waits for every caller, then every member, and requires each to
// exit 0 (all its calls succeeded). Then come the checks that hold for any
// call, and the leak check.
func (e *env) finish() {
	t := e.t
	t.Helper()
	for _, c := range e.callers {
		code, ok := c.wait(25 * time.Second)
		if !ok {
			t.Errorf("caller %s still running after 25s", c.spec.name)
			c.stop(time.Second)
			continue
		}
		if code != 0 {
			t.Errorf("caller %s (%s) exited %d, want 0", c.spec.name, shortName(c), code)
		}
	}
	for _, m := range e.members {
		code, ok := m.wait(15 * time.Second)
		if !ok {
			t.Errorf("member %s still running 15s after the callers ended (it is waiting for something ringroute never sent)", m.spec.name)
			m.stop(time.Second)
			continue
		}
		if code != 0 {
			t.Errorf("member %s (%s) exited %d, want 0", m.spec.name, shortName(m), code)
		}
	}
	e.checkLegs()
	if e.d == nil {
		return
	}
	if e.d.exited() {
		t.Errorf("ringroute exited with %d during the case", e.d.code())
		return
	}
	e.d.checkNoLeaks(t)
}

// done ends a case that read the CDR: the daemon must exit 0 on SIGTERM.
// (Called after the CDR is read so that a slow CDR writer is not cut off.)
func (e *env) done() {
	if e.d != nil {
		e.d.terminate(e.t)
	}
}

func shortName(s *sipp) string {
	i := strings.LastIndex(s.spec.scenario, "/")
	return s.spec.scenario[i+1:]
}

// checkLegs checks what every member saw, for any case:
//   - each leg is a new dialog: its Call-ID and From tag are not the
//     caller's, and no two legs share a Call-ID (SPEC "One call" step 4);
//   - the caller's identity and display name are in the leg's From;
//   - every CANCEL matches its INVITE and follows a provisional response.
func (e *env) checkLegs() {
	t := e.t
	t.Helper()
	callerIDs := map[string]bool{}
	callerTags := map[string]bool{}
	for _, c := range e.callers {
		for _, m := range initialInvites(sentMsgs(c.messages(t))) {
			callerIDs[m.callID()] = true
			callerTags[m.fromTag()] = true
		}
	}
	legIDs := map[string]string{}
	for _, mb := range e.members {
		msgs := mb.messages(t)
		seen := map[string]bool{}
		for _, inv := range initialInvites(received(msgs)) {
			id := inv.callID()
			if seen[id+"/"+inv.branch()] {
				continue // a retransmission
			}
			seen[id+"/"+inv.branch()] = true
			if callerIDs[id] {
				t.Errorf("member %s: leg INVITE reuses the caller's Call-ID %s; each leg must be a new dialog", mb.spec.name, id)
			}
			if callerTags[inv.fromTag()] {
				t.Errorf("member %s: leg INVITE reuses the caller's From tag %s", mb.spec.name, inv.fromTag())
			}
			if other, dup := legIDs[id]; dup && other != mb.spec.name+"/"+inv.branch() {
				// the same INVITE retransmitted has the same branch
				t.Errorf("members %s and %s got INVITEs with the same Call-ID %s", other, mb.spec.name, id)
			}
			legIDs[id] = mb.spec.name + "/" + inv.branch()
			if from := inv.header("from"); len(e.callers) > 0 && e.callers[0].spec.ip == "127.0.0.1" &&
				(!strings.Contains(from, "sip:caller@") || !strings.Contains(from, "e2e caller")) {
				t.Errorf("member %s: leg From %q lacks the caller's identity (\"e2e caller\" <sip:caller@...>)", mb.spec.name, from)
			}
			if inv.header("contact") == "" {
				t.Errorf("member %s: leg INVITE has no Contact", mb.spec.name)
			}
		}
		checkCancelMatchesInvite(t, "member "+mb.spec.name, msgs)
	}
}

// uris returns the member URIs of these instances, named after them.
func uris(ms ...*sipp) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.uri(m.spec.name))
	}
	return out
}

func key(m *sipp) string { return "uri:" + m.uri(m.spec.name) }

// callerCallID is the Call-ID of the caller's (first) INVITE.
func callerCallID(t *testing.T, c *sipp) string {
	t.Helper()
	inv := initialInvites(sentMsgs(c.messages(t)))
	if len(inv) == 0 {
		t.Fatalf("caller %s sent no INVITE", c.spec.name)
	}
	return inv[0].callID()
}

// oneCDR reads the CDR file, which must hold exactly one line, for this
// caller's call, dialled as service.
func (e *env) oneCDR(c *sipp, service string) cdrRecord {
	t := e.t
	t.Helper()
	recs := e.d.cdrs(t, 1)
	if len(recs) != 1 {
		t.FailNow()
	}
	r := recs[0]
	if id := callerCallID(t, c); r.CallID != id {
		t.Errorf("CDR call_id %q, want the caller's Call-ID %q", r.CallID, id)
	}
	if r.Dialled != service {
		t.Errorf("CDR dialled %q, want %q", r.Dialled, service)
	}
	if c.spec.ip == "127.0.0.1" && !strings.Contains(r.Caller, "caller@127.0.0.1") {
		t.Errorf("CDR caller %q, want the caller's From URI sip:caller@127.0.0.1:...", r.Caller)
	}
	if r.Start.IsZero() || r.End.Before(r.Start) {
		t.Errorf("CDR start %v end %v: want start set and end >= start", r.Start, r.End)
	}
	if r.Answer != nil && (r.Answer.Before(r.Start) || r.End.Before(*r.Answer)) {
		t.Errorf("CDR answer %v not within start %v .. end %v", *r.Answer, r.Start, r.End)
	}
	return r
}

// expectCDR checks the common outcome fields.
func expectCDR(t *testing.T, r cdrRecord, outcome string, code int) {
	t.Helper()
	if r.Outcome != outcome || r.Code != code {
		t.Errorf("CDR outcome %q code %d, want %q %d", r.Outcome, r.Code, outcome, code)
	}
	if outcome == "answered" {
		if r.Answer == nil {
			t.Error("CDR of an answered call has no answer time")
		}
	} else {
		if r.Answer != nil {
			t.Errorf("CDR of a %s call has answer time %v", outcome, *r.Answer)
		}
		if r.AnsweredBy != "" {
			t.Errorf("CDR of a %s call has answered_by %q", outcome, r.AnsweredBy)
		}
	}
}

// legsOf returns the CDR legs for a member key.
func legsOf(r cdrRecord, member string) []cdrLeg {
	var out []cdrLeg
	for _, l := range r.Legs {
		if l.Member == member {
			out = append(out, l)
		}
	}
	return out
}

// expectLegs checks that the CDR lists exactly these legs (member key ->
// final code), in any order.
func expectLegs(t *testing.T, r cdrRecord, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	for _, l := range r.Legs {
		got[l.Member] = l.Code
	}
	if len(r.Legs) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("CDR legs (member: code) = %v (%d legs), want %v", got, len(r.Legs), want)
	}
	ids := map[int]bool{}
	for _, l := range r.Legs {
		if ids[l.Leg] {
			t.Errorf("CDR leg id %d used twice", l.Leg)
		}
		ids[l.Leg] = true
		if l.Start.IsZero() || l.Start.Before(r.Start.Add(-time.Millisecond)) || l.Start.After(r.End) {
			t.Errorf("CDR leg %d start %v outside the call %v .. %v", l.Leg, l.Start, r.Start, r.End)
		}
	}
}

// tryingAtOnce checks SPEC "One call" step 1: an INVITE that enters a
// group gets 100 Trying at once, before any other response. 150 ms tells a
// deliberate 100 from one a transaction layer sends after 200 ms of
// silence.
func tryingAtOnce(t *testing.T, caller []sipMsg) {
	t.Helper()
	inv := at(caller, func(m sipMsg) bool { return m.sent && m.method() == "INVITE" && m.toTag() == "" })
	for _, m := range caller {
		if m.sent || m.cseqMethod() != "INVITE" || m.code() == 0 {
			continue
		}
		if m.code() != 100 {
			t.Errorf("the first response to the caller's INVITE is %q, want 100 Trying", m.first)
		} else {
			within(t, "100 Trying after the caller's INVITE", m.at.Sub(inv), 0, 150*ms)
		}
		return
	}
	t.Error("the caller got no response to its INVITE")
}

// oneRinging checks that the caller got exactly one 180 (SPEC step 5) and
// no 183 (ringback passthrough in direct mode sends 180 only).
func oneRinging(t *testing.T, caller []sipMsg) {
	t.Helper()
	if n := len(responses(received(caller), 180, "INVITE")); n != 1 {
		t.Errorf("caller got %d 180 Ringing, want exactly 1", n)
	}
	if n := len(responses(received(caller), 183, "INVITE")); n != 0 {
		t.Errorf("caller got %d 183, want none", n)
	}
}

// answeredWith checks that the caller got one answer (200s with one To-tag:
// retransmissions allowed, a second answer not) carrying winner's SDP
// (media: direct passes it end to end).
func answeredWith(t *testing.T, caller []sipMsg, winner *sipp) {
	t.Helper()
	oks := responses(received(caller), 200, "INVITE")
	if len(oks) == 0 {
		t.Error("caller got no 200 for its INVITE")
		return
	}
	if tags := distinctTo(oks); len(tags) != 1 {
		t.Errorf("caller got 200s with %d different To-tags %v: two answers", len(tags), tags)
	}
	if mark := fmt.Sprintf("s=member-%d", winner.port); !strings.Contains(oks[0].body, mark) {
		t.Errorf("caller's 200 SDP lacks %q (member %s's SDP):\n%s", mark, winner.spec.name, oks[0].body)
	}
	if oks[0].header("contact") == "" {
		t.Error("caller's 200 has no Contact")
	}
}

// at returns the time of the first message matching f, zero if none.
func at(msgs []sipMsg, f func(sipMsg) bool) time.Time {
	for _, m := range msgs {
		if f(m) {
			return m.at
		}
	}
	return time.Time{}
}

func isReq(method string) func(sipMsg) bool {
	return func(m sipMsg) bool { return !m.sent && m.method() == method }
}

func within(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Errorf("%s took %v, want between %v and %v", what, d.Round(time.Millisecond), lo, hi)
	}
}
