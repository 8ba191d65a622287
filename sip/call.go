package sip

import (
	"sync"
	"sync/atomic"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/media"
	"github.com/ringroute/ringroute/routing"
)

// call is one call as this package sees it: the caller's dialog, the legs
// routing asked for, and the bridge between the caller and the winner. It
// is routing's Executor for that call.
type call struct {
	s      *Server
	log    *zap.Logger
	cfg    *config.Config
	runner *routing.Runner
	a      *uas
	m      *callMedia // nil in media mode direct

	group *config.Group // the group dialled
	party routing.Party // who calls, as members and the CDR see it
	start time.Time     // when the INVITE came, for pickup's "oldest ringing"

	mu        sync.Mutex
	winner    bridged // set by AnswerCaller or ConnectPicker; the other side of the bridge
	picker    *picker // a pickup waiting for routing's ConnectPicker or RefusePicker
	pickerLeg routing.LegID
	legOrder  []*uac // every leg started, for the status API

	decisions  decisions
	reinviting bool // an in-dialog INVITE is being relayed

	// inbox holds the legs' responses (deliver) until a step takes them; a
	// queue, not a channel, so that UDP's read loop, which delivers most
	// of them, never waits for the call. inboxDone is set when the runner
	// is done, and deliver refuses from then on. dialed, under the same
	// lock, holds the legs back from dialling (dialDone).
	inboxMu   sync.Mutex
	inbox     []legResponse
	inboxDone bool
	dialed    []*uac
	// sched is who steps the call (see kick); callerEnded is set when the
	// caller's transaction ends, and kicks it.
	sched       atomic.Int32
	callerEnded atomic.Bool
	onEnd       func() // run once the call is over, after cleanup

	// The call's goroutine only (see begin: whichever steps it).
	spare   []legResponse // the inbox's other buffer
	kept    bool          // the runner's deadline is on the call's timer
	dialing int           // legs yet to come back through dialDone
	aborted bool          // the server's closing was seen
	gone    bool          // callerEnded was seen
	ending  bool          // the runner is done; dialing legs are awaited
	waits   []*uac        // the legs whose transaction the call runs, kept so that stepping allocates nothing
	alarm   *time.Timer   // kicks the call at alarmAt
	alarmAt time.Time     // what alarm is set to; zero once it fired
}

var _ routing.Executor = (*call)(nil)

// Execute carries out one routing action. It runs on the call's goroutine
// (a step, see begin) and must not block: anything that waits on the
// network runs on a goroutine of its own and kicks the call when done.
func (c *call) Execute(act routing.Action) {
	switch a := act.(type) {
	case routing.StartLeg:
		l := c.newLeg(a)
		c.mu.Lock()
		if c.legOrder == nil {
			c.legOrder = make([]*uac, 0, 4) // a parallel group's legs, without regrowing
		}
		c.legOrder = append(c.legOrder, l)
		c.mu.Unlock()
		c.s.live.legs.Add(1)
		l.start()
	case routing.CancelLeg:
		if l := c.leg(a.Leg); l != nil {
			l.cancel(a)
		}
	case routing.HangUpLeg:
		if l := c.leg(a.Leg); l != nil {
			l.hangUp()
		} else if a.Leg == c.pickerLeg && c.pickerLeg != 0 {
			c.winner.hangUp()
		}
	case routing.RingCaller:
		if c.m != nil && c.m.ring(c.group) {
			return // 183 with our SDP went out instead
		}
		c.a.ring()
	case routing.AnswerCaller:
		l := c.leg(a.Leg)
		if l == nil {
			c.runner.Post(routing.CallerAnswerFailed{})
			return
		}
		c.a.fillDialog()
		c.mu.Lock()
		c.winner = l
		c.mu.Unlock()
		c.a.answer(l)
	case routing.ConnectPicker:
		c.connectPicker(a.Leg)
	case routing.RefusePicker:
		c.refusePicker()
	case routing.RejectCaller:
		c.a.reject(a.Code)
	case routing.HangUpCaller:
		c.a.hangUp()
	case routing.Finish:
		// The runner logs the outcome.
		if c.m != nil {
			c.m.mu.Lock()
			a.Record.Recording = c.m.path
			c.m.mu.Unlock()
			st := c.m.sess.Stats()
			a.Record.RTP = &routing.RTPStats{
				FromCaller:      st.Packets[media.Caller],
				FromMember:      st.Packets[media.Member],
				BytesFromCaller: st.Bytes[media.Caller],
				BytesFromMember: st.Bytes[media.Member],
				Dropped:         st.Dropped,
				NotRTP:          st.NotRTP,
			}
		}
		c.s.record(a.Record)
	default:
		c.log.Error("unknown routing action", zap.Any("action", act))
	}
}

// leg is the leg routing calls id; nil for none. A scan of legOrder, not
// a map: a call has a handful of legs. The call's goroutine only (the one
// writer of legOrder); handlers find legs through the dialog table.
func (c *call) leg(id routing.LegID) *uac {
	for _, l := range c.legOrder {
		if l.id == id {
			return l
		}
	}
	return nil
}

// bridged is what a caller is connected to: the member leg that won, or a
// colleague's own INVITE that picked the call up.
type bridged interface {
	peerDialog() *dialog
	answerBody() ([]byte, string)     // its SDP for the caller's 200
	ackAnswer(body []byte, ct string) // the caller's ACK body (delayed offer)
	hangUp()
	groupName() string // whose record settings apply
}

func (l *uac) peerDialog() *dialog { return &l.dialog }
func (l *uac) groupName() string   { return l.t.Group }

// peer is the other side of the bridge for the dialog r names, or nil when
// the call is not (or no longer) bridged through it.
func (c *call) peer(r dialogRef) *dialog {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.winner == nil {
		return nil
	}
	switch {
	case r.leg == nil && r.pick == nil:
		return c.winner.peerDialog()
	case r.leg != nil && bridged(r.leg) == c.winner, r.pick != nil && bridged(r.pick) == c.winner:
		return &c.a.dialog
	}
	return nil
}

// cleanup runs when the runner is done: every leg has ended.
func (c *call) cleanup() {
	c.s.active.Delete(c)
	if c.m != nil {
		c.m.close()
	}
	c.s.dialogs.remove(c.a.callID, c.a.localTag())
	c.a.stop()
	c.mu.Lock()
	p := c.picker
	c.mu.Unlock()
	if p != nil {
		c.s.dialogs.remove(p.u.callID, p.u.localTag())
		p.u.stop()
	}
	c.s.live.calls.Add(-1)
	c.s.calls.Done()
}

// post sends an event to the call's runner.
func (c *call) post(ev routing.Event) { c.runner.Post(ev) }

// callerParty is the caller as routing sees it.
func callerParty(req *sipmsg.Request) routing.Party {
	from := req.From()
	u := from.Address
	u.UriParams = nil
	u.Headers = nil
	return routing.Party{URI: u.String(), Display: unquote(from.DisplayName)}
}
