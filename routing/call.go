package routing

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ringroute/ringroute/config"
)

// phase is where the call stands toward the caller.
type phase uint8

const (
	phaseRinging  phase = iota // unanswered: a group's members or a fallback destination ring
	phaseAnswered              // AnswerCaller sent; caller and winner talk
	phaseDone                  // Finish sent; legs may still be winding down
)

// legState is what we know of one outbound leg. The only way back from a
// non-terminal state is a terminal event from package sip, so Over waits
// for every leg.
type legState uint8

const (
	legCalling   legState = iota // INVITE out, no final response yet
	legCancelled                 // we sent CANCEL; its final response is due
	legAnswered                  // the winner
	legHungUp                    // answered, and we sent BYE
	legDone                      // terminal
)

type leg struct {
	id LegID
	// Its Group, Member and URI are in its LegRecord (rec); the rest of
	// its Target went to sip in StartLeg, and only a redirect needs the
	// display name again.
	display string
	ident   string        // who it rings, for ring_in_use and ringing a target once (memberIdentity)
	group   *config.Group // whose answered_elsewhere applies to it
	ring    *ring
	start   time.Time
	state   legState
	rec     int // index into Call.rec.Legs
}

// holds reports whether a leg in state st keeps its member in use: while
// it rings and while it talks.
func holds(st legState) bool { return st == legCalling || st == legAnswered }

// Call is one call's state machine. It is not safe for concurrent use; a
// Runner owns it.
//
// Two times are in play while a Step runs. now is when the Step happens and
// is what the CDR shows. Scheduling uses the time each timer was due (see
// fire), so a Runner that ticks a little late does not push every later
// attempt back: the worked example in SPEC §3 comes out to the millisecond
// however sluggish the goroutine that drives it.
type Call struct {
	s    Setup
	rand *rand.Rand
	now  time.Time // of the Step being handled
	at   time.Time // logical time of the thing being handled, for scheduling

	phase   phase
	grp     *groupRun // the group whose members ring; nil otherwise
	fb      *ring     // the fallback destination ringing; nil otherwise
	outcome string    // outcome to report if the ringing fallback destination fails
	hops    int       // group fallbacks taken
	slot    string    // group whose max_calls slot the call holds; "" for none
	// held counts, per identity, what of this call keeps it in use (legs
	// ringing or talking, the caller), so State is told once per call.
	// A list, not a map: a call holds a handful.
	held []heldID
	// winKeys are the members credited with the answer: the winner and,
	// for a nested winner, each group member it was reached through.
	winKeys []memKey

	legs   []*leg // index LegID-1
	winner *leg
	rang   bool // RingCaller sent

	rec      Record
	finished bool // Finish emitted
	noted    map[string]bool
	out      []Action
}

// maxHops bounds group fallbacks per call (SPEC §8). Config check rejects
// cycles; this stops one that slips through, or a long chain, from ringing
// forever.
const maxHops = 5

// maxRedirects bounds 3xx followed per member ring, against redirect loops.
const maxRedirects = 3

// Start begins a call at now: it enters s.Group and returns the first actions.
func Start(now time.Time, s Setup) (*Call, []Action) {
	c := &Call{s: s, rand: s.Rand, now: now, at: now}
	if c.rand == nil {
		// A fixed seed, as Setup documents: random strategies stay
		// reproducible without reaching for the global source.
		c.rand = rand.New(rand.NewPCG(1, 2))
	}
	c.rec = Record{
		CallID:  s.CallID,
		Caller:  s.Caller.URI,
		Dialled: s.Dialled,
		Start:   now,
		Groups:  []string{},
		Legs:    []LegRecord{},
	}
	if s.Group == nil {
		c.note("no group to route to")
		c.reject(480, OutcomeFailed)
		return c, c.flush()
	}
	c.rec.Group = s.Group.Name
	if s.Caller.User != "" {
		// A user calling in is in a call through ringroute too: groups
		// with ring_in_use: false do not ring them meanwhile.
		c.hold("user:" + s.Caller.User)
	}
	c.enterGroup(s.Group)
	c.advance(now)
	return c, c.flush()
}

