// Package routing runs one call through its ring groups: attempts, legs,
// timeouts, the first-answer-wins race, fallbacks and the CDR record.
//
// It is shaped like etcd raft: Call is a deterministic state machine that
// takes events and the current time and returns actions; it never blocks,
// never reads a clock and never touches the network. Runner gives a Call one
// goroutine, a Clock and an Executor that turns actions into SIP (package
// sip implements it). routing imports no network package and no SIP library;
// a deps test keeps that fence.
package routing

import (
	"math/rand/v2"
	"time"

	"github.com/ringroute/ringroute/config"
)

// LegID names one outbound leg (one INVITE dialog to one target) within a
// call. IDs start at 1 and are never reused within a call.
type LegID int

// Party is the caller as the call sees it.
type Party struct {
	URI     string // From URI, e.g. "sip:+15551234@198.51.100.7"
	Display string // From display name, may be empty
	User    string // authenticated user name; empty for trunks
}

// Contact is one registered binding of a user.
type Contact struct {
	URI         string // the binding's Contact URI
	Destination string // where to send, "ip:port" the REGISTER came from; empty: resolve URI
	Transport   string // "udp", "tcp", "tls"; empty: from URI
}

// Directory gives the registered contacts of a user. Package sip implements
// it over the registrar.
type Directory interface {
	Contacts(user string) []Contact
}

// Target is what one leg rings.
type Target struct {
	URI         string // request-URI
	Destination string // see Contact.Destination
	Transport   string // see Contact.Transport
	Group       string // group the leg rings for
	Member      string // member key (config.Member.Key) or "fallback:" + fallback
	Display     string // From display name toward the member, after caller_id
}

// Setup is everything a call needs to start.
type Setup struct {
	CallID    string         // the caller's Call-ID, for logs and CDR
	Config    *config.Config // the snapshot this call runs under until it ends
	Group     *config.Group  // the group dialled
	Dialled   string         // request-URI user as dialled
	Caller    Party
	Directory Directory  // nil: no registered contacts
	Rand      *rand.Rand // chance for random strategies; nil: a fixed seed
	// State is the memory shared by every call of one server: round robin
	// positions, answer counts, calls per group (max_calls) and members in
	// use (ring_in_use). One per server, from NewState. nil: every call on
	// its own, with no memory and no limits.
	State *State
	// Trace, when set, is told each decision the call takes (groups
	// entered or refused and why, passes planned, timeouts, fallbacks), in
	// order, on the goroutine that runs Start and Step. `ringroute
	// explain` prints it; it must not call back into the Call.
	Trace func(TraceEvent)
	// Notify, when set, is called by Post once the event is queued, in
	// place of signalling the runner's own channel (Wake): a driver that
	// runs the call only when there is something to do (sip steps a
	// ringing call on no goroutine of its own) schedules it from here. It
	// may be called from any goroutine, the one running Turn included, and
	// must not block or call back into the Runner.
	Notify func()
}

// TraceEvent is one decision of a call, for Setup.Trace.
type TraceEvent struct {
	At    time.Time // when it takes effect (the time it was due)
	Group string    // the group concerned
	Kind  string    // one of the Trace* constants
	Text  string    // what and why, for people
}

// Kinds of TraceEvent.
const (
	TraceEnter    = "enter"    // the call enters a group: dialled, by fallback, or as a nested member
	TraceRefused  = "refused"  // the group turns the call away: denied, closed, full
	TracePass     = "pass"     // a pass is planned; Text gives its order, "a + b" ringing together
	TraceTimeout  = "timeout"  // a group timeout expired
	TraceGiveUp   = "giveup"   // a group (or nested group) stops ringing; Text says why
	TraceFallback = "fallback" // a fallback is taken
	TraceSkip     = "skip"     // a member is left out of a pass; Text says who and why
)

// Event is an input to Call.Step.
type Event interface{ isEvent() }

// LegRinging: a 180 or 183 arrived on a leg.
type LegRinging struct {
	Leg  LegID
	Code int
}

// LegAnswered: a 2xx arrived on a leg and package sip has ACKed it.
type LegAnswered struct{ Leg LegID }

// LegFailed: a leg ended without answering. Code is the final status (408
// when nothing answered or the transport failed, 487 after our CANCEL).
// For a 3xx, Contacts lists the redirect targets in preference order.
type LegFailed struct {
	Leg      LegID
	Code     int
	Contacts []string
}

