package sip

import (
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/ringroute/ringroute/metrics"
)

// /api/v1/groups and /api/v1/calls read Groups, Calls and Call: a member
// shows ringing while it rings and in call once it answered; the call
// shows its legs and, by Call-ID, why each member was or was not rung.
func TestStatusWhileRinging(t *testing.T) {
	caller, a, b := newPeer(t, "caller"), newPeer(t, "a"), newPeer(t, "b")
	cfg := groupConfig("all", a.uri("a"), b.uri("b"))
	s, _ := startServer(t, cfg, caller, a, b)

	cid := caller.invite("600")
	ia := a.request(sipmsg.INVITE, wait)
	ib := b.request(sipmsg.INVITE, wait)
	a.reply(ia, 180, "atag", "")
	b.reply(ib, 180, "btag", "")
	deadline := time.Now().Add(wait)
	for {
		g := s.Groups()[0]
		if g.Members[0].State == "ringing" && g.Calls == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group status while ringing: %+v", g)
		}
		time.Sleep(10 * time.Millisecond)
	}
	calls := s.Calls()
	if len(calls) != 1 || calls[0].CallID != cid || calls[0].State != "ringing" || len(calls[0].Legs) != 2 {
		t.Fatalf("calls: %+v", calls)
	}
	c, ok := s.Call(cid)
	if !ok || len(c.Decisions) == 0 || !strings.Contains(strings.Join(c.Decisions, "\n"), "pass 1") {
		t.Fatalf("decisions of %s: %v", cid, c.Decisions)
	}
	a.reply(ia, 200, "atag", sdp)
	a.request(sipmsg.ACK, wait)
	ok2 := caller.response(200, wait)
	caller.ackFor(ok2)
	deadline = time.Now().Add(wait)
	for s.Groups()[0].Members[0].State != "in call" {
		if time.Now().After(deadline) {
			t.Fatalf("member a after answer: %+v", s.Groups()[0].Members[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
	c2 := b.request(sipmsg.CANCEL, wait)
	b.reply(c2, 200, "", "")
	b.reply(ib, 487, "btag", "")
	caller.inDialogBye(ok2, 2)
	bye := a.request(sipmsg.BYE, wait)
	a.reply(bye, 200, "", "")
}

// Metrics count what happened: calls by group and outcome.
func TestMetricsCountCalls(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	mt := metrics.New()
	s, cdrs := startServerWith(t, groupConfig("all", m.uri("m")), Options{Metrics: mt}, caller, m)
	mt.Watch(s.Gauges())
	caller.invite("600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 486, "m", "")
	caller.response(486, wait)
	caller.invite("999")
	caller.response(404, wait)
	cdrs.wait(t, 2)
	mfs, err := mt.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "ringroute_calls_total" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			var group, outcome string
			for _, l := range mm.GetLabel() {
				switch l.GetName() {
				case "group":
					group = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			got[group+"/"+outcome] = mm.GetCounter().GetValue()
		}
	}
	if got["sales/busy"] != 1 || got["-/rejected"] != 1 {
		t.Errorf("ringroute_calls_total = %v", got)
	}
}