// Step feeds one event at now and returns the actions it causes. Events for
// unknown or already finished legs are ignored (or answered with HangUpLeg
// when a stray 2xx needs it).
func (c *Call) Step(now time.Time, ev Event) []Action {
	if c.Over() {
		return nil
	}
	if now.Before(c.now) {
		// A clock that steps back must not reorder what already happened.
		now = c.now
	}
	c.now = now
	// Timers due by now take effect before the event: what the call does at
	// a time must not depend on whether the Runner's Tick or the event got
	// queued first.
	c.advance(now)
	c.at = now
	switch ev := ev.(type) {
	case LegRinging:
		c.onRinging(ev)
	case LegAnswered:
		c.onAnswered(ev)
	case LegFailed:
		c.onFailed(ev)
	case LegEnded:
		c.onEnded(ev)
	case CallerCancelled:
		c.onCallerGone()
	case CallerEnded:
		c.onCallerEnded()
	case CallerAnswerFailed:
		c.onAnswerFailed()
	case Shutdown:
		c.onShutdown()
	case PickedUp:
		c.onPickedUp(ev)
	case MediaTimeout:
		if c.phase == phaseAnswered {
			c.note("no RTP for media.rtp_timeout")
			c.rec.EndedBy = "rtp_timeout"
			c.hangUp(c.winner)
			c.emit(HangUpCaller{})
			c.finish(OutcomeAnswered, 200)
		}
	case Tick:
	}
	// An event may make something due at once (a failed member ends its
	// attempt and retry_delay is 0).
	c.advance(now)
	return c.flush()
}

// Deadline is when the call next wants a Tick; ok is false when it waits
// for events only.
func (c *Call) Deadline() (t time.Time, ok bool) {
	d, ok := c.nextDue()
	return d.at, ok
}

// Over reports that the call has finished and every leg it started has
// ended, so its Runner may stop.
func (c *Call) Over() bool {
	if c.phase != phaseDone {
		return false
	}
	for _, l := range c.legs {
		if l.state != legDone {
			return false
		}
	}
	return true
}

func (c *Call) emit(a Action) { c.out = append(c.out, a) }

// trace reports a decision to Setup.Trace, if set.
func (c *Call) trace(group, kind, text string) {
	if c.s.Trace != nil {
		c.s.Trace(TraceEvent{At: c.at, Group: group, Kind: kind, Text: text})
	}
}

// rel is t as time into the call, for trace texts.
func (c *Call) rel(t time.Time) string { return short(t.Sub(c.rec.Start)) }

// setLeg moves l to st and keeps the State's in-use count of its member
// right: a member is in use while one of its legs rings or talks.
func (c *Call) setLeg(l *leg, st legState) {
	was := holds(l.state)
	l.state = st
	switch now := holds(st); {
	case now && !was:
		c.hold(l.ident)
	case was && !now:
		c.release(l.ident)
	}
}

func (c *Call) hold(id string) {
	if id == "" {
		return
	}
	for i := range c.held {
		if c.held[i].id == id {
			c.held[i].n++
			return
		}
	}
	if c.held == nil {
		c.held = make([]heldID, 0, 4) // a parallel group's legs and the caller
	}
	c.held = append(c.held, heldID{id, 1})
	c.s.State.use(id, 1)
}

func (c *Call) release(id string) {
	for i := range c.held {
		if id == "" || c.held[i].id != id {
			continue
		}
		if c.held[i].n--; c.held[i].n == 0 {
			c.held = slices.Delete(c.held, i, i+1)
			c.s.State.use(id, -1)
		}
		return
	}
}

// heldID is one identity a call keeps in use, and by how many of its parts.
type heldID struct {
	id string
	n  int
}

// holds reports whether the call keeps identity id in use.
func (c *Call) holds(id string) bool {
	for _, h := range c.held {
		if h.id == id {
			return true
		}
	}
	return false
}