// LegEnded: an answered leg's dialog is over (the member sent BYE, or our
// BYE completed).
type LegEnded struct{ Leg LegID }

// CallerCancelled: the caller sent CANCEL before answer (sip has already
// answered it with 200 and the INVITE with 487).
type CallerCancelled struct{}

// CallerEnded: the caller sent BYE after answer (sip has answered it 200).
type CallerEnded struct{}

// CallerAnswerFailed: the 200 to the caller could not be delivered or was
// never ACKed.
type CallerAnswerFailed struct{}

// Tick: the time returned by Call.Deadline has come.
type Tick struct{}

// PickedUp: a user dialled a pickup code for this call (SPEC "Registrar
// and pickup"). If the call still rings, every ringing leg is CANCELled
// as answered elsewhere and the picker is connected (ConnectPicker);
// otherwise RefusePicker.
type PickedUp struct {
	By  string // the user who picks up
	URI string // where the picker is, for the CDR
}

// MediaTimeout: no RTP came from either side of the answered call for
// media.rtp_timeout (and it was not on hold). Both sides are hung up.
type MediaTimeout struct{}

// Shutdown: ringroute is stopping (the drain timeout passed). A ringing call
// is refused with 503, an answered one hung up on both sides.
type Shutdown struct{}

func (LegRinging) isEvent()         {}
func (LegAnswered) isEvent()        {}
func (LegFailed) isEvent()          {}
func (LegEnded) isEvent()           {}
func (CallerCancelled) isEvent()    {}
func (CallerEnded) isEvent()        {}
func (CallerAnswerFailed) isEvent() {}
func (Tick) isEvent()               {}
func (Shutdown) isEvent()           {}
func (MediaTimeout) isEvent()       {}
func (PickedUp) isEvent()           {}

// Action is an output of Call.Start and Call.Step, carried out by an
// Executor.
type Action interface{ isAction() }

// StartLeg: send a new INVITE (a new dialog) to Target.
type StartLeg struct {
	Leg    LegID
	Target Target
}

// CancelReason says why a leg is cancelled.
type CancelReason int

const (
	CancelRingTimeout       CancelReason = iota // the member's ring time is over
	CancelGroupTimeout                          // the group timeout expired
	CancelAnsweredElsewhere                     // another leg won
	CancelCallerGone                            // the caller cancelled or the call failed
)

func (r CancelReason) String() string {
	switch r {
	case CancelRingTimeout:
		return "ring timeout"
	case CancelGroupTimeout:
		return "group timeout"
	case CancelAnsweredElsewhere:
		return "answered elsewhere"
	case CancelCallerGone:
		return "caller gone"
	}
	return "unknown"
}

// CancelLeg: stop a leg that has not answered. Elsewhere asks for the RFC
// 3326 header Reason: SIP;cause=200;text="Call completed elsewhere". The leg
// still reports how it ended (LegFailed, usually 487, or LegAnswered if a
// 2xx crossed the CANCEL).
type CancelLeg struct {
	Leg       LegID
	Reason    CancelReason
	Elsewhere bool
}

// HangUpLeg: BYE an answered leg (one that lost the race or whose call is
// over). The leg reports LegEnded when done.
type HangUpLeg struct{ Leg LegID }

// RingCaller: send 180 Ringing to the caller. Sent at most once per call.
type RingCaller struct{}

// AnswerCaller: answer the caller with 200 carrying Leg's answer, and bridge
// the caller and Leg. Failure comes back as CallerAnswerFailed.
type AnswerCaller struct{ Leg LegID }

// RejectCaller: answer the caller's INVITE with a final failure Code.
type RejectCaller struct{ Code int }

// HangUpCaller: BYE the answered caller.
type HangUpCaller struct{}

// ConnectPicker: answer the caller with the picker of a PickedUp, who is
// now leg Leg (it never had a StartLeg: sip holds the picker's own INVITE).
// The leg then ends like any answered one: LegEnded, or HangUpLeg from us.
type ConnectPicker struct{ Leg LegID }

// RefusePicker: the PickedUp came too late (the call was answered or
// over); the picker is refused (sip answers 404: nothing to pick up).
type RefusePicker struct{}

// Finish: the call is over and every leg it started has ended; Record is
// its CDR, with every leg's final code. Emitted exactly once, as the last
// action. Record.End is when the call ended for the caller, which may be a
// little earlier (cancelled legs answer their CANCEL afterwards).
type Finish struct{ Record Record }

