//go:build unix

package e2e

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFaults is issue 9 part 4: members that misbehave. Every case checks
// that the caller gets a final answer in bounded time, that an unwanted
// 2xx is ACKed and BYEd, and that afterwards /debug/live says 0 calls and
// 0 legs and /metrics 0 ringing legs and 0 relay ports in use, polled every
// 50 ms, within a second of the call's end or, where a timer rules, within
// that timer plus a second:
//
//   - cancelGrace, 4 s (sip/uac.go, docs/behaviour.md "Decisions"): a
//     member that never sent a provisional may not be CANCELled (RFC 3261
//     section 9.1); its transaction is dropped 4 s after we wanted to.
//   - 64*T1, 32 s (RFC 3261 section 9.1 and Timer F, section 17.1.2.2): a
//     CANCEL or a BYE nobody answers is retransmitted and given up 32 s
//     after it was first sent, and the call (its CDR line, its relay ports)
//     waits for that leg.
//
// After that, go_goroutines must come back to what it was before the call.
// The cases run at once, each with its own daemon; the longest take 64*T1
// plus setup, about 36 s.
func TestFaults(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	cases := []struct {
		name string
		run  func(*fenv)
	}{
		{"silent_member_alone", faultSilentAlone},
		{"silent_member_beside_answerer", faultSilentBesideAnswerer},
		{"answers_then_ignores_bye", faultIgnoresBye},
		{"answers_then_silent_rtp_timeout", faultSilentRTPTimeout},
		{"killed_mid_ring_hunt_goes_on", faultKilledRingHunt},
		{"killed_mid_ring_group_timeout", faultKilledRingTimeout},
		{"killed_mid_call_udp", faultKilledCallUDP},
		{"killed_mid_call_tcp", faultKilledCallTCP},
		{"forked_second_2xx", faultForked2xx},
		{"2xx_after_cancel_answered_elsewhere", faultLate2xxElsewhere},
		{"2xx_after_cancel_ring_timeout_wins", faultLate2xxRingTimeout},
		{"2xx_after_cancel_group_timeout", faultLate2xxGroupTimeout},
	}
	// All at once, without t.Parallel: most of the time is spent waiting
	// out timers, and parallel subtests would queue for the -test.parallel
	// slots (GOMAXPROCS, 2 here) behind the rest of the suite. t.Run may be
	// called from several goroutines at once (package testing).
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(c.name, func(t *testing.T) {
				e := newFenv(t)
				c.run(e)
				if e.d != nil {
					e.d.terminate(t)
				}
			})
		}()
	}
	wg.Wait()
}

// Timers the cases wait out (see TestFaults).
const (
	fCancelGrace = 4 * time.Second
	f64T1        = 32 * time.Second
	fSlack       = 1500 * time.Millisecond // "about a second": poll, CDR write, a busy machine

	// clockSkew is how far apart two SIPp logs' stamps of one exchange
	// may be: each process stamps a message after it sent or read it.
	clockSkew = 100 * time.Millisecond
)

// fenv is one fault case: a daemon, SIPp members and callers, Go peers.
type fenv struct {
	t     *testing.T
	dir   string
	d     *rlDaemon
	idle  float64 // go_goroutines before the call
	sipps []*sipp
	peers []*rlPeer
}

func newFenv(t *testing.T) *fenv {
	e := &fenv{t: t, dir: workDir(t)}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, s := range e.sipps {
			t.Log(s.report())
		}
		for _, p := range e.peers {
			t.Log(p.report())
		}
	})
	return e
}

// member is a SIPp member for one call; pause is its -d.
func (e *fenv) member(name, scenario, tr string, pause time.Duration) *sipp {
	s := newSipp(e.t, e.dir, sippSpec{name: name, scenario: scenario, transport: tr, pause: pause, timeout: 60 * time.Second})
	e.sipps = append(e.sipps, s)
	return s
}

func (e *fenv) peer(name string, handle func(*rlPeer, rlPeerMsg)) *rlPeer {
	p := rlNewPeer(e.t, name, 0, handle)
	e.peers = append(e.peers, p)
	return p
}

// start runs the daemon with these groups, then the SIPp members, and
// takes the idle goroutine count.
func (e *fenv) start(c rlConf, members ...*sipp) {
	e.d = rlStartDaemon(e.t, e.dir, c)
	for _, m := range members {
		m.start(e.t)
	}
	e.idle = e.d.idleGoroutines(e.t)
}

