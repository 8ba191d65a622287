package routing

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ringroute/ringroute/config"
)

// Runner tests run inside a synctest bubble with the real time package, so
// timers fire at exact virtual times and a goroutine left behind fails the
// test. Never put a socket in here: it freezes virtual time.

// bubbleClock is the Clock inside the bubble: time.Now and time.AfterFunc,
// plus a count of timers still pending, since a forgotten timer would not
// block the bubble (it fires harmlessly when time runs on) but would be a
// leak in production.
type bubbleClock struct {
	mu         sync.Mutex
	pending    int
	maxPending int
}

func (c *bubbleClock) Now() time.Time { return time.Now() }

func (c *bubbleClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	c.pending++
	c.maxPending = max(c.maxPending, c.pending)
	c.mu.Unlock()
	bt := &bubbleTimer{c: c}
	bt.t = time.AfterFunc(d, func() {
		if bt.settle() {
			f()
		}
	})
	return bt
}

type bubbleTimer struct {
	c    *bubbleClock
	t    *time.Timer
	once sync.Once
}

// settle marks the timer as no longer pending; true the first time.
func (bt *bubbleTimer) settle() bool {
	first := false
	bt.once.Do(func() {
		first = true
		bt.c.mu.Lock()
		bt.c.pending--
		bt.c.mu.Unlock()
	})
	return first
}

func (bt *bubbleTimer) Stop() bool {
	if bt.t.Stop() {
		bt.settle()
		return true
	}
	return false
}

func (c *bubbleClock) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != 0 {
		t.Errorf("%d timers still pending after Done", c.pending)
	}
	if c.maxPending > 1 {
		t.Errorf("%d timers pending at once; the Runner keeps one", c.maxPending)
	}
}

// fakeSIP is an Executor that plays package sip: it records every action
// with its virtual time and answers as a scripted network would.
type fakeSIP struct {
	start time.Time
	r     *Runner

	answerAfter map[string]time.Duration // StartLeg to this URI: LegAnswered after
	failAfter   map[string]time.Duration // StartLeg to this URI: LegFailed 486 after
	cancelTook  time.Duration            // CancelLeg: LegFailed 487 after
	talk        time.Duration            // AnswerCaller: CallerEnded after; 0: never

	mu  sync.Mutex
	log []string
}

func (f *fakeSIP) Execute(a Action) {
	f.mu.Lock()
	f.log = append(f.log, fmt.Sprintf("%-5s %s", secs(time.Since(f.start)), formatAction(a)))
	f.mu.Unlock()
	post := func(d time.Duration, ev Event) { time.AfterFunc(d, func() { f.r.Post(ev) }) }
	switch a := a.(type) {
	case StartLeg:
		if d, ok := f.answerAfter[a.Target.URI]; ok {
			post(d, LegAnswered{Leg: a.Leg})
		}
		if d, ok := f.failAfter[a.Target.URI]; ok {
			post(d, LegFailed{Leg: a.Leg, Code: 486})
		}
	case CancelLeg:
		post(f.cancelTook, LegFailed{Leg: a.Leg, Code: 487})
	case HangUpLeg:
		post(0, LegEnded{Leg: a.Leg})
	case AnswerCaller:
		if f.talk > 0 {
			post(f.talk, CallerEnded{})
		}
	}
}

func (f *fakeSIP) lines() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, "\n")
}

func testGroup(strategy string, timeout time.Duration, members ...string) *config.Group {
	g := &config.Group{
		Name: "support", Enabled: true, Strategy: strategy, Timeout: timeout,
		MemberTimeout: 5 * time.Second, RetryDelay: time.Second, AnsweredElsewhere: true,
	}
	for _, m := range members {
		g.Members = append(g.Members, config.Member{URI: m})
	}
	return g
}

func testSetup(g *config.Group) Setup {
	return Setup{
		CallID: "runner-1@test", Config: &config.Config{Groups: []*config.Group{g}},
		Group: g, Dialled: "600", Caller: Party{URI: "sip:caller@x"},
	}
}

// runCall runs a call to its end inside the current bubble and returns how
// long it took in virtual time.
func runCall(t *testing.T, s Setup, sip *fakeSIP, log *zap.Logger) time.Duration {
	t.Helper()
	clk := &bubbleClock{}
	sip.start = time.Now()
	r := NewRunner(s, clk, sip, log)
	sip.r = r
	go r.Run()
	<-r.Done()
	took := time.Since(sip.start)
	clk.check(t)
	return took
}

