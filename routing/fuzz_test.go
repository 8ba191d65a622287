package routing

import (
	"fmt"
	"testing"
	"time"

	"github.com/ringroute/ringroute/config"
)

// fuzzConfig is a handful of groups that between them reach every feature
// of the Call: strategies of each shape, delays, users with several
// contacts, nested groups (two deep, by their own strategies), redirects,
// every kind of fallback, a fallback cycle (for the hop limit), a closed
// group, a denied one, max_calls, ring_in_use: false and distribute_evenly.
func fuzzConfig() *config.Config {
	s := time.Second
	return &config.Config{Groups: []*config.Group{
		{
			Name: "support", Enabled: true, Strategy: "linear",
			Timeout: 30 * s, MemberTimeout: 5 * s, RetryDelay: s,
			AnsweredElsewhere: true, FollowForward: true,
			Members: []config.Member{{URI: "sip:a@x"}, {User: "alice"}, {Group: "sales", Delay: s}},
			Fallback: config.Fallbacks{
				NoAnswer: config.Fallback{URI: "sip:vm@x", Timeout: 10 * s},
				Busy:     config.Fallback{Group: "overflow"},
			},
		},
		{
			Name: "sales", Enabled: true, Strategy: "all",
			MemberTimeout: 8 * s, Repeats: 2, FollowForward: true,
			Members: []config.Member{{URI: "sip:s1@x"}, {User: "bob", Delay: 2 * s, Timeout: 3 * s}, {User: "nobody"}},
			Fallback: config.Fallbacks{
				NoAnswer: config.Fallback{User: "alice"},
				Busy:     config.Fallback{Reject: 486},
			},
		},
		{
			Name: "overflow", Enabled: true, Strategy: "random",
			Timeout: 4 * s, MemberTimeout: 3 * s,
			Members:  []config.Member{{URI: "sip:o1@x"}, {URI: "sip:o2@x"}},
			Fallback: config.Fallbacks{NoAnswer: config.Fallback{Group: "loop"}},
		},
		{
			Name: "loop", Enabled: true, Strategy: "all", Timeout: s, MemberTimeout: s,
			Members:  []config.Member{{URI: "sip:l@x"}},
			Fallback: config.Fallbacks{NoAnswer: config.Fallback{Group: "overflow"}},
		},
		{
			Name: "closed", Enabled: false,
			Fallback: config.Fallbacks{Closed: config.Fallback{Group: "sales"}},
		},
		{
			Name: "prog", Enabled: true, Strategy: "progressive", Timeout: 6 * s, MemberTimeout: 2 * s,
			RingInUse: false, MaxCalls: 1, FollowForward: true,
			Members: []config.Member{{URI: "sip:s1@x"}, {User: "alice"}, {Group: "rr"}},
			Fallback: config.Fallbacks{
				Busy:       config.Fallback{Group: "support"},
				Congestion: config.Fallback{Group: "overflow"},
			},
		},
		{
			Name: "rr", Enabled: true, Strategy: "memorized_round_robin", Repeats: 1, MemberTimeout: 2 * s,
			RetryDelay: s / 2, Timeout: 5 * s, DistributeEvenly: true, RingInUse: true,
			Permissions: config.Permissions{Allow: []string{"sip:caller@*"}},
			Members:     []config.Member{{URI: "sip:r1@x"}, {User: "bob"}, {Group: "sales", Timeout: 3 * s}, {URI: "sip:s1@x"}},
		},
		{
			Name: "denied", Enabled: true, Permissions: config.Permissions{Deny: []string{"*"}},
			Members: []config.Member{{URI: "sip:a@x"}},
		},
	}}
}

func fuzzDir() fakeDir {
	return fakeDir{
		"alice": {{URI: "sip:alice@10.0.0.1"}, {URI: "sip:alice@10.0.0.2"}},
		"bob":   {{URI: "sip:bob@10.0.0.3"}},
	}
}

