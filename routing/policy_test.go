package routing

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ringroute/ringroute/config"
)

// loadGroup loads one group from YAML the way the daemon does, so policy
// tests see exactly what Load makes of permissions and schedules.
func loadGroup(t *testing.T, yaml string) (*config.Config, *config.Group) {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c, c.Groups[0]
}

// startOutcome starts one call at now and returns its first actions'
// verdict: the code the caller was rejected with (0 if members ring), and
// the record if the call finished at once.
func startOutcome(t *testing.T, now time.Time, s Setup) (int, *Record) {
	t.Helper()
	_, acts := Start(now, s)
	code := 0
	var rec *Record
	for _, a := range acts {
		switch a := a.(type) {
		case RejectCaller:
			code = a.Code
		case Finish:
			r := a.Record
			rec = &r
		}
	}
	return code, rec
}

// TestScheduleTable: the schedule is read at the call's now, in the
// schedule's zone, with ranges over midnight and closed dates.
func TestScheduleTable(t *testing.T) {
	cfg, g := loadGroup(t, `
groups:
  - name: support
    extension: "600"
    schedule:
      timezone: Europe/Paris
      open: ["mon-fri 09:00-17:30", "sat 10:00-12:00", "fri 22:00-02:00"]
      closed_dates: ["2026-12-25"]
    members: [{uri: "sip:a@192.0.2.1"}]
    fallback: {closed: {reject: 603}}
`)
	paris, _ := time.LoadLocation("Europe/Paris")
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		when string
		open bool
	}{
		{"2026-12-24 09:00", true},  // Thursday, first minute
		{"2026-12-24 08:59", false}, // a minute early
		{"2026-12-24 17:29", true},
		{"2026-12-24 17:30", false}, // the end is exclusive
		{"2026-12-24 22:30", false}, // the night range is Fridays only
		{"2026-12-25 10:00", false}, // Friday, but a closed date
		{"2026-12-25 23:00", false}, // the closed date closes its night range too
		{"2026-12-26 00:30", true},  // a closed date closes only its own calendar day
		{"2026-12-26 11:00", true},  // Saturday morning
		{"2026-12-26 12:00", false},
		{"2026-12-27 11:00", false}, // Sunday
		{"2026-12-18 21:59", false}, // Friday just before the night range
		{"2026-12-18 23:30", true},  // Friday night
		{"2026-12-19 01:59", true},  // over midnight into Saturday
		{"2026-12-19 02:00", false}, // until 02:00
		{"2026-12-20 01:00", false}, // Saturday has no night range
		{"2026-07-01 08:30", false}, // summer time: 08:30 in Paris is 06:30 UTC
		{"2026-07-01 09:30", true},
		{"2026-03-29 09:30", false}, // Sunday of the clock change
		{"2026-03-30 09:00", true},  // the Monday after it
		{"2026-10-24 01:00", true},  // the night before winter time
		{"2026-10-24 09:59", false}, // Saturday before 10:00
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			s := Setup{CallID: "x", Config: cfg, Group: g, Caller: Party{URI: "sip:c@x"}}
			code, rec := startOutcome(t, at(tt.when), s)
			if tt.open && code != 0 {
				t.Errorf("at %s (%s): rejected %d, want ringing", tt.when, at(tt.when).UTC(), code)
			}
			if !tt.open && (code != 603 || rec == nil || rec.Outcome != OutcomeClosed) {
				t.Errorf("at %s: code %d record %+v, want 603 closed", tt.when, code, rec)
			}
		})
	}
}

// TestPermissionsTable: globs on the caller's From URI; deny wins.
func TestPermissionsTable(t *testing.T) {
	cfg, g := loadGroup(t, `
groups:
  - name: support
    extension: "600"
    permissions: {allow: ["sip:+1555*", "sip:*@pbx.example.com"], deny: ["sip:+1555999*", "sip:intern?@pbx.example.com"]}
    members: [{uri: "sip:a@192.0.2.1"}]
`)
	tests := []struct {
		from string
		ok   bool
	}{
		{"sip:+15551234@198.51.100.7", true},
		{"sip:alice@pbx.example.com", true},
		{"sip:+15559991234@198.51.100.7", false}, // allowed, but deny wins
		{"sip:intern1@pbx.example.com", false},
		{"sip:intern12@pbx.example.com", true}, // ? is exactly one character
		{"sip:+14441234@198.51.100.7", false},  // matches no allow
		{"sip:alice@PBX.example.com", false},   // matching is case-sensitive
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.from, func(t *testing.T) {
			s := Setup{CallID: "x", Config: cfg, Group: g, Caller: Party{URI: tt.from}}
			code, rec := startOutcome(t, t0, s)
			if tt.ok && code != 0 {
				t.Errorf("%q: rejected %d, want ringing", tt.from, code)
			}
			if !tt.ok && (code != 403 || rec == nil || rec.Outcome != OutcomeDenied || rec.Fallback != "") {
				t.Errorf("%q: code %d record %+v, want 403 denied without fallback", tt.from, code, rec)
			}
		})
	}
}