// call starts a SIPp caller (UDP) dialling ext.
func (e *fenv) call(scenario, ext string, pause time.Duration) *sipp {
	c := newSipp(e.t, e.dir, sippSpec{name: "caller", scenario: scenario, transport: "udp", remote: e.d.sipAddr(),
		service: ext, pause: pause, timeout: 60 * time.Second})
	c.start(e.t)
	e.sipps = append(e.sipps, c)
	return c
}

// done waits for a SIPp instance and wants exit 0.
func (e *fenv) done(s *sipp, within time.Duration) {
	e.t.Helper()
	code, ok := s.wait(within)
	switch {
	case !ok:
		e.t.Errorf("sipp %s (%s) still running after %v", s.spec.name, shortName(s), within)
		s.stop(time.Second)
	case code != 0:
		e.t.Errorf("sipp %s (%s) exited %d, want 0", s.spec.name, shortName(s), code)
	}
}

// leakFree is the settle check plus the goroutine check.
func (e *fenv) leakFree(from time.Time, bound time.Duration, why string) {
	e.t.Helper()
	took := e.d.settle(e.t, from, bound, why)
	e.t.Logf("clean %v after %s (bound %v)", took.Round(10*time.Millisecond), why, bound)
	e.d.goroutinesBack(e.t, e.idle, 2, 3*time.Second)
}

// oneRecord waits for the single CDR line of the case.
func (e *fenv) oneRecord(within time.Duration) rlRecord {
	e.t.Helper()
	recs := e.d.waitRecords(e.t, 1, within)
	if len(recs) != 1 {
		e.t.Fatalf("CDR has %d lines, want 1:\n%s", len(recs), readFile(e.d.cdr))
	}
	return recs[0]
}

// callerTimes reads a caller's log: when it sent its INVITE, when the
// first final response came and its code, and its last message.
type callerTimes struct {
	invite, final, end time.Time
	code               int
}

func timesOf(t *testing.T, c *sipp) callerTimes {
	t.Helper()
	var ct callerTimes
	for _, m := range c.messages(t) {
		switch {
		case m.sent && m.method() == "INVITE" && m.toTag() == "" && ct.invite.IsZero():
			ct.invite = m.at
		case !m.sent && m.cseqMethod() == "INVITE" && m.code() >= 200 && ct.final.IsZero():
			ct.final, ct.code = m.at, m.code()
		}
		ct.end = m.at
	}
	if ct.invite.IsZero() || ct.final.IsZero() {
		t.Fatalf("caller %s: no INVITE or no final response in its log", c.spec.name)
	}
	return ct
}

// finalWithin checks the caller's final answer: its code and how long
// after the INVITE it came.
func finalWithin(t *testing.T, ct callerTimes, code int, bound time.Duration) {
	t.Helper()
	if ct.code != code {
		t.Errorf("caller's final response %d, want %d", ct.code, code)
	}
	if d := ct.final.Sub(ct.invite); d > bound {
		t.Errorf("caller's final response came %v after its INVITE, want within %v", d.Round(time.Millisecond), bound)
	}
}

// sentCode waits until a SIPp instance's log shows it sent a response with
// that code (SIPp writes its message log as it goes).
func sentCode(t *testing.T, s *sipp, code int, within time.Duration) time.Time {
	t.Helper()
	var at time.Time
	if !rlWaitFor(within, func() bool {
		for _, m := range sentMsgs(s.messages(t)) {
			if m.code() == code {
				at = m.at
				return true
			}
		}
		return false
	}) {
		t.Fatalf("sipp %s sent no %d within %v", s.spec.name, code, within)
	}
	return at
}

// killAndTap kills a SIPp member by PID and listens on its UDP port in its
// place, recording what ringroute keeps sending there (nobody answers).
func (e *fenv) killAndTap(s *sipp) *rlPeer {
	e.t.Helper()
	rlKill(e.t, s.proc)
	e.t.Logf("killed sipp %s (pid %d)", s.spec.name, s.cmd.Process.Pid)
	if s.spec.transport != "udp" {
		return nil
	}
	p := rlNewPeer(e.t, s.spec.name+"-tap", s.port, nil)
	e.peers = append(e.peers, p)
	return p
}

func isMethod(meth string) func(rlPeerMsg) bool {
	return func(m rlPeerMsg) bool { return m.method() == meth }
}

// firstAt is when a peer first received a message matching f.
func firstAt(p *rlPeer, f func(rlPeerMsg) bool) time.Time {
	for _, m := range p.received() {
		if f(m) {
			return m.at
		}
	}
	return time.Time{}
}