var fuzzCodes = []int{486, 600, 603, 404, 408, 480, 487, 500, 503, 302, 301, 183}

// FuzzCall feeds event sequences derived from the input into a Call and
// checks, on every Step, the invariants of checker (one answer at most,
// one Finish, nothing but leg cleanup after it, leg IDs counting up, no
// CANCEL or BYE twice, the deadline never in the past, ...). It then plays
// package sip's part to the end (487 for every CANCEL, LegEnded for every
// BYE, Ticks, the caller's BYE once answered) and requires the call to be
// Over: whatever happened before, no call is left stuck.
func FuzzCall(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{0, 1, 1, 10, 4, 0, 0})
	f.Add([]byte{1, 0, 1, 2, 1, 2, 3, 1, 1, 0})
	f.Add([]byte{1, 2, 1, 0, 2, 2, 0, 2, 3, 1, 7, 0, 0, 1, 4, 0})
	f.Add([]byte{2, 7, 0, 0, 7, 0, 0, 7, 0, 0, 1, 5, 3})
	f.Add([]byte{3, 1, 1, 1, 6, 0, 0, 4, 0, 0})
	f.Add([]byte{0, 8, 1, 3, 8, 2, 3, 8, 3, 3, 8, 4, 3, 1, 5, 2})
	f.Add([]byte{4, 2, 1, 0, 2, 2, 1, 2, 3, 2, 2, 4, 0, 7, 0, 0, 1, 5, 0})
	f.Add([]byte{5, 7, 0, 0, 7, 0, 0, 7, 0, 0, 1, 3, 2})
	f.Add([]byte{0x85, 7, 0, 0, 2, 1, 1, 7, 0, 0})
	f.Add([]byte{6, 7, 0, 0, 1, 2, 1, 7, 0, 0, 7, 0, 0, 1, 4, 0})
	f.Add([]byte{0x86, 7, 0, 0, 7, 0, 0, 2, 3, 1, 7, 0, 0})
	f.Add([]byte{7})
	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, data []byte) {
	{
		if len(data) == 0 {
			return
		}
		cfg := fuzzConfig()
		g := cfg.Groups[int(data[0]&0x7f)%len(cfg.Groups)]
		st := NewState()
		// The high bit starts another call first, to sales, left ringing,
		// so that max_calls, ring_in_use and "ring once" meet a State that
		// is not empty.
		var bg *fuzzRun
		if data[0]&0x80 != 0 {
			bg = &fuzzRun{t: t, now: t0, check: newChecker()}
			var acts []Action
			bg.call, acts = Start(t0, Setup{
				CallID: "bg", Config: cfg, Group: cfg.Groups[1], Caller: Party{URI: "sip:other@x", User: "bob"},
				Directory: fuzzDir(), State: st,
			})
			bg.observe(acts)
		}
		fz := &fuzzRun{t: t, now: t0, check: newChecker()}
		var acts []Action
		fz.call, acts = Start(t0, Setup{
			CallID: "fuzz", Config: cfg, Group: g, Dialled: g.Name,
			Caller: Party{URI: "sip:caller@x", Display: "C"}, Directory: fuzzDir(), State: st,
		})
		fz.observe(acts)
		data = data[1:]
		// A call sees a few dozen events; the fuzzer's megabyte inputs
		// would only measure the O(legs) scans a real call never feels.
		if len(data) > 3*256 {
			data = data[:3*256]
		}
		for len(data) >= 3 {
			fz.random(data[0], data[1], data[2])
			data = data[3:]
		}
		fz.drain()
		if bg != nil {
			bg.now = fz.now
			bg.step(CallerCancelled{})
			bg.drain()
		}
		// Whatever happened, every call has given back its max_calls slot
		// and every member it held.
		if !st.idle() {
			t.Fatalf("State not idle after every call ended: groups %+v in use %v\n%v", st.groups, st.inUse, fz.log)
		}
	}
}

type fuzzRun struct {
	t     *testing.T
	call  *Call
	now   time.Time
	check *checker
	log   []string
}