func (StartLeg) isAction()      {}
func (CancelLeg) isAction()     {}
func (HangUpLeg) isAction()     {}
func (RingCaller) isAction()    {}
func (AnswerCaller) isAction()  {}
func (RejectCaller) isAction()  {}
func (HangUpCaller) isAction()  {}
func (Finish) isAction()        {}
func (ConnectPicker) isAction() {}
func (RefusePicker) isAction()  {}

// Outcomes of a call, as written to the CDR.
const (
	OutcomeAnswered   = "answered"   // someone (member or fallback destination) answered
	OutcomeNoAnswer   = "noanswer"   // time ran out
	OutcomeBusy       = "busy"       // every member was busy
	OutcomeCancelled  = "cancelled"  // the caller gave up before answer
	OutcomeCongestion = "congestion" // max_calls reached
	OutcomeClosed     = "closed"     // disabled or outside the schedule
	OutcomeDenied     = "denied"     // permissions
	OutcomeRejected   = "rejected"   // refused before routing (unknown number, not allowed, draining)
	OutcomeFailed     = "failed"     // every member failed with errors, or the call broke
)

// Record is one CDR line: one per call, written when the call is over.
type Record struct {
	CallID     string      `json:"call_id"`
	Group      string      `json:"group"`
	Caller     string      `json:"caller"`
	Dialled    string      `json:"dialled"`
	Start      time.Time   `json:"start"`
	Answer     *time.Time  `json:"answer,omitempty"`
	End        time.Time   `json:"end"`
	Outcome    string      `json:"outcome"`
	Code       int         `json:"code"`                  // final SIP status the caller got (200 when answered)
	AnsweredBy string      `json:"answered_by,omitempty"` // member key of the winner
	AnsweredAt string      `json:"answered_uri,omitempty"`
	Fallback   string      `json:"fallback,omitempty"` // e.g. "noanswer:uri:sip:vm@192.0.2.9"; hops joined by ","
	Groups     []string    `json:"groups"`             // every group the call entered, in order
	Legs       []LegRecord `json:"legs"`
	// Notes are things ops should know that change how the call rang: a
	// strategy not implemented yet (linear used instead), members skipped
	// because they had nothing to ring, a fallback that could not be taken.
	Notes []string `json:"notes,omitempty"`
	// EndedBy says who ended an answered call: "caller", "member",
	// "rtp_timeout" (no media either way for media.rtp_timeout) or
	// "shutdown".
	EndedBy string `json:"ended_by,omitempty"`
	// Recording is the WAV file of the call when the group records; sip
	// fills it in.
	Recording string `json:"recording,omitempty"`
	// RTP is what the relay carried (media mode relay); sip fills it in.
	RTP *RTPStats `json:"rtp,omitempty"`
}

// RTPStats counts a relayed call's packets (RTP and RTCP).
type RTPStats struct {
	FromCaller      uint64 `json:"from_caller"` // relayed caller to member
	FromMember      uint64 `json:"from_member"` // relayed member to caller (early media included)
	BytesFromCaller uint64 `json:"bytes_from_caller"`
	BytesFromMember uint64 `json:"bytes_from_member"`
	Dropped         uint64 `json:"dropped"` // from a source that was not the peer (RTP bleed)
	NotRTP          uint64 `json:"not_rtp"` // not RTP/RTCP, or a payload type not negotiated
}

// LegRecord is one leg tried.
type LegRecord struct {
	Leg    LegID     `json:"leg"`
	Group  string    `json:"group"`
	Member string    `json:"member"`
	URI    string    `json:"uri"`
	Start  time.Time `json:"start"`
	Code   int       `json:"code"`             // final SIP status; 0 if it never got one
	RingMS int64     `json:"ring_ms"`          // from INVITE to its final response or CANCEL
	Reason string    `json:"reason,omitempty"` // why it ended: answered, busy, ring timeout, ...
}

// Clock is the Runner's only source of time. Package sip passes the system
// clock; tests pass a fake one or run under testing/synctest.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending Clock.AfterFunc.
type Timer interface{ Stop() bool }

// Executor carries out a call's actions. Execute is called on the goroutine
// that runs the call's Runner, one action at a time, and must not block:
// network work is waited for elsewhere (the executor's own goroutines, or
// its wait beside Runner.Wake), and its results come back as events through
// Runner.Post.
type Executor interface {
	Execute(a Action)
}