func legCode(r rlRecord, member string) (int, string) {
	for _, l := range r.Legs {
		if l.Member == member {
			return l.Code, l.Reason
		}
	}
	return -1, ""
}

func expectLeg(t *testing.T, r rlRecord, member string, code int) {
	t.Helper()
	got, reason := legCode(r, member)
	if got != code {
		t.Errorf("CDR leg %s: code %d (reason %q), want %d; legs %+v", member, got, reason, code, r.Legs)
	}
}

func peerKey(p *rlPeer) string { return "uri:" + p.uri() }

func group1(ext, strategy string, timeout, member time.Duration, members ...string) rlGroup {
	return rlGroup{name: "g" + ext, ext: ext, strategy: strategy, timeout: timeout, memberTimeout: member, members: members}
}

// ---------------------------------------------------------------------------
// (a) A member that never answers anything.

// Alone in its group: no provisional ever comes, so no CANCEL may go out
// (RFC 3261 section 9.1); at the group timeout the caller gets 480 and the
// leg is dropped cancelGrace later. A 200 that the member then sends is a
// stray for a leg that ended recently: ringroute ACKs and BYEs it.
func faultSilentAlone(e *fenv) {
	t := e.t
	var mu sync.Mutex
	var byeOK time.Time
	s := e.peer("silent", func(p *rlPeer, m rlPeerMsg) {
		if m.method() == "BYE" { // only after our late 200 (below)
			p.reply(m, 200, "OK", "", false)
			mu.Lock()
			byeOK = time.Now()
			mu.Unlock()
		}
	})
	e.start(rlConf{groups: []rlGroup{group1("700", "all", 2*time.Second, 2*time.Second, s.uri())}})
	c := e.call("uac_480.xml", "700", 0)
	e.done(c, 15*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 480, 2*time.Second+fSlack)

	invites := s.count(isMethod("INVITE"))
	if invites < 2 {
		t.Errorf("silent member got %d INVITEs, want the retransmissions too (Timer A, RFC 3261 section 17.1.1.2)", invites)
	}
	// cancelGrace from the group timeout (the 480), then clean.
	e.leakFree(ct.final, fCancelGrace+fSlack, "the 480 at the group timeout + cancelGrace 4 s")
	if n := s.count(isMethod("CANCEL")); n != 0 {
		t.Errorf("silent member got %d CANCELs without ever sending a provisional (RFC 3261 section 9.1)", n)
	}
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "noanswer" || r.Code != 480 {
		t.Errorf("CDR outcome %q code %d, want noanswer 480", r.Outcome, r.Code)
	}
	expectLeg(t, r, peerKey(s), 408)

	// The member picks up after all: 200 for its INVITE, from its own tag.
	var inv rlPeerMsg
	for _, m := range s.received() {
		if m.method() == "INVITE" {
			inv = m
			break
		}
	}
	sentAt := time.Now()
	s.reply(inv, 200, "OK", "late1", true)
	acked := rlWaitFor(3*time.Second, func() bool {
		return s.count(func(m rlPeerMsg) bool { return m.method() == "ACK" && m.toTag() == "late1" }) > 0 &&
			s.count(func(m rlPeerMsg) bool { return m.method() == "BYE" && m.toTag() == "late1" }) > 0
	})
	if !acked {
		t.Errorf("a 200 after the leg was dropped (same Call-ID %s) was not ACKed and BYEd within 3 s (docs/behaviour.md Races)", inv.callID())
	} else {
		bye := firstAt(s, isMethod("BYE"))
		t.Logf("late 200: ACK and BYE %v after it", bye.Sub(sentAt).Round(time.Millisecond))
		for _, m := range s.received() {
			if (m.method() == "ACK" || m.method() == "BYE") && m.callID() != inv.callID() {
				t.Errorf("%s for the late 200 has Call-ID %s, want the leg's %s", m.method(), m.callID(), inv.callID())
			}
		}
	}
	mu.Lock()
	ok := byeOK
	mu.Unlock()
	if !ok.IsZero() {
		e.leakFree(ok, fSlack, "the late 200's BYE")
	}
	if n := len(nonEmptyLines(e.d.cdr)); n != 1 {
		t.Errorf("CDR has %d lines after the late 200, want still 1", n)
	}
}