func (fz *fuzzRun) step(ev Event) {
	fz.log = append(fz.log, fmt.Sprintf("%s %s", rel(fz.now), formatEvent(ev)))
	fz.check.event(ev)
	over := fz.call.Over()
	acts := fz.call.Step(fz.now, ev)
	if over && len(acts) > 0 {
		fz.t.Fatalf("actions %v after Over\n%v", acts, fz.log)
	}
	fz.observe(acts)
}

func (fz *fuzzRun) observe(acts []Action) {
	for _, a := range acts {
		fz.log = append(fz.log, "  "+formatAction(a))
	}
	if err := fz.check.actions(fz.call, fz.now, acts); err != nil {
		fz.t.Fatalf("%v\n%v", err, fz.log)
	}
}

// random plays one event: op picks the kind, arg a leg (sometimes one that
// does not exist) or a code, dt how far time moves first.
func (fz *fuzzRun) random(op, arg, dt byte) {
	fz.now = fz.now.Add(time.Duration(dt) * 50 * time.Millisecond)
	legs := len(fz.call.legs)
	l := LegID(int(arg) % (legs + 2)) // 0 and legs+1 are unknown
	code := fuzzCodes[int(arg)%len(fuzzCodes)]
	switch op % 13 {
	case 0:
		fz.step(LegRinging{Leg: l, Code: 180})
	case 1:
		fz.step(LegAnswered{Leg: l})
	case 2:
		fz.step(LegFailed{Leg: l, Code: code})
	case 3:
		fz.step(LegEnded{Leg: l})
	case 4:
		fz.step(CallerCancelled{})
	case 5:
		fz.step(CallerEnded{})
	case 6:
		fz.step(CallerAnswerFailed{})
	case 7:
		// The Runner's timer: jump to the deadline, as it would fire.
		if d, ok := fz.call.Deadline(); ok && d.After(fz.now) {
			fz.now = d
		}
		fz.step(Tick{})
	case 8:
		fz.step(LegFailed{Leg: l, Code: 302, Contacts: []string{fmt.Sprintf("sip:fwd%d@y", arg)}})
	case 9:
		fz.step(Tick{}) // a stale or early Tick
	case 10:
		fz.step(Shutdown{})
	case 11:
		fz.step(MediaTimeout{})
	case 12:
		fz.step(PickedUp{By: "carol", URI: "sip:carol@phone"})
	}
}

// drain answers what sip would answer until the call is Over.
func (fz *fuzzRun) drain() {
	for i := 0; i < 10000; i++ {
		if fz.call.Over() {
			if !fz.check.finished {
				fz.t.Fatalf("Over without Finish\n%v", fz.log)
			}
			if acts := fz.call.Step(fz.now, LegAnswered{Leg: 1}); len(acts) != 0 {
				fz.t.Fatalf("Step after Over returned %v", acts)
			}
			return
		}
		fed := false
		for _, l := range fz.call.legs {
			switch l.state {
			case legCancelled:
				fz.step(LegFailed{Leg: l.id, Code: 487})
				fed = true
			case legHungUp:
				fz.step(LegEnded{Leg: l.id})
				fed = true
			}
		}
		if fed {
			continue
		}
		if d, ok := fz.call.Deadline(); ok {
			fz.now = d
			fz.step(Tick{})
			continue
		}
		if fz.call.phase == phaseAnswered {
			fz.now = fz.now.Add(time.Minute)
			fz.step(CallerEnded{})
			continue
		}
		fz.t.Fatalf("stuck: phase %d, no deadline, legs %v\n%v", fz.call.phase, fz.legStates(), fz.log)
	}
	fz.t.Fatalf("not Over after 10000 steps\n%v", fz.log)
}

func (fz *fuzzRun) legStates() []string {
	var out []string
	for _, l := range fz.call.legs {
		out = append(out, fmt.Sprintf("leg%d:%d", l.id, l.state))
	}
	return out
}
