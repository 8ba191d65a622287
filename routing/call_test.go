package routing

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringroute/ringroute/config"
)

func finishOf(t *testing.T, acts []Action) Record {
	t.Helper()
	for _, a := range acts {
		if f, ok := a.(Finish); ok {
			return f.Record
		}
	}
	t.Fatalf("no Finish in %v", acts)
	return Record{}
}

// A Setup without a group (a bug in the caller of Start) ends the call
// cleanly instead of panicking on the Runner goroutine.
func TestStartWithoutGroup(t *testing.T) {
	c, acts := Start(t0, Setup{CallID: "x"})
	if len(acts) != 2 || acts[0] != (RejectCaller{Code: 480}) {
		t.Fatalf("actions %v, want RejectCaller 480 and Finish", acts)
	}
	if r := finishOf(t, acts); r.Outcome != OutcomeFailed || len(r.Notes) != 1 {
		t.Errorf("record %+v", r)
	}
	if !c.Over() {
		t.Error("not Over with no leg started")
	}
}

// The CDR comes out once every leg has ended, so cancelled legs carry the
// 487 that came back after the caller was gone; its End is still the
// moment the caller's call ended.
func TestFinishWaitsForLegCodes(t *testing.T) {
	g := testGroup("all", 0, "sip:a@x", "sip:b@x")
	c, _ := Start(t0, testSetup(g))
	for _, a := range c.Step(t0.Add(time.Second), CallerCancelled{}) {
		if _, ok := a.(Finish); ok {
			t.Fatal("Finish before the cancelled legs ended")
		}
	}
	c.Step(t0.Add(2*time.Second), LegFailed{Leg: 1, Code: 487})
	c.Step(t0.Add(2*time.Second), LegAnswered{Leg: 2}) // crossed the CANCEL: HangUpLeg
	rec := finishOf(t, c.Step(t0.Add(3*time.Second), LegEnded{Leg: 2}))
	if !c.Over() {
		t.Error("not Over after Finish")
	}
	if rec.Legs[0].Code != 487 || rec.Legs[0].Reason != "caller gone" {
		t.Errorf("leg 1 = %+v, want code 487, caller gone", rec.Legs[0])
	}
	if want := t0.Add(time.Second); !rec.End.Equal(want) {
		t.Errorf("End = %v, want the caller's end %v", rec.End, want)
	}
	if rec.Outcome != OutcomeCancelled {
		t.Errorf("outcome %q", rec.Outcome)
	}
}

// The CDR line's JSON shape: the field names ops' tools read.
func TestRecordJSON(t *testing.T) {
	g := testGroup("all", 0, "sip:a@x")
	c, _ := Start(t0, testSetup(g))
	c.Step(t0.Add(time.Second), LegAnswered{Leg: 1})
	c.Step(t0.Add(time.Minute), CallerEnded{})
	rec := finishOf(t, c.Step(t0.Add(time.Minute), LegEnded{Leg: 1}))
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		`"call_id":"runner-1@test"`, `"group":"support"`, `"caller":"sip:caller@x"`, `"dialled":"600"`,
		`"answer":"2026-03-02T10:00:01Z"`, `"outcome":"answered"`, `"code":200`,
		`"answered_by":"uri:sip:a@x"`, `"answered_uri":"sip:a@x"`, `"groups":["support"]`,
		`"legs":[{"leg":1,"group":"support","member":"uri:sip:a@x","uri":"sip:a@x","start":"2026-03-02T10:00:00Z","code":200,"ring_ms":1000,"reason":"answered"}]`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("CDR JSON lacks %s:\n%s", want, got)
		}
	}
	for _, absent := range []string{`"fallback"`, `"notes"`} {
		if strings.Contains(got, absent) {
			t.Errorf("CDR JSON has empty %s:\n%s", absent, got)
		}
	}
}