// Beside a member that answers: the caller is connected at once; the
// silent leg cannot be CANCELled and is dropped cancelGrace after the
// answer.
func faultSilentBesideAnswerer(e *fenv) {
	t := e.t
	s := e.peer("silent", nil)
	m1 := e.member("m1", "uas_answer.xml", "udp", 300*ms)
	e.start(rlConf{groups: []rlGroup{group1("701", "all", 6*time.Second, 6*time.Second, s.uri(), m1.uri("m1"))}}, m1)
	c := e.call("uac_answer.xml", "701", 500*ms)
	e.done(c, 15*time.Second)
	e.done(m1, 10*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 200, 300*ms+fSlack)
	e.leakFree(ct.final, fCancelGrace+fSlack, "the answer + cancelGrace 4 s")
	if n := s.count(isMethod("CANCEL")); n != 0 {
		t.Errorf("silent member got %d CANCELs without ever sending a provisional", n)
	}
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "answered" || r.AnsweredBy != key(m1) {
		t.Errorf("CDR outcome %q answered_by %q, want answered by %s", r.Outcome, r.AnsweredBy, key(m1))
	}
	expectLeg(t, r, peerKey(s), 408)
	expectLeg(t, r, key(m1), 200)
}

// ---------------------------------------------------------------------------
// (b) A member that answers 200, takes the ACK, and never sends anything
// again.

// answerThenSilent is a peer handler: 180 and 200 to the INVITE, the 200
// sent again every 500 ms until the ACK, then nothing to anything.
func answerThenSilent() func(*rlPeer, rlPeerMsg) {
	var mu sync.Mutex
	acked := make(chan struct{})
	answered := false
	return func(p *rlPeer, m rlPeerMsg) {
		switch {
		case m.method() == "INVITE" && m.toTag() == "":
			mu.Lock()
			first := !answered
			answered = true
			mu.Unlock()
			if !first {
				return
			}
			p.reply(m, 180, "Ringing", "quiet1", false)
			go func() {
				for i := 0; i < 7; i++ {
					p.reply(m, 200, "OK", "quiet1", true)
					select {
					case <-acked:
						return
					case <-time.After(500 * time.Millisecond):
					}
				}
			}()
		case m.method() == "ACK":
			mu.Lock()
			select {
			case <-acked:
			default:
				close(acked)
			}
			mu.Unlock()
		}
	}
}

// byeIgnored checks the BYE ringroute sent to a member that never answers
// it: retransmitted (UDP, Timer E) and nothing else after it; it returns
// when the first one came.
func byeIgnored(t *testing.T, p *rlPeer) time.Time {
	t.Helper()
	first := firstAt(p, isMethod("BYE"))
	if first.IsZero() {
		t.Fatalf("member %s never got a BYE", p.name)
	}
	byes := p.count(isMethod("BYE"))
	if byes < 6 {
		t.Errorf("member %s got %d BYEs, want retransmissions until Timer F (about 11 in 32 s over UDP)", p.name, byes)
	}
	for _, m := range p.received() {
		if m.at.After(first) && m.method() != "BYE" {
			t.Errorf("member %s got %q after the BYE, want only BYE retransmissions", p.name, m.first)
		}
	}
	return first
}

// The caller hangs up: it gets 200 for its BYE at once; our BYE to the
// member times out after 64*T1, and only then is the leg, the call and its
// relay ports gone and the CDR line written. Meanwhile the rtp_timeout
// watchdog (30 s) must leave the ended call alone: it used to log "no RTP
// either way; hanging up" for it 30 s after the answer, because
// sip/media.go watch() stopped only when the caller's side was torn down,
// after the last leg; it now stops once the caller's side has ended (a BYE
// either way). This case is that fix's regression test.
func faultIgnoresBye(e *fenv) {
	t := e.t
	b := e.peer("deaf", answerThenSilent())
	e.start(rlConf{groups: []rlGroup{group1("702", "all", 5*time.Second, 5*time.Second, b.uri())}})
	c := e.call("uac_answer.xml", "702", 500*ms)
	e.done(c, 15*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 200, fSlack)
	byeSent := at(c.messages(t), func(m sipMsg) bool { return m.sent && m.method() == "BYE" })
	byeOK := at(c.messages(t), func(m sipMsg) bool { return !m.sent && m.code() == 200 && m.cseqMethod() == "BYE" })
	if byeOK.IsZero() || byeOK.Sub(byeSent) > 500*ms {
		t.Errorf("caller's BYE answered %v after it was sent, want 200 at once whatever the member does", byeOK.Sub(byeSent))
	}
	// The leg lives until our BYE transaction gives up (Timer F).
	rlWaitFor(f64T1+5*time.Second, func() bool { _, legs, err := e.d.live(); return err == nil && legs == 0 })
	first := byeIgnored(t, b)
	e.leakFree(first, f64T1+fSlack, "the first BYE to the member + 64*T1 (Timer F)")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "answered" || r.EndedBy != "caller" {
		t.Errorf("CDR outcome %q ended_by %q, want answered, ended by the caller", r.Outcome, r.EndedBy)
	}
	// The call was over for the caller 32 s before the leg let go; the
	// rtp_timeout watchdog (30 s by default) must not think it still up.
	for _, l := range strings.Split(readFile(e.d.log), "\n") {
		if strings.Contains(l, `"no RTP either way; hanging up"`) && strings.Contains(l, r.CallID) {
			t.Errorf("ringroute logged that it hangs up a call the caller ended %v before (it only waits for the member's BYE transaction):\n%s",
				timeOfLog(l).Sub(r.End).Round(time.Millisecond), l)
		}
	}
}