// TestMaxCallsTable: the n+1th call at once is congestion; a call that
// leaves (any way) frees its slot; without a State there is no limit.
func TestMaxCallsTable(t *testing.T) {
	g := testGroup("all", 30*time.Second, "sip:a@x")
	g.MaxCalls = 2
	g.RingInUse = true
	for _, withState := range []bool{true, false} {
		t.Run(fmt.Sprintf("state=%v", withState), func(t *testing.T) {
			var st *State
			if withState {
				st = NewState()
			}
			s := testSetup(g)
			s.State = st
			var calls []*Call
			for i := 0; i < 3; i++ {
				c, acts := Start(t0, s)
				calls = append(calls, c)
				rejected := slices.Contains(acts, Action(RejectCaller{Code: 486}))
				if want := withState && i == 2; rejected != want {
					t.Fatalf("call %d: rejected %v, want %v (actions %v)", i+1, rejected, want, acts)
				}
			}
			if !withState {
				return
			}
			if n := st.Calls("support"); n != 2 {
				t.Fatalf("Calls = %d, want 2", n)
			}
			// The first caller gives up: its slot is free again.
			calls[0].Step(t0.Add(time.Second), CallerCancelled{})
			if n := st.Calls("support"); n != 1 {
				t.Fatalf("after a cancel, Calls = %d, want 1", n)
			}
			if _, acts := Start(t0.Add(time.Second), s); slices.Contains(acts, Action(RejectCaller{Code: 486})) {
				t.Fatalf("call after a slot was freed rejected: %v", acts)
			}
		})
	}
}

// TestNoStateNoMemory: Setup without State behaves as before there was
// one: round robin always starts at the first member, ring_in_use has no
// one to skip.
func TestNoStateNoMemory(t *testing.T) {
	g := testGroup("memorized_round_robin", 30*time.Second, "sip:a@x", "sip:b@x")
	g.RingInUse = false
	for i := 0; i < 3; i++ {
		c, acts := Start(t0, testSetup(g))
		if sl, ok := acts[0].(StartLeg); !ok || sl.Target.URI != "sip:a@x" {
			t.Fatalf("call %d: first action %v, want StartLeg to sip:a@x", i+1, acts[0])
		}
		c.Step(t0.Add(time.Second), LegAnswered{Leg: 1})
	}
}

// TestPassRingsEveryMemberOnce is the routing-level property: in a linear
// or round robin group with no answer, each pass rings every member
// exactly once, whatever the round robin memory left by earlier calls.
func TestPassRingsEveryMemberOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, strat := range []string{"linear", "memorized_round_robin", "least_recent", "fewest_calls", "random", "weight_random"} {
		t.Run(strat, func(t *testing.T) {
			st := NewState()
			for run := 0; run < 50; run++ {
				n := 1 + r.IntN(6)
				passes := 1 + r.IntN(3)
				var uris []string
				for i := 0; i < n; i++ {
					uris = append(uris, fmt.Sprintf("sip:m%d@x", i))
				}
				g := testGroup(strat, 0, uris...)
				g.Repeats = passes - 1
				s := testSetup(g)
				s.State = st
				s.Rand = rand.New(rand.NewPCG(uint64(run), 1))
				c, acts := Start(t0, s)
				var rung []string
				now := t0
				for !c.Over() {
					for _, a := range acts {
						switch a := a.(type) {
						case StartLeg:
							rung = append(rung, a.Target.URI)
						}
					}
					// Answer every CANCEL at once, then tick.
					var next []Action
					for _, a := range acts {
						if cl, ok := a.(CancelLeg); ok {
							next = append(next, c.Step(now, LegFailed{Leg: cl.Leg, Code: 487})...)
						}
					}
					if len(next) > 0 {
						acts = next
						continue
					}
					d, ok := c.Deadline()
					if !ok {
						break
					}
					now = d
					acts = c.Step(now, Tick{})
				}
				if len(rung) != n*passes {
					t.Fatalf("run %d: %d members x %d passes rang %d legs: %v", run, n, passes, len(rung), rung)
				}
				for p := 0; p < passes; p++ {
					pass := slices.Clone(rung[p*n : (p+1)*n])
					slices.Sort(pass)
					if !slices.Equal(pass, slices.Sorted(slices.Values(uris))) {
						t.Fatalf("run %d pass %d rang %v, want each of %v once", run, p+1, rung[p*n:(p+1)*n], uris)
					}
				}
				if !st.idle() {
					t.Fatalf("run %d: State not idle after the call", run)
				}
			}
		})
	}
}