// A config built by hand (no `check` to reject it) may nest two groups in
// each other. The inner run skips the group it is nested in rather than
// entering it again, and the call still rings both groups' own members.
func TestNestedCycleSkipsTheGroupOnThePath(t *testing.T) {
	a := testGroup("all", 30*time.Second, "sip:a@x")
	b := testGroup("all", 30*time.Second, "sip:b@x")
	b.Name = "inner"
	a.Members = append(a.Members, config.Member{Group: "inner"})
	b.Members = append(b.Members, config.Member{Group: a.Name})
	s := testSetup(a)
	s.Config = &config.Config{Groups: []*config.Group{a, b}}
	c, acts := Start(t0, s)
	acts = append(acts, c.Step(t0, Tick{})...)
	var uris []string
	for _, act := range acts {
		if sl, ok := act.(StartLeg); ok {
			uris = append(uris, sl.Target.URI)
		}
	}
	if fmt.Sprint(uris) != "[sip:a@x sip:b@x]" {
		t.Errorf("legs to %v, want [sip:a@x sip:b@x]", uris)
	}
	c.Step(t0.Add(time.Second), CallerCancelled{})
	c.Step(t0.Add(time.Second), LegFailed{Leg: 1, Code: 487})
	rec := finishOf(t, c.Step(t0.Add(time.Second), LegFailed{Leg: 2, Code: 487}))
	want := "group inner: group:" + a.Name + " skipped: it contains this group"
	if !slices.Contains(rec.Notes, want) {
		t.Errorf("notes %q, want %q among them", rec.Notes, want)
	}
}

// ring_in_use: false skips members in another call, never for being in
// this one: a member that also rings through a nested group is rung once,
// not refused as busy.
func TestInUseSkipsOtherCallsOnly(t *testing.T) {
	a := testGroup("all", 30*time.Second, "sip:a@x")
	b := testGroup("all", 30*time.Second, "sip:a@x")
	b.Name = "inner"
	a.RingInUse, b.RingInUse = false, false
	a.Members = append(a.Members, config.Member{Group: "inner"})
	s := testSetup(a)
	s.Config = &config.Config{Groups: []*config.Group{a, b}}
	s.State = NewState()
	c, _ := Start(t0, s)
	c.Step(t0, Tick{})
	c.Step(t0.Add(time.Second), CallerCancelled{})
	rec := finishOf(t, c.Step(t0.Add(time.Second), LegFailed{Leg: 1, Code: 487}))
	if want := "group inner: group:inner/uri:sip:a@x already rings in this call; rung once"; !slices.Contains(rec.Notes, want) {
		t.Errorf("notes %q, want %q among them", rec.Notes, want)
	}
	for _, n := range rec.Notes {
		if strings.Contains(n, "ring_in_use") {
			t.Errorf("note %q: the member was refused for this call's own leg", n)
		}
	}
}

// A 3xx from a member with follow_forward rings its first Contact as a
// new leg for the same member: the same group, member and From display
// name, and nothing of the old leg's address (Destination, Transport).
func TestRedirectRingsTheContactAsTheSameMember(t *testing.T) {
	g := testGroup("all", 30*time.Second, "sip:a@x")
	g.FollowForward = true
	s := testSetup(g)
	s.Caller.Display = "Alice"
	c, acts := Start(t0, s)
	acts = append(acts, c.Step(t0, Tick{})...)
	first := startLegs(acts)
	if len(first) != 1 || first[0].Target.Display != "Alice" {
		t.Fatalf("first legs %+v, want one to sip:a@x with display Alice", first)
	}
	next := startLegs(c.Step(t0.Add(time.Second), LegFailed{Leg: first[0].Leg, Code: 302, Contacts: []string{"sip:a@elsewhere"}}))
	want := first[0].Target
	want.URI = "sip:a@elsewhere"
	if len(next) != 1 || next[0].Target != want {
		t.Fatalf("after the 302: legs %+v, want one with target %+v", next, want)
	}
}

func startLegs(acts []Action) []StartLeg {
	var out []StartLeg
	for _, a := range acts {
		if s, ok := a.(StartLeg); ok {
			out = append(out, s)
		}
	}
	return out
}