// timeOfLog is the "time" of a JSON log line, zero if none.
func timeOfLog(line string) time.Time {
	_, rest, ok := strings.Cut(line, `"time":"`)
	if !ok {
		return time.Time{}
	}
	v, _, _ := strings.Cut(rest, `"`)
	at, _ := time.Parse("2006-01-02T15:04:05.000Z0700", v)
	return at
}

// No RTP either way: rtp_timeout (2 s here) hangs up; the caller gets BYE,
// the member's BYE goes unanswered and times out after 64*T1.
func faultSilentRTPTimeout(e *fenv) {
	t := e.t
	b := e.peer("deaf", answerThenSilent())
	e.start(rlConf{rtpTimeout: 2 * time.Second, groups: []rlGroup{group1("703", "all", 5*time.Second, 5*time.Second, b.uri())}})
	c := e.call("uac_wait_bye.xml", "703", 0)
	e.done(c, 15*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 200, fSlack)
	bye := at(c.messages(t), func(m sipMsg) bool { return !m.sent && m.method() == "BYE" })
	// Idle time counts from when the relay bridged the call, a moment before
	// the caller's 200 reached SIPp: the BYE may come that moment short of
	// 2 s after it (seen once: short by under a millisecond).
	if d := bye.Sub(ct.final); bye.IsZero() || d < 2*time.Second-100*time.Millisecond || d > 2*time.Second+fSlack {
		t.Errorf("caller got BYE %v after the answer, want rtp_timeout 2 s (checked every 500 ms) later", d.Round(time.Millisecond))
	}
	rlWaitFor(f64T1+5*time.Second, func() bool { _, legs, err := e.d.live(); return err == nil && legs == 0 })
	first := byeIgnored(t, b)
	e.leakFree(first, f64T1+fSlack, "the first BYE to the member + 64*T1 (Timer F)")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "answered" || r.EndedBy != "rtp_timeout" {
		t.Errorf("CDR outcome %q ended_by %q, want answered, ended by rtp_timeout", r.Outcome, r.EndedBy)
	}
}

// ---------------------------------------------------------------------------
// (c) Members killed (SIGKILL to the SIPp process) mid-ring and mid-call.

// Linear hunt: the killed member rings out (2 s), is CANCELled into the
// void, and the next member answers. The dead leg is given up 64*T1 after
// the CANCEL.
func faultKilledRingHunt(e *fenv) {
	t := e.t
	mk := e.member("mk", "uas_ring_cancel.xml", "udp", 0)
	ma := e.member("ma", "uas_answer.xml", "udp", 300*ms)
	g := group1("704", "linear", 10*time.Second, 2*time.Second, mk.uri("mk"), ma.uri("ma"))
	e.start(rlConf{groups: []rlGroup{g}}, mk, ma)
	c := e.call("uac_answer.xml", "704", 500*ms)
	sentCode(t, mk, 180, 3*time.Second)
	tap := e.killAndTap(mk)
	e.done(c, 15*time.Second)
	e.done(ma, 10*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 200, 2*time.Second+300*ms+fSlack)
	cancel := firstAt(tap, isMethod("CANCEL"))
	if cancel.IsZero() {
		t.Fatal("the dead member's port got no CANCEL when its ring time ended")
	}
	rlWaitFor(f64T1+5*time.Second, func() bool { _, legs, err := e.d.live(); return err == nil && legs == 0 })
	if n := tap.count(isMethod("CANCEL")); n < 6 {
		t.Errorf("dead member got %d CANCELs, want retransmissions (Timer E) until 64*T1", n)
	}
	e.leakFree(cancel, f64T1+fSlack, "the CANCEL to the dead member + 64*T1")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "answered" || r.AnsweredBy != key(ma) {
		t.Errorf("CDR outcome %q answered_by %q, want answered by %s", r.Outcome, r.AnsweredBy, key(ma))
	}
	expectLeg(t, r, key(mk), 408)
}

