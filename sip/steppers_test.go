package sip

import (
	"runtime"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/ringroute/ringroute/routing"
)

type countStep struct {
	wg *sync.WaitGroup
}

func (c countStep) step() { c.wg.Done() }

// Every step asked for runs, from several goroutines at once and more than
// the queue holds; close waits for the steppers to stop, and a step asked
// for after it still runs.
func TestSteppersRunEveryStep(t *testing.T) {
	before := runtime.NumGoroutine()
	var p steppers
	var wg sync.WaitGroup
	const senders, each = 4, 5000 // 20 000 > the queue's 4096
	wg.Add(senders * each)
	var send sync.WaitGroup
	for range senders {
		send.Add(1)
		go func() {
			defer send.Done()
			for range each {
				p.run(countStep{&wg})
			}
		}()
	}
	send.Wait()
	waitOrFail(t, &wg, "steps before close")
	p.close()
	p.close() // as a second Close does
	wg.Add(1)
	p.run(countStep{&wg})
	waitOrFail(t, &wg, "a step after close")
	for end := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after close, %d before", n, before)
	}
}

func waitOrFail(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not all ran", what)
	}
}

// blockStep holds a stepper until release is closed.
type blockStep struct{ release <-chan struct{} }

func (b blockStep) step() { <-b.release }

// What sets a call up over UDP, a new INVITE and a member's answer, does
// not wait behind steps queued before it (udpReader.urgent): with every
// stepper held and more steps queued, the member still gets its INVITE
// and the caller the 200. The rest of the call (the caller's ACK, its
// BYE) waits for the steppers, and the call ends well once they are free.
func TestCallIsSetUpWhileTheSteppersAreBusy(t *testing.T) {
	caller, member := newPeer(t, "caller"), newPeer(t, "m1")
	s, cdrs := startServer(t, groupConfig("all", member.uri("m1")), caller, member)

	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // before startServer's cleanup, which waits for the steppers
	// 4 more than there are steppers: at least 4 stay queued.
	for range max(4, 2*runtime.GOMAXPROCS(0)) + 4 {
		s.steppers.run(blockStep{release})
	}

	caller.invite("600")
	caller.response(100, wait)
	inv := member.request(sipmsg.INVITE, wait)
	// At once: a step kicked by the leg's Timer A (T1, 500 ms, were the
	// 200 later) would wait behind the held steppers, and the 200 after it
	// with it, since a call is stepped by one goroutine at a time.
	member.reply(inv, 200, "m1tag", sdp)
	ok := caller.response(200, wait)
	member.request(sipmsg.ACK, wait)

	free()
	caller.ackFor(ok)
	caller.inDialogBye(ok, 2)
	caller.response(200, wait)
	bye := member.request(sipmsg.BYE, wait)
	member.reply(bye, 200, "", "")
	if r := cdrs.wait(t, 1)[0]; r.Outcome != routing.OutcomeAnswered {
		t.Errorf("CDR outcome %q, want answered", r.Outcome)
	}
}

// eachP runs f with the runtime's Ps as they are, and with one: then the
// UDP read loop runs a new INVITE's handler and a call's answer itself
// (steppers.behind), and whatever may wait (a re-INVITE, a pickup) must
// still get a goroutine of its own (mayWait).
func eachP(t *testing.T, f func(*testing.T)) {
	t.Run("procs=n", f)
	t.Run("procs=1", func(t *testing.T) {
		prev := runtime.GOMAXPROCS(1)
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
		f(t)
	})
}
