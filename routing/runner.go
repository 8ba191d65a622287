package routing

import "go.uber.org/zap"

// Runner drives one Call on its own goroutine: events posted from any
// goroutine and timer ticks go in one queue, Call.Step turns them into
// actions, the Executor carries them out.
type Runner struct {
	// TODO(helper): implement.
}

// NewRunner prepares a call; Run starts it.
func NewRunner(s Setup, clk Clock, ex Executor, log *zap.Logger) *Runner {
	panic("not implemented")
}

// Post queues an event for the call. It never blocks, and it is a no-op once
// the Runner has stopped.
func (r *Runner) Post(ev Event) {
	panic("not implemented")
}

// Run runs the call until it is Over. It blocks; call it on a new goroutine.
func (r *Runner) Run() {
	panic("not implemented")
}

// Done is closed when Run has returned.
func (r *Runner) Done() <-chan struct{} {
	panic("not implemented")
}