// TestRoundRobinRotates: with three members who all answer at once, four
// calls in a row ring 1 2 3 1 first (the sipp end-to-end test's scenario).
func TestRoundRobinRotates(t *testing.T) {
	g := testGroup("round_robin", 30*time.Second, "sip:m1@x", "sip:m2@x", "sip:m3@x")
	g.Strategy = "memorized_round_robin"
	st := NewState()
	var first []string
	now := t0
	for i := 0; i < 4; i++ {
		s := testSetup(g)
		s.State = st
		c, acts := Start(now, s)
		first = append(first, acts[0].(StartLeg).Target.URI)
		now = now.Add(time.Second)
		c.Step(now, LegAnswered{Leg: 1})
		now = now.Add(time.Second)
		c.Step(now, LegEnded{Leg: 1})
		if !c.Over() {
			t.Fatalf("call %d not over", i+1)
		}
	}
	if want := []string{"sip:m1@x", "sip:m2@x", "sip:m3@x", "sip:m1@x"}; !slices.Equal(first, want) {
		t.Errorf("first rung %v, want %v", first, want)
	}
}

func TestURIIdentity(t *testing.T) {
	same := [][]string{
		{"sip:1002@192.0.2.5", "sip:1002@192.0.2.5:5060", "SIP:1002@192.0.2.5;transport=udp", "sip:1002@192.0.2.5?subject=x"},
		{"sip:alice@PBX.example.com", "sip:alice@pbx.example.com"},
		{"sips:a@h", "sips:a@h:5061"},
	}
	for _, set := range same {
		for _, u := range set[1:] {
			if a, b := uriIdentity(set[0]), uriIdentity(u); a != b {
				t.Errorf("uriIdentity(%q) = %q, uriIdentity(%q) = %q; want equal", set[0], a, u, b)
			}
		}
	}
	differ := [][2]string{
		{"sip:Alice@h", "sip:alice@h"}, // the user part is case-sensitive
		{"sip:a@h", "sips:a@h"},
		{"sip:a@h:5070", "sip:a@h"},
		{"sips:a@h:5060", "sips:a@h"},
	}
	for _, d := range differ {
		if uriIdentity(d[0]) == uriIdentity(d[1]) {
			t.Errorf("uriIdentity(%q) == uriIdentity(%q); want different", d[0], d[1])
		}
	}
	if got := memberIdentity(config.Member{User: "alice"}); got != "user:alice" {
		t.Errorf("memberIdentity(user alice) = %q", got)
	}
}

// TestStateReload: memory of groups and members gone from the new config
// is forgotten; calls still in a vanished group keep being counted.
func TestStateReload(t *testing.T) {
	st := NewState()
	st.answered([]memKey{{"support", "uri:sip:a@x"}, {"support", "uri:sip:b@x"}, {"gone", "uri:sip:a@x"}}, t0)
	st.enter("gone", 0)
	st.Reload(&config.Config{Groups: []*config.Group{{Name: "support", Members: []config.Member{{URI: "sip:b@x"}}}}})
	if n, _ := st.Answered("support", "uri:sip:a@x"); n != 0 {
		t.Errorf("removed member remembered: %d answered", n)
	}
	if n, last := st.Answered("support", "uri:sip:b@x"); n != 1 || !last.Equal(t0) {
		t.Errorf("kept member: %d answered, last %v", n, last)
	}
	if got := st.memory("support").last; got != "uri:sip:b@x" {
		t.Errorf("round robin last = %q", got)
	}
	if st.Calls("gone") != 1 {
		t.Errorf("calls of a vanished group dropped while the call is up")
	}
	st.leave("gone")
	st.Reload(&config.Config{})
	if !st.idle() || len(st.groups) != 0 {
		t.Errorf("after the call left and another reload: %d groups", len(st.groups))
	}
}
