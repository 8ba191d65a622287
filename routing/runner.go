package routing

import (
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Runner drives one Call on one goroutine (Run, or the Begin/Turn/End steps
// inside a caller's own wait loop): events posted from any
// goroutine and timer ticks go in one queue, Call.Step turns them into
// actions, the Executor carries them out.
//
// The Call is touched only by Run's goroutine, so it needs no lock; the
// queue is the one thing shared, and Post only appends to it. The queue is
// unbounded on purpose: a bounded one would either block sip's transaction
// goroutines or drop a final response, and a call produces a handful of
// events per leg.
type Runner struct {
	setup Setup
	clk   Clock
	ex    Executor
	// log is the server's; every entry gets the call's call_id and group
	// as it is written (ids), not from a child logger of the call's own,
	// which would cost every call an allocation or two to keep.
	log   *zap.Logger
	group string

	mu      sync.Mutex
	queue   []Event
	stopped bool
	notify  chan struct{} // capacity 1: "the queue has something"; nil with Setup.Notify

	done  chan struct{} // see Done; under mu
	ended bool          // End has run; under mu

	// Run's goroutine only.
	call    *Call
	kept    bool      // KeepTimer: the driver keeps the call's timer
	timer   Timer     // nil when none is pending
	timerAt time.Time // what timer was armed for
	gen     uint64    // of timer; a firing of an older one is stale
}

// fired is the Runner's own timer firing; Run turns it into a Tick.
type fired struct{ gen uint64 }

func (fired) isEvent() {}

// NewRunner prepares a call; Run starts it.
func NewRunner(s Setup, clk Clock, ex Executor, log *zap.Logger) *Runner {
	if log == nil {
		log = zap.NewNop()
	}
	group := ""
	if s.Group != nil {
		group = s.Group.Name
	}
	var notify chan struct{}
	if s.Notify == nil {
		notify = make(chan struct{}, 1)
	}
	return &Runner{
		setup:  s,
		clk:    clk,
		ex:     ex,
		log:    log,
		group:  group,
		notify: notify,
	}
}

// Post queues an event for the call. It never blocks, and it is a no-op once
// the Runner has stopped.
func (r *Runner) Post(ev Event) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.queue = append(r.queue, ev)
	r.mu.Unlock()
	if f := r.setup.Notify; f != nil {
		f()
		return
	}
	select {
	case r.notify <- struct{}{}:
	default: // a wake-up is already pending; Run drains everything at once
	}
}

// Run runs the call until it is Over. It blocks; call it on a new goroutine.
func (r *Runner) Run() {
	r.Begin()
	for r.Turn() {
		<-r.Wake()
	}
	r.End()
}

// The Begin, Wake, Turn and End steps let a caller run the call inside its
// own wait loop, so that one goroutine can wait on the call's events and on
// whatever else the call owns (sip waits on its legs' transactions there
// instead of spending a goroutine on each):
//
//	r.Begin()
//	for r.Turn() {
//		select { case <-r.Wake(): ...; case <-other: ... }
//	}
//	r.End()
//
// Every step must run on the same goroutine.

// KeepTimer hands the call's timer to the driver of Begin and Turn: Turn
// arms nothing, and the driver waits for Deadline itself and then calls
// Tick. sip's wait loop already waits on a timer of its own, for its legs'
// transactions; the runner's own timer beside it cost every deadline (a
// member's ring timeout, a retry delay) a goroutine for its firing and a
// second trip through the run queue before the call saw it. Call it before
// Begin, on the same goroutine.
func (r *Runner) KeepTimer() { r.kept = true }

// Deadline is when the call next needs a Tick; ok is false when nothing is
// due. For a driver that keeps the timer (KeepTimer), after Begin.
func (r *Runner) Deadline() (time.Time, bool) { return r.call.Deadline() }

// Tick steps the call by the clock, as the runner's own timer firing
// would. A Tick that comes early is harmless: the call finds nothing due.
func (r *Runner) Tick() {
	if !r.call.Over() {
		r.step(Tick{})
	}
}

// step feeds the call one event and carries out what it asks for.
func (r *Runner) step(ev Event) {
	r.debug("event", ev)
	r.execute(r.call.Step(r.clk.Now(), ev))
}

// Begin starts the call: its first actions are carried out.
func (r *Runner) Begin() {
	call, acts := Start(r.clk.Now(), r.setup)
	r.call = call
	r.execute(acts)
}

// Wake is ready when an event has been posted (or the timer fired). It is
// nil, and never ready, when Setup.Notify is set.
func (r *Runner) Wake() <-chan struct{} { return r.notify }

// Turn steps the call through every event queued so far and arms its timer.
// It reports whether the call goes on.
func (r *Runner) Turn() bool {
	call := r.call
	for _, ev := range r.take() {
		if call.Over() {
			break
		}
		if f, ok := ev.(fired); ok {
			if f.gen != r.gen {
				continue // stopped or replaced after it fired
			}
			r.timer = nil // spent: arm must set a new one
			ev = Tick{}
		}
		r.step(ev)
	}
	if call.Over() {
		return false
	}
	r.arm(call)
	return true
}

// End refuses further events and stops the timer, so nothing of the call
// outlives it; Done is closed.
func (r *Runner) End() {
	r.stop()
	r.mu.Lock()
	r.ended = true
	if r.done != nil {
		close(r.done)
	}
	r.mu.Unlock()
}

// Done is closed when Run has returned.
// The channel is made at the first Done: a driver that steps the call
// itself never waits on it, and every call kept one.
func (r *Runner) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = make(chan struct{})
		if r.ended {
			close(r.done)
		}
	}
	return r.done
}