// The only member dies while ringing: the group timeout gives the caller
// 480 on time; the CANCEL goes unanswered for 64*T1.
func faultKilledRingTimeout(e *fenv) {
	t := e.t
	mk := e.member("mk", "uas_ring_cancel.xml", "udp", 0)
	e.start(rlConf{groups: []rlGroup{group1("705", "all", 2*time.Second, 2*time.Second, mk.uri("mk"))}}, mk)
	c := e.call("uac_480.xml", "705", 0)
	sentCode(t, mk, 180, 3*time.Second)
	tap := e.killAndTap(mk)
	e.done(c, 15*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 480, 2*time.Second+fSlack)
	cancel := firstAt(tap, isMethod("CANCEL"))
	if cancel.IsZero() {
		t.Fatal("the dead member's port got no CANCEL at the group timeout")
	}
	rlWaitFor(f64T1+5*time.Second, func() bool { _, legs, err := e.d.live(); return err == nil && legs == 0 })
	e.leakFree(cancel, f64T1+fSlack, "the CANCEL to the dead member + 64*T1")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "noanswer" || r.Code != 480 {
		t.Errorf("CDR outcome %q code %d, want noanswer 480", r.Outcome, r.Code)
	}
	expectLeg(t, r, key(mk), 408)
}

// killedMidCall: the member answers, is killed a second into the call, the
// caller hangs up 3 s in and gets 200 for its BYE at once.
func killedMidCall(e *fenv, tr, ext string) (ct callerTimes, tap *rlPeer) {
	t := e.t
	mk := e.member("mk", "uas_answer.xml", tr, 0)
	e.start(rlConf{groups: []rlGroup{group1(ext, "all", 5*time.Second, 5*time.Second, mk.uri("mk"))}}, mk)
	c := e.call("uac_answer.xml", ext, 3*time.Second)
	rlWaitFor(5*time.Second, func() bool { return len(requests(received(mk.messages(t)), "ACK")) > 0 })
	time.Sleep(time.Second)
	tap = e.killAndTap(mk)
	e.done(c, 15*time.Second)
	ct = timesOf(t, c)
	finalWithin(t, ct, 200, fSlack)
	byeSent := at(c.messages(t), func(m sipMsg) bool { return m.sent && m.method() == "BYE" })
	byeOK := at(c.messages(t), func(m sipMsg) bool { return !m.sent && m.code() == 200 && m.cseqMethod() == "BYE" })
	if byeOK.IsZero() || byeOK.Sub(byeSent) > 500*ms {
		t.Errorf("caller's BYE answered %v after it was sent, want 200 at once with the member dead", byeOK.Sub(byeSent))
	}
	return ct, tap
}

// Over UDP nothing tells ringroute the member is gone: its BYE is
// retransmitted into the void until Timer F.
func faultKilledCallUDP(e *fenv) {
	t := e.t
	_, tap := killedMidCall(e, "udp", "706")
	rlWaitFor(f64T1+5*time.Second, func() bool { _, legs, err := e.d.live(); return err == nil && legs == 0 })
	first := byeIgnored(t, tap)
	e.leakFree(first, f64T1+fSlack, "the BYE to the dead member + 64*T1 (Timer F)")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "answered" || r.EndedBy != "caller" {
		t.Errorf("CDR outcome %q ended_by %q, want answered, ended by the caller", r.Outcome, r.EndedBy)
	}
}

// Over TCP the kernel closes the member's connection when SIPp dies, so
// the BYE cannot be sent (connection refused): the leg ends at once, and
// the call with it.
func faultKilledCallTCP(e *fenv) {
	t := e.t
	ct, _ := killedMidCall(e, "tcp", "707")
	e.leakFree(ct.end, fSlack, "the caller's BYE (the member's TCP connection is gone)")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "answered" || r.EndedBy != "caller" {
		t.Errorf("CDR outcome %q ended_by %q, want answered, ended by the caller", r.Outcome, r.EndedBy)
	}
}

// ---------------------------------------------------------------------------
// (d) Two 2xx with different To-tags on one leg (a forking proxy).