func (c *Call) flush() []Action {
	// The CDR goes out once the last leg has ended, so that every leg in it
	// has its final code (a cancelled leg's 487 comes after the caller's
	// end); End still says when the call ended for the caller.
	if !c.finished && c.Over() {
		c.finished = true
		c.emit(Finish{Record: c.snapshot()})
	}
	out := c.out
	c.out = nil
	return out
}

func (c *Call) leg(id LegID) *leg {
	if id < 1 || int(id) > len(c.legs) {
		return nil
	}
	return c.legs[id-1]
}

// note records something ops should see in the CDR, once.
func (c *Call) note(msg string) {
	if c.noted[msg] {
		return
	}
	if c.noted == nil {
		c.noted = make(map[string]bool)
	}
	c.noted[msg] = true
	c.rec.Notes = append(c.rec.Notes, msg)
}

// --- legs

func (c *Call) startLeg(r *ring, d dest) {
	t := d.t
	l := &leg{
		id:      LegID(len(c.legs) + 1),
		display: t.Display,
		ident:   d.ident,
		group:   r.group,
		ring:    r,
		start:   c.now,
		state:   legDone, // until setLeg below counts it in
		rec:     len(c.rec.Legs),
	}
	c.setLeg(l, legCalling)
	c.legs = append(c.legs, l)
	c.rec.Legs = append(c.rec.Legs, LegRecord{
		Leg: l.id, Group: t.Group, Member: t.Member, URI: t.URI, Start: c.now,
	})
	r.live++
	c.emit(StartLeg{Leg: l.id, Target: t})
}

// cancel CANCELs a leg still calling; its ring time stops counting now.
func (c *Call) cancel(l *leg, why CancelReason) {
	if l.state != legCalling {
		return
	}
	c.setLeg(l, legCancelled)
	l.ring.live--
	lr := &c.rec.Legs[l.rec]
	lr.RingMS = c.now.Sub(l.start).Milliseconds()
	lr.Reason = why.String()
	elsewhere := why == CancelAnsweredElsewhere && l.group != nil && l.group.AnsweredElsewhere
	c.emit(CancelLeg{Leg: l.id, Reason: why, Elsewhere: elsewhere})
}

// cancelRing CANCELs whatever of r still calls, the legs of a nested
// group member's run included, and ends r.
func (c *Call) cancelRing(r *ring, why CancelReason) {
	for _, l := range c.legs {
		if l.state == legCalling && under(l.ring, r) {
			c.cancel(l, why)
		}
	}
	r.state = ringEnded
	if r.sub != nil {
		endRun(r.sub)
	}
}

// under reports whether ring x is r or rings inside r's nested runs.
func under(x, r *ring) bool {
	for x != nil {
		if x == r {
			return true
		}
		if x.run == nil {
			return false
		}
		x = x.run.parent
	}
	return false
}

func (c *Call) hangUp(l *leg) {
	c.setLeg(l, legHungUp)
	c.emit(HangUpLeg{Leg: l.id})
}

// --- events

func (c *Call) onRinging(ev LegRinging) {
	l := c.leg(ev.Leg)
	// A 180 from a leg we have already CANCELled is stale news.
	if l == nil || l.state != legCalling || c.phase != phaseRinging || c.rang {
		return
	}
	c.rang = true
	c.emit(RingCaller{})
}

func (c *Call) onAnswered(ev LegAnswered) {
	l := c.leg(ev.Leg)
	if l == nil {
		return
	}
	switch l.state {
	case legCalling, legCancelled:
		// A 2xx on a leg we CANCELled for a timeout crossed our CANCEL: the
		// member picked up, and while the caller still waits, connecting
		// them is what both want.
		if c.phase == phaseRinging {
			c.win(l)
			return
		}
		if l.state == legCalling {
			l.ring.live--
		}
		lr := &c.rec.Legs[l.rec]
		lr.Code = 200
		if lr.Reason == "" {
			lr.Reason = "lost race"
		}
		c.hangUp(l)
	}
	// A repeated 2xx on a leg already answered (or ended) is ignored: sip
	// ACKs retransmissions itself and the leg has had its HangUpLeg.
}

