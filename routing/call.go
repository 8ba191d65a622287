package routing

import "time"

// Call is one call's state machine. It is not safe for concurrent use; a
// Runner owns it.
type Call struct {
	// TODO(helper): implement.
}

// Start begins a call at now: it enters s.Group and returns the first actions.
func Start(now time.Time, s Setup) (*Call, []Action) {
	panic("not implemented")
}

// Step feeds one event at now and returns the actions it causes. Events for
// unknown or already finished legs are ignored (or answered with HangUpLeg
// when a stray 2xx needs it).
func (c *Call) Step(now time.Time, ev Event) []Action {
	panic("not implemented")
}

// Deadline is when the call next wants a Tick; ok is false when it waits
// for events only.
func (c *Call) Deadline() (t time.Time, ok bool) {
	panic("not implemented")
}

// Over reports that the call has finished and every leg it started has
// ended, so its Runner may stop.
func (c *Call) Over() bool {
	panic("not implemented")
}