func checkLines(t *testing.T, got, want string) {
	t.Helper()
	want = strings.TrimSpace(want)
	if got != want {
		t.Errorf("actions:\n%s\nwant:\n%s", got, want)
	}
}

// SPEC "One call" §3 worked example, through the Runner and real (virtual)
// timers: to the millisecond, and the Runner is gone the moment the last
// leg has ended.
func TestRunnerWorkedExample(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sip := &fakeSIP{}
		took := runCall(t, testSetup(testGroup("linear", 30*time.Second, "sip:a@x", "sip:b@x")), sip, nil)
		checkLines(t, sip.lines(), `
0s    StartLeg leg1 sip:a@x (support uri:sip:a@x)
5s    CancelLeg leg1 ring timeout
6s    StartLeg leg2 sip:b@x (support uri:sip:b@x)
11s   CancelLeg leg2 ring timeout
12s   StartLeg leg3 sip:a@x (support uri:sip:a@x)
17s   CancelLeg leg3 ring timeout
18s   StartLeg leg4 sip:b@x (support uri:sip:b@x)
23s   CancelLeg leg4 ring timeout
24s   StartLeg leg5 sip:a@x (support uri:sip:a@x)
29s   CancelLeg leg5 ring timeout
30s   RejectCaller 480
30s   Finish noanswer 480`)
		if took != 30*time.Second {
			t.Errorf("Run took %v, want 30s", took)
		}
	})
}

// SPEC §6 and §9: the first answer wins, the other leg is CANCELled, and
// the call lasts until the caller's BYE.
func TestRunnerAnswerThenBye(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sip := &fakeSIP{
			answerAfter: map[string]time.Duration{"sip:b@x": 2500 * time.Millisecond},
			cancelTook:  20 * time.Millisecond,
			talk:        time.Minute,
		}
		took := runCall(t, testSetup(testGroup("all", 30*time.Second, "sip:a@x", "sip:b@x")), sip, nil)
		checkLines(t, sip.lines(), `
0s    StartLeg leg1 sip:a@x (support uri:sip:a@x)
0s    StartLeg leg2 sip:b@x (support uri:sip:b@x)
2.5s  AnswerCaller leg2
2.5s  CancelLeg leg1 answered elsewhere +elsewhere
62.5s HangUpLeg leg2
62.5s Finish answered 200`)
		if took != 62500*time.Millisecond {
			t.Errorf("Run took %v, want 62.5s", took)
		}
	})
}

// Run, and the CDR (Finish), last until every leg has ended: here the
// CANCELs' 487s take 2s to come back.
func TestRunnerWaitsForLegs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sip := &fakeSIP{cancelTook: 2 * time.Second}
		g := testGroup("all", 3*time.Second, "sip:a@x", "sip:b@x")
		clk := &bubbleClock{}
		sip.start = time.Now()
		r := NewRunner(testSetup(g), clk, sip, nil)
		sip.r = r
		go r.Run()

		time.Sleep(4 * time.Second)
		synctest.Wait()
		select {
		case <-r.Done():
			t.Fatal("Run returned at 4s with legs still open")
		default:
		}
		<-r.Done()
		if took := time.Since(sip.start); took != 5*time.Second {
			t.Errorf("Run took %v, want 5s (3s group timeout + 2s for the 487s)", took)
		}
		clk.check(t)
		checkLines(t, sip.lines(), `
0s    StartLeg leg1 sip:a@x (support uri:sip:a@x)
0s    StartLeg leg2 sip:b@x (support uri:sip:b@x)
3s    CancelLeg leg1 group timeout
3s    CancelLeg leg2 group timeout
3s    RejectCaller 480
5s    Finish noanswer 480`)
	})
}