func (c *Call) win(l *leg) {
	if l.state == legCalling {
		l.ring.live--
	}
	c.setLeg(l, legAnswered)
	c.winner = l
	c.phase = phaseAnswered
	// Credit the member, and for a nested one each group member it was
	// reached through, so round robin, least_recent and fewest_calls of
	// every group on the way see the answer.
	for r := l.ring; r != nil && r.run != nil; r = r.run.parent {
		c.winKeys = append(c.winKeys, memKey{group: r.run.g.Name, key: r.key})
	}
	c.s.State.answered(c.winKeys, c.now)
	if c.grp != nil {
		endRun(c.grp)
	}
	c.grp, c.fb = nil, nil
	lr := &c.rec.Legs[l.rec]
	lr.Code = 200
	lr.RingMS = c.now.Sub(l.start).Milliseconds()
	lr.Reason = "answered"
	at := c.now
	c.rec.Answer = &at
	c.rec.AnsweredBy = lr.Member
	c.rec.AnsweredAt = lr.URI
	c.emit(AnswerCaller{Leg: l.id})
	for _, o := range c.legs {
		c.cancel(o, CancelAnsweredElsewhere)
	}
	// Rings not started yet never will: c.grp is gone, and with it every
	// timer of the group.
}

// onPickedUp connects a picker to a call that still rings: the picker is
// a leg of its own that answered, and every ringing leg is CANCELled as
// answered elsewhere (RFC 3326), whatever answered_elsewhere says: the
// call was answered elsewhere, by a colleague.
func (c *Call) onPickedUp(ev PickedUp) {
	if c.phase != phaseRinging {
		c.emit(RefusePicker{})
		return
	}
	group := ""
	if c.grp != nil {
		group = c.grp.g.Name
	}
	l := &leg{
		id:    LegID(len(c.legs) + 1),
		ident: "user:" + ev.By,
		start: c.now,
		state: legDone,
		rec:   len(c.rec.Legs),
	}
	c.legs = append(c.legs, l)
	c.rec.Legs = append(c.rec.Legs, LegRecord{Leg: l.id, Group: group, Member: "pickup:user:" + ev.By, URI: ev.URI, Start: c.now, Code: 200, Reason: "picked up"})
	c.setLeg(l, legAnswered)
	c.winner = l
	c.phase = phaseAnswered
	if c.grp != nil {
		endRun(c.grp)
	}
	c.grp, c.fb = nil, nil
	at := c.now
	c.rec.Answer = &at
	c.rec.AnsweredBy = c.rec.Legs[l.rec].Member
	c.rec.AnsweredAt = ev.URI
	c.note("picked up by " + ev.By)
	c.emit(ConnectPicker{Leg: l.id})
	for _, o := range c.legs {
		if o.state == legCalling {
			c.setLeg(o, legCancelled)
			o.ring.live--
			lr := &c.rec.Legs[o.rec]
			lr.RingMS = c.now.Sub(o.start).Milliseconds()
			lr.Reason = "picked up elsewhere"
			c.emit(CancelLeg{Leg: o.id, Reason: CancelAnsweredElsewhere, Elsewhere: true})
		}
	}
}

func (c *Call) onFailed(ev LegFailed) {
	l := c.leg(ev.Leg)
	if l == nil {
		return
	}
	switch l.state {
	case legDone:
		return
	case legAnswered, legHungUp:
		// The API reports an answered dialog's end as LegEnded; a failure
		// here means sip lost the dialog. Treat it the same, or the call
		// would never be Over.
		c.onEnded(LegEnded{Leg: ev.Leg})
		return
	case legCancelled:
		c.setLeg(l, legDone)
		c.rec.Legs[l.rec].Code = ev.Code
		return
	}
	// Still calling: a final response before we gave up on it.
	c.setLeg(l, legDone)
	l.ring.live--
	lr := &c.rec.Legs[l.rec]
	lr.Code = ev.Code
	lr.RingMS = c.now.Sub(l.start).Milliseconds()
	c.ringLegFailed(l, ev.Code, ev.Contacts)
}

