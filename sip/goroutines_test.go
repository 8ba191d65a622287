package sip

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// A ringing call costs one goroutine however many members it rings: the
// call's own, which waits on the routing runner and on every leg's INVITE
// transaction at once. Goroutine stacks were most of a ringing call's
// memory when each leg had one (five per call to a group of three).
// Six members take the wait past its plain select (fastLegs).
func TestRingingCallGoroutines(t *testing.T) {
	for _, n := range []int{3, 6} {
		t.Run(fmt.Sprintf("%d members", n), func(t *testing.T) { ringingGoroutines(t, n) })
	}
}

func ringingGoroutines(t *testing.T, n int) {
	const calls = 20
	caller := newPeer(t, "caller")
	var members []*peer
	var uris []string
	for i := 0; i < n; i++ {
		p := newPeer(t, fmt.Sprintf("m%d", i))
		members = append(members, p)
		uris = append(uris, p.uri(p.name))
	}
	cfg := groupConfig("all", uris...)
	cfg = strings.Replace(cfg, "timeout: 3s", "timeout: 60s", 1)
	cfg = strings.Replace(cfg, "member_timeout: 2s", "member_timeout: 60s", 1)
	startServer(t, cfg, append([]*peer{caller}, members...)...)

	before := runtime.NumGoroutine()
	var invites []*sipmsg.Request
	for i := 0; i < calls; i++ {
		caller.invite("600")
		for _, p := range members {
			inv := p.request(sipmsg.INVITE, wait)
			p.reply(inv, 180, p.name+"tag", "")
			invites = append(invites, inv)
		}
		caller.response(180, wait)
	}
	defer func() {
		// Every member busy ends every call.
		for i, inv := range invites {
			p := members[i%n]
			p.reply(inv, 486, p.name+"tag", "")
		}
		for i := 0; i < calls; i++ {
			caller.next("final response", func(m sipmsg.Message) bool {
				r, ok := m.(*sipmsg.Response)
				return ok && r.StatusCode >= 300
			}, wait)
		}
	}()
	// sipgo hands each message to a goroutine of its own; those end
	// as soon as the message is handled.
	var per float64
	deadline := time.Now().Add(5 * time.Second)
	for {
		per = float64(runtime.NumGoroutine()-before) / calls
		if per <= 1.1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%.2f goroutines per ringing call", per)
	if per > 1.1 {
		t.Errorf("%.2f goroutines per ringing call to %d members, want 1", per, n)
	}
}