func faultForked2xx(e *fenv) {
	t := e.t
	mf := e.member("mf", "fault_fork_2xx.xml", "udp", 200*ms)
	e.start(rlConf{groups: []rlGroup{group1("708", "all", 5*time.Second, 5*time.Second, mf.uri("mf"))}}, mf)
	c := e.call("uac_answer.xml", "708", time.Second)
	e.done(c, 15*time.Second)
	e.done(mf, 10*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 200, 200*ms+fSlack)
	cm := c.messages(t)
	if tags := distinctTo(responses(received(cm), 200, "INVITE")); len(tags) != 1 {
		t.Errorf("caller got 200s with To-tags %v, want one answer", tags)
	}
	byeCaller := at(cm, func(m sipMsg) bool { return m.sent && m.method() == "BYE" })
	mm := received(mf.messages(t))
	tagOf := func(m sipMsg) string {
		switch {
		case strings.Contains(m.toTag(), "SIPpTag01"):
			return "first"
		case strings.Contains(m.toTag(), "SIPpTag02"):
			return "second"
		}
		return m.toTag()
	}
	var got []string
	for _, m := range mm {
		if m.method() == "ACK" || m.method() == "BYE" {
			got = append(got, m.method()+" "+tagOf(m))
		}
	}
	if want := []string{"ACK first", "ACK second", "BYE second", "BYE first"}; !slices.Equal(got, want) {
		t.Errorf("forked member got %v, want %v", got, want)
	}
	for _, m := range mm {
		// Two SIPp processes' clocks: each stamps a message after its
		// send or receive, so allow them 100 ms (the caller talks 1 s).
		if m.method() == "BYE" && tagOf(m) == "second" && !m.at.Before(byeCaller.Add(-clockSkew)) {
			t.Errorf("the second dialog's BYE came at %s, after the caller hung up (%s); want it at once", m.at.Format("15:04:05.000"), byeCaller.Format("15:04:05.000"))
		}
		if m.method() == "BYE" && tagOf(m) == "first" && m.at.Before(byeCaller.Add(-clockSkew)) {
			t.Error("the answered dialog got BYE before the caller hung up")
		}
	}
	e.leakFree(ct.end, fSlack, "the caller's BYE")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "answered" || len(r.Legs) != 1 {
		t.Errorf("CDR outcome %q with %d legs, want answered with the one leg", r.Outcome, len(r.Legs))
	}
}

// ---------------------------------------------------------------------------
// (e) A 2xx after our CANCEL (the member sends 200 for the INVITE where
// its 487 belongs). docs/behaviour.md "Races" decides by what the caller
// has had.

// lateAnswer checks, from the member's log, that its 200 for the INVITE
// was ACKed and then BYEd within limit (0: the BYE must come only after
// the caller's BYE, at notBefore).
func lateAnswer(t *testing.T, m *sipp, limit time.Duration, notBefore time.Time) {
	t.Helper()
	msgs := m.messages(t)
	ok := at(msgs, func(x sipMsg) bool { return x.sent && x.code() == 200 && x.cseqMethod() == "INVITE" })
	ack := at(msgs, func(x sipMsg) bool { return !x.sent && x.method() == "ACK" })
	bye := at(msgs, func(x sipMsg) bool { return !x.sent && x.method() == "BYE" })
	cancel := at(msgs, func(x sipMsg) bool { return !x.sent && x.method() == "CANCEL" })
	if cancel.IsZero() || ok.IsZero() || ack.IsZero() || bye.IsZero() {
		t.Errorf("member %s: CANCEL %v, its 200 %v, ACK %v, BYE %v: want all four", m.spec.name, !cancel.IsZero(), !ok.IsZero(), !ack.IsZero(), !bye.IsZero())
		return
	}
	if limit > 0 && bye.Sub(ok) > limit {
		t.Errorf("member %s: BYE %v after its late 200, want ACK and BYE at once", m.spec.name, bye.Sub(ok).Round(time.Millisecond))
	}
	if !notBefore.IsZero() && bye.Before(notBefore.Add(-clockSkew)) {
		t.Errorf("member %s won the call but got BYE at %s, before the caller hung up at %s", m.spec.name, bye.Format("15:04:05.000"), notBefore.Format("15:04:05.000"))
	}
}