func (r *Runner) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queue
	r.queue = nil
	return q
}

// stop refuses further events and stops the timer, so nothing of the call
// outlives Run.
func (r *Runner) stop() {
	r.mu.Lock()
	r.stopped = true
	r.queue = nil
	r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// arm keeps one timer set for the call's next deadline. A timer that fires
// after it was replaced is recognised by its generation and dropped, so
// Stop's result does not matter; and a Tick that comes early (the Call finds
// nothing due) is harmless, since the spent timer is re-armed here.
func (r *Runner) arm(call *Call) {
	if r.kept {
		return
	}
	at, ok := call.Deadline()
	if r.timer != nil && ok && at.Equal(r.timerAt) {
		return
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if !ok {
		return
	}
	r.gen++
	gen := r.gen
	r.timerAt = at
	r.timer = r.clk.AfterFunc(max(at.Sub(r.clk.Now()), 0), func() { r.Post(fired{gen: gen}) })
}

func (r *Runner) execute(acts []Action) {
	for _, a := range acts {
		r.debug("action", a)
		if f, ok := a.(Finish); ok {
			r.logFinish(f.Record)
		}
		r.ex.Execute(a)
	}
}

// debug logs one event or action; formatting is skipped unless debug is on.
func (r *Runner) debug(what string, v any) {
	if ce := r.log.Check(zapcore.DebugLevel, what); ce != nil {
		ce.Write(r.ids(zap.String("type", fmt.Sprintf("%T", v)), zap.String(what, fmt.Sprintf("%+v", v)))...)
	}
}

// ids puts the call's call_id and group before fields.
func (r *Runner) ids(fields ...zap.Field) []zap.Field {
	return append([]zap.Field{zap.String("call_id", r.setup.CallID), zap.String("group", r.group)}, fields...)
}

func (r *Runner) logFinish(rec Record) {
	// Room for them all at once: the slice escapes to zap's core, and
	// growing it from six to nine fields cost a second, bigger one (1.1 KB
	// a call, the largest allocation of routing's).
	fields := append(make([]zap.Field, 0, 9),
		zap.String("call_id", r.setup.CallID),
		zap.String("group", r.group),
		zap.String("outcome", rec.Outcome),
		zap.Int("code", rec.Code),
		zap.Duration("duration", rec.End.Sub(rec.Start)),
		zap.Int("legs", len(rec.Legs)),
	)
	if rec.AnsweredBy != "" {
		fields = append(fields, zap.String("answered_by", rec.AnsweredBy))
	}
	if rec.Fallback != "" {
		fields = append(fields, zap.String("fallback", rec.Fallback))
	}
	if len(rec.Notes) > 0 {
		fields = append(fields, zap.Strings("notes", rec.Notes))
	}
	r.log.Info("call finished", fields...)
}