// A member failing early moves the deadline: the timer armed for its ring
// end is replaced, never left pending beside the new one, and its firing
// changes nothing.
func TestRunnerRearms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sip := &fakeSIP{failAfter: map[string]time.Duration{"sip:a@x": time.Second}}
		g := testGroup("linear", 0, "sip:a@x", "sip:b@x")
		took := runCall(t, testSetup(g), sip, nil)
		checkLines(t, sip.lines(), `
0s    StartLeg leg1 sip:a@x (support uri:sip:a@x)
2s    StartLeg leg2 sip:b@x (support uri:sip:b@x)
7s    CancelLeg leg2 ring timeout
7s    RejectCaller 480
7s    Finish noanswer 480`)
		if took != 7*time.Second {
			t.Errorf("Run took %v, want 7s", took)
		}
	})
}

// A call refused at once (closed group) needs no timer and no event: Run
// returns straight away.
func TestRunnerImmediateEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := testGroup("linear", 0, "sip:a@x")
		g.Enabled = false
		sip := &fakeSIP{}
		if took := runCall(t, testSetup(g), sip, nil); took != 0 {
			t.Errorf("Run took %v, want 0s", took)
		}
		checkLines(t, sip.lines(), `
0s    RejectCaller 480
0s    Finish closed 480`)
	})
}

// Events posted before Run starts are kept, not dropped; Post after Run
// has returned is a no-op that neither blocks nor panics.
func TestRunnerPostBeforeAndAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := testGroup("all", 0, "sip:a@x")
		sip := &fakeSIP{}
		clk := &bubbleClock{}
		sip.start = time.Now()
		r := NewRunner(testSetup(g), clk, sip, nil)
		sip.r = r
		r.Post(CallerCancelled{})
		go r.Run()
		<-r.Done()
		clk.check(t)
		checkLines(t, sip.lines(), `
0s    StartLeg leg1 sip:a@x (support uri:sip:a@x)
0s    CancelLeg leg1 caller gone
0s    Finish cancelled 487`)
		for i := 0; i < 3; i++ {
			r.Post(LegAnswered{Leg: 1})
		}
		synctest.Wait()
		if n := strings.Count(sip.lines(), "\n") + 1; n != 3 {
			t.Errorf("%d actions after posts to a stopped Runner, want the 3 from before", n)
		}
	})
}

// Events from many goroutines at once all arrive (the queue never drops),
// each is logged at debug with the call's call_id and group, and the call
// is logged once at info with its call_id, group and outcome.
func TestRunnerConcurrentPostsAndLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.DebugLevel)
		g := testGroup("all", 0, "sip:a@x")
		sip := &fakeSIP{}
		clk := &bubbleClock{}
		sip.start = time.Now()
		r := NewRunner(testSetup(g), clk, sip, zap.New(core))
		sip.r = r
		go r.Run()
		synctest.Wait() // leg1 is ringing

		const n = 200
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Go(func() { r.Post(LegRinging{Leg: 1, Code: 180}) })
		}
		wg.Wait()
		synctest.Wait()
		r.Post(CallerCancelled{})
		<-r.Done()
		clk.check(t)

		events := logs.FilterMessage("event").FilterField(zap.String("type", "routing.LegRinging")).
			FilterField(zap.String("call_id", "runner-1@test")).FilterField(zap.String("group", "support")).Len()
		if events != n {
			t.Errorf("%d LegRinging events logged, want %d", events, n)
		}
		infos := logs.FilterLevelExact(zapcore.InfoLevel).All()
		if len(infos) != 1 {
			t.Fatalf("%d info lines, want 1: %v", len(infos), infos)
		}
		ctx := infos[0].ContextMap()
		if ctx["call_id"] != "runner-1@test" || ctx["group"] != "support" || ctx["outcome"] != OutcomeCancelled {
			t.Errorf("info line fields %v", ctx)
		}
		if !strings.Contains(sip.lines(), "RingCaller") || strings.Count(sip.lines(), "RingCaller") != 1 {
			t.Errorf("want exactly one RingCaller:\n%s", sip.lines())
		}
	})
}