// Another member answered first: the late 2xx is ACKed and BYEd at once
// (Races: "Two members answer").
func faultLate2xxElsewhere(e *fenv) {
	t := e.t
	m1 := e.member("m1", "uas_answer.xml", "udp", 300*ms)
	me := e.member("me", "fault_cancel_then_200.xml", "udp", 0)
	e.start(rlConf{groups: []rlGroup{group1("709", "all", 5*time.Second, 5*time.Second, m1.uri("m1"), me.uri("me"))}}, m1, me)
	c := e.call("uac_answer.xml", "709", time.Second)
	e.done(c, 15*time.Second)
	e.done(m1, 10*time.Second)
	e.done(me, 10*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 200, 300*ms+fSlack)
	if tags := distinctTo(responses(received(c.messages(t)), 200, "INVITE")); len(tags) != 1 {
		t.Errorf("caller got 200s with To-tags %v, want one answer", tags)
	}
	if rs := cancelReasons(me.messages(t)); len(rs) != 1 || !isElsewhere(rs[0]) {
		t.Errorf("late member got CANCELs with Reason %q, want one \"Call completed elsewhere\"", rs)
	}
	lateAnswer(t, me, fSlack, time.Time{})
	e.leakFree(ct.end, fSlack, "the caller's BYE")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "answered" || r.AnsweredBy != key(m1) {
		t.Errorf("CDR outcome %q answered_by %q, want answered by %s", r.Outcome, r.AnsweredBy, key(m1))
	}
	code, reason := legCode(r, key(me))
	t.Logf("CDR leg of the late member: code %d reason %q", code, reason)
	if reason != "answered elsewhere" {
		t.Errorf("CDR leg of the late member: reason %q, want it to keep \"answered elsewhere\"", reason)
	}
}

// The member's ring time ran out while the caller is still waiting (a
// linear hunt with another member to go): its 2xx crossing our CANCEL
// wins, and the member rung next is CANCELled as answered elsewhere
// (Races: "A 2xx crosses our CANCEL ... while the caller has had no final
// answer").
func faultLate2xxRingTimeout(e *fenv) {
	t := e.t
	me := e.member("me", "fault_cancel_then_200.xml", "udp", 0)
	mx := e.member("mx", "uas_ring_cancel_reason.xml", "udp", 0)
	g := group1("710", "linear", 8*time.Second, 1500*ms, me.uri("me"), mx.uri("mx"))
	e.start(rlConf{groups: []rlGroup{g}}, me, mx)
	c := e.call("uac_answer.xml", "710", time.Second)
	e.done(c, 15*time.Second)
	e.done(me, 10*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 200, 1500*ms+fSlack)
	if rs := cancelReasons(me.messages(t)); len(rs) != 1 || isElsewhere(rs[0]) {
		t.Errorf("member at its ring timeout got CANCELs with Reason %q, want one without \"completed elsewhere\"", rs)
	}
	byeCaller := at(c.messages(t), func(m sipMsg) bool { return m.sent && m.method() == "BYE" })
	lateAnswer(t, me, 0, byeCaller)
	// The next member started with the CANCEL (retry_delay 0) and is
	// CANCELled as answered elsewhere; it may also never have been rung.
	if inv := initialInvites(received(mx.messages(t))); len(inv) > 0 {
		e.done(mx, 10*time.Second)
	} else {
		mx.stop(time.Second)
		t.Log("the next member was never rung")
	}
	e.leakFree(ct.end, fSlack, "the caller's BYE")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "answered" || r.AnsweredBy != key(me) {
		t.Errorf("CDR outcome %q answered_by %q, want answered by %s (its 2xx crossed the CANCEL)", r.Outcome, r.AnsweredBy, key(me))
	}
}

// The group timeout gave the caller 480 as it CANCELled: the 2xx that
// crosses the CANCEL has nobody to go to and is ACKed and BYEd (Races: "A
// 2xx arrives after the caller already got a final answer").
func faultLate2xxGroupTimeout(e *fenv) {
	t := e.t
	me := e.member("me", "fault_cancel_then_200.xml", "udp", 0)
	e.start(rlConf{groups: []rlGroup{group1("711", "all", 1500*ms, 1500*ms, me.uri("me"))}}, me)
	c := e.call("uac_480.xml", "711", 0)
	e.done(c, 15*time.Second)
	e.done(me, 10*time.Second)
	ct := timesOf(t, c)
	finalWithin(t, ct, 480, 1500*ms+fSlack)
	if n := len(responses(received(c.messages(t)), 200, "INVITE")); n != 0 {
		t.Errorf("caller got %d 200s after its 480", n)
	}
	lateAnswer(t, me, fSlack, time.Time{})
	bye := at(me.messages(t), func(x sipMsg) bool { return !x.sent && x.method() == "BYE" })
	e.leakFree(maxTime(ct.end, bye), fSlack, "the 480 and the late 2xx's BYE")
	r := e.oneRecord(2 * time.Second)
	if r.Outcome != "noanswer" || r.Code != 480 {
		t.Errorf("CDR outcome %q code %d, want noanswer 480", r.Outcome, r.Code)
	}
	code, reason := legCode(r, key(me))
	t.Logf("CDR leg of the late member: code %d reason %q", code, reason)
}