func (c *Call) onEnded(ev LegEnded) {
	l := c.leg(ev.Leg)
	if l == nil {
		return
	}
	switch l.state {
	case legAnswered:
		// The winner hung up: end the caller too.
		c.setLeg(l, legDone)
		c.rec.EndedBy = "member"
		c.emit(HangUpCaller{})
		c.finish(OutcomeAnswered, 200)
	case legHungUp:
		c.setLeg(l, legDone)
	}
	// LegEnded on a leg that never answered is not something sip sends;
	// the leg still owes a LegFailed.
}

// onCallerGone: CANCEL from the caller, before our 200 got out.
func (c *Call) onCallerGone() {
	switch c.phase {
	case phaseRinging:
		for _, l := range c.legs {
			c.cancel(l, CancelCallerGone)
		}
		c.finish(OutcomeCancelled, 487)
	case phaseAnswered:
		// The CANCEL reached the caller's INVITE before our 200 did (sip
		// only reports a CANCEL that matched a transaction still waiting
		// for its final response): the caller got 487, not the call.
		c.hangUp(c.winner)
		c.rec.Answer = nil
		c.finish(OutcomeCancelled, 487)
	}
}

func (c *Call) onCallerEnded() {
	switch c.phase {
	case phaseRinging:
		// A BYE before answer is not valid SIP, but it still means the
		// caller is gone; leaving legs ringing would be worse.
		c.onCallerGone()
	case phaseAnswered:
		c.rec.EndedBy = "caller"
		c.hangUp(c.winner)
		c.finish(OutcomeAnswered, 200)
	}
}

func (c *Call) onShutdown() {
	switch c.phase {
	case phaseRinging:
		c.note("ringroute shut down")
		for _, l := range c.legs {
			c.cancel(l, CancelCallerGone)
		}
		c.reject(503, OutcomeFailed)
	case phaseAnswered:
		c.note("ringroute shut down")
		c.rec.EndedBy = "shutdown"
		c.hangUp(c.winner)
		c.emit(HangUpCaller{})
		c.finish(OutcomeAnswered, 200)
	}
}

func (c *Call) onAnswerFailed() {
	if c.phase != phaseAnswered {
		return
	}
	c.hangUp(c.winner)
	// The caller never took the call: no answer time, so Answer != nil
	// means a connected call, but AnsweredBy still says who picked up.
	c.rec.Answer = nil
	c.finish(OutcomeFailed, 200)
}

// --- ending

func (c *Call) reject(code int, outcome string) {
	c.emit(RejectCaller{Code: code})
	c.finish(outcome, code)
}

// finish ends the call for the caller and emits its CDR. Every leg still
// calling is CANCELled first, so no path out of routing can forget one.
func (c *Call) finish(outcome string, code int) {
	for _, l := range c.legs {
		c.cancel(l, CancelCallerGone)
	}
	if c.grp != nil {
		endRun(c.grp)
	}
	c.phase = phaseDone
	c.grp, c.fb = nil, nil
	c.leaveGroup()
	if c.s.Caller.User != "" {
		c.release("user:" + c.s.Caller.User)
	}
	if outcome == OutcomeAnswered {
		c.s.State.ended(c.winKeys, c.now)
	}
	c.rec.End = c.now
	c.rec.Outcome = outcome
	c.rec.Code = code
}

// snapshot copies the record, so that legs winding down after Finish do not
// change the CDR already handed out.
func (c *Call) snapshot() Record {
	r := c.rec
	if r.Answer != nil {
		a := *r.Answer
		r.Answer = &a
	}
	r.Groups = append([]string{}, r.Groups...)
	r.Legs = append([]LegRecord{}, r.Legs...)
	r.Notes = append([]string(nil), r.Notes...)
	return r
}