// Calls on their own Runners share one State, as a server's calls do:
// five callers at once into a group with max_calls 2 give two answered
// calls and three congestion rejects, the race detector stays quiet, and
// the State is empty again when all are done.
func TestRunnersShareState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := testGroup("memorized_round_robin", 30*time.Second, "sip:a@x", "sip:b@x")
		g.MaxCalls, g.RingInUse = 2, true
		st := NewState()
		var mu sync.Mutex
		outcomes := map[string]int{}
		var wg sync.WaitGroup
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sip := &fakeSIP{
					answerAfter: map[string]time.Duration{"sip:a@x": time.Second, "sip:b@x": time.Second},
					talk:        10 * time.Second,
				}
				s := testSetup(g)
				s.State = st
				runCall(t, s, sip, nil)
				lines := sip.lines()
				mu.Lock()
				defer mu.Unlock()
				switch {
				case strings.Contains(lines, "Finish answered"):
					outcomes["answered"]++
				case strings.Contains(lines, "Finish congestion 486"):
					outcomes["congestion"]++
				default:
					outcomes[lines]++
				}
			}()
		}
		wg.Wait()
		if outcomes["answered"] != 2 || outcomes["congestion"] != 3 {
			t.Errorf("outcomes %v, want 2 answered and 3 congestion", outcomes)
		}
		if !st.idle() {
			t.Errorf("State not idle after every call")
		}
		if n, _ := st.Answered("support", "uri:sip:a@x"); n != 1 {
			t.Errorf("a answered %d calls; round robin should have given each member one", n)
		}
	})
}

// A driver that keeps the call's timer (KeepTimer, as sip's wait loop
// does) gets the same call to the millisecond as the runner's own timer
// gives, and the runner arms no timer of its own. An early Tick changes
// nothing.
func TestRunnerKeptTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sip := &fakeSIP{answerAfter: map[string]time.Duration{"sip:c@x": 2 * time.Second}, talk: 3 * time.Second}
		g := testGroup("linear", 30*time.Second, "sip:a@x", "sip:b@x", "sip:c@x")
		clk := &bubbleClock{}
		sip.start = time.Now()
		r := NewRunner(testSetup(g), clk, sip, nil)
		sip.r = r
		driveKept(r, r.Wake(), true)
		checkLines(t, sip.lines(), `
0s    StartLeg leg1 sip:a@x (support uri:sip:a@x)
5s    CancelLeg leg1 ring timeout
6s    StartLeg leg2 sip:b@x (support uri:sip:b@x)
11s   CancelLeg leg2 ring timeout
12s   StartLeg leg3 sip:c@x (support uri:sip:c@x)
14s   AnswerCaller leg3
17s   HangUpLeg leg3
17s   Finish answered 200`)
		clk.check(t)
		if clk.maxPending != 0 {
			t.Errorf("the runner armed %d timers of its own; KeepTimer leaves the timer to the driver", clk.maxPending)
		}
	})
}

// A driver that sets Setup.Notify is told of every event Post queues, by
// that call alone, and the call runs as with the runner's channel. If Post
// signalled the runner's channel instead this driver would never wake, and
// the bubble would deadlock.
func TestRunnerSetupNotify(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sip := &fakeSIP{answerAfter: map[string]time.Duration{"sip:b@x": 2 * time.Second}, talk: 3 * time.Second}
		g := testGroup("linear", 30*time.Second, "sip:a@x", "sip:b@x")
		clk := &bubbleClock{}
		sip.start = time.Now()
		s := testSetup(g)
		wake := make(chan struct{}, 1)
		s.Notify = func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		r := NewRunner(s, clk, sip, nil)
		sip.r = r
		if r.Wake() != nil {
			t.Fatal("Wake is a channel of the runner's own with Setup.Notify set")
		}
		driveKept(r, wake, false)
		checkLines(t, sip.lines(), `
0s    StartLeg leg1 sip:a@x (support uri:sip:a@x)
5s    CancelLeg leg1 ring timeout
6s    StartLeg leg2 sip:b@x (support uri:sip:b@x)
8s    AnswerCaller leg2
11s   HangUpLeg leg2
11s   Finish answered 200`)
	})
}

// driveKept runs r to its end as sip's call goroutine does: it keeps the
// runner's deadline on a timer of its own and wakes on wake for events;
// early: one Tick before anything is due, which must change nothing.
func driveKept(r *Runner, wake <-chan struct{}, early bool) {
	r.KeepTimer()
	r.Begin()
	if early {
		r.Tick()
	}
	for r.Turn() {
		var tick <-chan time.Time
		if at, ok := r.Deadline(); ok {
			tick = time.After(time.Until(at))
		}
		select {
		case <-wake:
		case <-tick:
			r.Tick()
		}
	}
	r.End()
}
