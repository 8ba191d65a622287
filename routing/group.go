package routing

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/strategy"
)

// ring is one member ringing inside an attempt, or a fallback destination
// ringing on its own. A uri or user member rings on legs (a user's
// contacts and, after a 3xx, legs that replace others); a {group: X}
// member rings X's own run of attempts inside its time.
type ring struct {
	member int       // index into run.members of its pass; -1 for a fallback destination
	key    string    // that member's key: a late answer may come after the next pass is planned
	run    *groupRun // whose attempt it is in; nil for a fallback destination
	// group is the group the call entered (for a nested member, the
	// outermost one): its follow_forward and answered_elsewhere apply to
	// every leg, as they are about the call rather than the member.
	group   *config.Group
	targets []dest
	nested  *config.Group // a {group: X} member: X
	sub     *groupRun     // X's run, once the nested member rings

	startAt, endAt time.Time
	state          ringState
	live           int  // legs still calling
	nonBusy        bool // some leg failed with something other than busy
	redirects      int
	lastCode       int // final code of the leg that failed last
	result         result
}

// dest is one leg to start: where, and who that is (see memberIdentity).
type dest struct {
	t     Target
	ident string
}

type ringState uint8

const (
	ringPending ringState = iota // its delay has not passed yet
	ringRinging
	ringEnded
)

// result is how a member's ring ended, for the pass's verdict.
type result uint8

const (
	resNone    result = iota // did not ring in this pass
	resTimeout               // its time ran out (or the group's)
	resBusy                  // every leg 486/600/603
	resFailed                // every leg failed, not all busy
)

// member is one ringable member for the current pass.
type member struct {
	cfg     config.Member
	index   int    // in the group's config members, for round robin
	key     string // config.Member.Key
	targets []dest
	nested  *config.Group
}

// groupRun is one run of a group's strategy: the group the call is in
// (dialled, or entered by a {group: X} fallback), or a nested {group: X}
// member ringing inside its parent's ring.
type groupRun struct {
	g      *config.Group
	strat  strategy.Strategy
	parent *ring         // nil for the group the call is in
	top    *config.Group // the group the call is in
	// path prefixes the member keys of a nested run's legs, so a CDR leg
	// says which way it was reached: "group:sales/user:bob".
	path      string
	skipInUse bool // ring_in_use: false on this group or one it is nested in

	end time.Time // zero: no limit
	// ownEnd: a nested run's end is its own timeout, not its parent
	// member's time.
	ownEnd bool
	span   time.Duration // the time a pass has, for distribute_evenly; 0: unbounded
	// seed: each pass draws its chance from a source seeded alike, so a
	// random group rings the same shuffle on every pass of one call.
	seed [2]uint64

	// passes is how many passes have been planned, the current one included.
	passes  int
	members []member
	plan    []strategy.Attempt // nil: the next attempt starts a new pass
	next    int                // next attempt of plan
	rings   []*ring            // current attempt; nil while waiting for the next
	wait    time.Time          // start of the next attempt, while rings is nil
	results []result           // per member, this pass
	inUse   int                // members left out of this pass for being in a call; busy
	over    bool
}

func busyCode(code int) bool { return code == 486 || code == 600 || code == 603 }

// --- timers

type dueKind uint8

// Order among things due at the same instant. The group timeout goes first,
// so a member due to start exactly when the group expires never rings; ends
// go before starts, so the CANCEL of one ring precedes the INVITE of the
// next. A nested run's end is, to its parent, a ring end.
const (
	dueGroupEnd dueKind = iota
	dueRingEnd
	dueRingStart
	dueAttempt
)

type due struct {
	at   time.Time
	kind dueKind
	ring *ring
	run  *groupRun // dueAttempt, dueGroupEnd, and dueRingEnd of a nested run
}

func (c *Call) nextDue() (due, bool) {
	var best due
	ok := false
	consider := func(d due) {
		if !ok || d.at.Before(best.at) || d.at.Equal(best.at) && d.kind < best.kind {
			best, ok = d, true
		}
	}
	if c.phase != phaseRinging {
		return best, false
	}
	if g := c.grp; g != nil {
		dueRun(g, consider)
	}
	if r := c.fb; r != nil && r.state == ringRinging {
		consider(due{at: r.endAt, kind: dueRingEnd, ring: r})
	}
	return best, ok
}

// dueRun offers everything g and the runs nested in it wait for. A run's
// end is offered before its rings, so on a tie of kinds it goes first.
func dueRun(g *groupRun, consider func(due)) {
	if !g.end.IsZero() {
		kind := dueGroupEnd
		if g.parent != nil {
			kind = dueRingEnd
		}
		consider(due{at: g.end, kind: kind, run: g})
	}
	if g.rings == nil {
		consider(due{at: g.wait, kind: dueAttempt, run: g})
	}
	for _, r := range g.rings {
		switch r.state {
		case ringPending:
			consider(due{at: r.startAt, kind: dueRingStart, ring: r})
		case ringRinging:
			if r.sub != nil {
				dueRun(r.sub, consider)
			} else {
				consider(due{at: r.endAt, kind: dueRingEnd, ring: r})
			}
		}
	}
}

// advance fires, in time order, everything due by now. Each firing moves
// its state on (a pending ring starts, a ringing one ends, ...) and every
// ring lasts a positive time, so this loop ends.
func (c *Call) advance(now time.Time) {
	for {
		d, ok := c.nextDue()
		if !ok || d.at.After(now) {
			return
		}
		c.at = d.at
		switch d.kind {
		case dueGroupEnd:
			c.groupTimeout(d.run)
		case dueRingEnd:
			if d.run != nil {
				c.nestedTimeUp(d.run)
			} else {
				c.ringTimeUp(d.ring)
			}
		case dueRingStart:
			c.startRing(d.ring)
		case dueAttempt:
			c.startAttempt(d.run)
		}
	}
}

// --- entering a group

// refusal is a group turning a call away before ringing anyone.
type refusal struct {
	kind     string // fallback name for the CDR: closed, congestion; "" when denied
	fallback config.Fallback
	outcome  string
	why      string
}

// admit applies SPEC "One call" step 2 in its order: permissions (denied:
// 403), enabled and schedule (closed: fallback.closed), max_calls (full:
// fallback.congestion). When it admits, the call holds one of the group's
// max_calls slots until it leaves the group.
func (c *Call) admit(g *config.Group) (refusal, bool) {
	if why, ok := permitted(g.Permissions, c.s.Caller.URI); !ok {
		return refusal{outcome: OutcomeDenied, why: why}, false
	}
	closed := refusal{kind: "closed", fallback: orDefault(g.Fallback.Closed, 480), outcome: OutcomeClosed}
	if !g.Enabled {
		closed.why = "disabled (enabled: false)"
		return closed, false
	}
	if !g.Schedule.OpenAt(c.at) {
		closed.why = "closed by its schedule at " + scheduleTime(g.Schedule, c.at)
		return closed, false
	}
	if !c.s.State.enter(g.Name, g.MaxCalls) {
		return refusal{
			kind: "congestion", fallback: orDefault(g.Fallback.Congestion, 486), outcome: OutcomeCongestion,
			why: fmt.Sprintf("full: max_calls %d reached", g.MaxCalls),
		}, false
	}
	c.slot = g.Name
	return refusal{}, true
}

// permitted applies a group's permissions to the caller's From URI: a deny
// pattern that matches refuses, whatever allow says; otherwise, when allow
// is set (Load always sets it, to ["*"] by default), one of its patterns
// must match.
func permitted(p config.Permissions, from string) (string, bool) {
	for _, d := range p.Deny {
		if config.Match(d, from) {
			return fmt.Sprintf("denied: %s matches deny pattern %q", from, d), false
		}
	}
	if p.Allow == nil {
		return "", true
	}
	for _, a := range p.Allow {
		if config.Match(a, from) {
			return "", true
		}
	}
	return fmt.Sprintf("denied: %s matches no allow pattern", from), false
}

// scheduleTime renders t as the schedule reads it, in its own zone.
func scheduleTime(s *config.Schedule, t time.Time) string {
	loc, zone := time.UTC, "UTC"
	if s != nil && s.Location != nil {
		loc, zone = s.Location, s.Timezone
	}
	return t.In(loc).Format("Mon 2006-01-02 15:04") + " " + zone
}

// orDefault applies the documented default of a fallback left out. Load
// fills these in; a Config built by hand may not.
func orDefault(f config.Fallback, code int) config.Fallback {
	if f == (config.Fallback{}) {
		return config.Fallback{Reject: code}
	}
	return f
}

// enterGroup takes the call into g: the dialled group, or a {group: X}
// fallback, which enters X as if the caller had dialled it.
func (c *Call) enterGroup(g *config.Group) {
	c.rec.Groups = append(c.rec.Groups, g.Name)
	c.trace(g.Name, TraceEnter, describeGroup(g))
	r, ok := c.admit(g)
	if !ok {
		c.trace(g.Name, TraceRefused, r.why)
		c.note(fmt.Sprintf("group %s: %s", g.Name, r.why))
		if r.outcome == OutcomeDenied {
			c.reject(403, OutcomeDenied)
			return
		}
		c.takeFallback(g, r.kind, r.fallback, r.outcome)
		return
	}
	c.grp = c.newRun(g, nil)
}

// describeGroup is a group's timing in one line, for traces.
func describeGroup(g *config.Group) string {
	s := fmt.Sprintf("strategy %s, timeout %s, member_timeout %s, retry_delay %s", g.Strategy, short(g.Timeout), short(g.MemberTimeout), short(g.RetryDelay))
	if g.Timeout == 0 && g.Repeats > 0 {
		s += fmt.Sprintf(", repeats %d", g.Repeats)
	}
	if g.DistributeEvenly {
		s += ", distribute_evenly"
	}
	if !g.RingInUse {
		s += ", ring_in_use false"
	}
	if g.MaxCalls > 0 {
		s += fmt.Sprintf(", max_calls %d", g.MaxCalls)
	}
	return s
}

// short renders a duration without zero units: 30s, 1m30s, 1.5s, 0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// onPath reports whether group name is g's or one g is nested in: the
// groups on the nesting path, against cycles in hand-built configs. A walk
// up, not a set: every call kept a map of them, and paths are short.
func (g *groupRun) onPath(name string) bool {
	for r := g; ; r = r.parent.run {
		if r.g.Name == name {
			return true
		}
		if r.parent == nil {
			return false
		}
	}
}

// pathNames is the groups on g's nesting path, g's first.
func (g *groupRun) pathNames() []string {
	var out []string
	for r := g; ; r = r.parent.run {
		out = append(out, r.g.Name)
		if r.parent == nil {
			return out
		}
	}
}

// newRun starts a run of g's strategy now: the group the call is in when
// parent is nil, else the nested member ring parent.
func (c *Call) newRun(g *config.Group, parent *ring) *groupRun {
	strat, ok := strategy.Lookup(g.Strategy)
	if !ok {
		c.note(fmt.Sprintf("group %s: strategy %q not implemented, rang linear", g.Name, g.Strategy))
		strat = strategy.Linear{}
	}
	run := &groupRun{g: g, strat: strat, parent: parent, wait: c.at, seed: [2]uint64{c.rand.Uint64(), c.rand.Uint64()}}
	if parent == nil {
		run.top = g
		run.skipInUse = !g.RingInUse
		if g.Timeout > 0 {
			run.end = c.at.Add(g.Timeout)
		}
		run.span = g.Timeout
		return run
	}
	// A nested group rings by its own strategy and member timings, but
	// only within its member time in the parent, and its own timeout
	// when that is shorter.
	p := parent.run
	run.top = p.top
	run.path = p.path + parent.key + "/"
	run.skipInUse = p.skipInUse || !g.RingInUse
	run.end = parent.endAt
	if g.Timeout > 0 && c.at.Add(g.Timeout).Before(run.end) {
		run.end, run.ownEnd = c.at.Add(g.Timeout), true
	}
	run.span = run.end.Sub(c.at)
	return run
}

// lookupGroup finds a group by name in the call's snapshot. A linear search:
// groups are few, and Config's lookup maps exist only on a loaded Config.
func (c *Call) lookupGroup(name string) *config.Group {
	if c.s.Config == nil {
		return nil
	}
	for _, g := range c.s.Config.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// --- passes and attempts

// planPass snapshots the ringable members and the group's memory and asks
// the strategy for a pass. Contacts are read here, at the pass's start, so
// a phone that registers while the call rings is in the next pass.
func (c *Call) planPass(g *groupRun) {
	g.passes++
	g.members, g.inUse = c.resolve(g)
	// Calls that start together must not all begin with the same member
	// of a round robin: the memory is claimed with the plan, and a plan
	// made from memory another call changed meanwhile is made again.
	for tries := 0; ; tries++ {
		mem := c.s.State.memory(g.g.Name)
		g.plan = c.planFrom(g, mem)
		if c.s.State.claim(g.g.Name, mem.last, firstKey(g)) || tries == 8 {
			break
		}
	}
	g.next = 0
	g.results = make([]result, len(g.members))
	if c.s.Trace != nil {
		var order []string
		for _, a := range g.plan {
			var same []string
			for _, r := range a {
				if r.Member >= 0 && r.Member < len(g.members) {
					same = append(same, g.members[r.Member].key)
				}
			}
			order = append(order, strings.Join(same, " + "))
		}
		c.trace(g.g.Name, TracePass, fmt.Sprintf("pass %d: %s", g.passes, strings.Join(order, ", ")))
	}
}

// firstKey is the member a pass's plan rings first ("" for none).
func firstKey(g *groupRun) string {
	for _, a := range g.plan {
		for _, r := range a {
			if r.Member >= 0 && r.Member < len(g.members) {
				return g.members[r.Member].key
			}
		}
	}
	return ""
}

// planFrom asks the strategy for a pass over g.members given the group's
// memory.
func (c *Call) planFrom(g *groupRun, mem groupMemory) []strategy.Attempt {
	in := strategy.Input{
		Members: make([]strategy.Member, len(g.members)),
		Rand:    rand.New(rand.NewPCG(g.seed[0], g.seed[1])),
		Next:    nextIndex(g.members, g.g, mem.last),
	}
	if !g.end.IsZero() {
		in.Remaining = g.end.Sub(c.at)
	}
	var share time.Duration
	if g.g.DistributeEvenly && g.span > 0 && len(g.members) > 0 {
		if share = g.g.EvenRingTime(len(g.members), g.span); share <= 0 {
			c.note(fmt.Sprintf("group %s: distribute_evenly leaves no ring time (timeout %s, %d members, retry_delay %s); member_timeout used", g.g.Name, short(g.span), len(g.members), short(g.g.RetryDelay)))
		}
	}
	for i, m := range g.members {
		t := g.g.RingTime(m.cfg)
		if share > 0 && m.cfg.Timeout == 0 {
			t = share
		}
		ms := mem.members[m.key]
		in.Members[i] = strategy.Member{
			Key:      m.key,
			Timeout:  t,
			Delay:    m.cfg.Delay,
			Weight:   max(m.cfg.Weight, 1),
			LastCall: ms.lastCall,
			Answered: ms.answered,
		}
	}
	return g.strat.Plan(in)
}

// nextIndex is where round robin starts: the first ringable member after
// last (the member key last tried or answered) in config order, wrapping
// round. Members left out of this pass are stepped over; a last that is no
// longer in the group starts from the top.
func nextIndex(ms []member, g *config.Group, last string) int {
	if last == "" {
		return 0
	}
	li := -1
	for i, m := range g.Members {
		if m.Key() == last {
			li = i
			break
		}
	}
	if li < 0 {
		return 0
	}
	for i, m := range ms {
		if m.index > li {
			return i
		}
	}
	return 0
}

func (c *Call) startAttempt(g *groupRun) {
	if g.plan == nil {
		c.planPass(g)
		if len(g.plan) == 0 {
			// Nothing to ring this pass: judge it as it stands (members in
			// a call count as busy; none at all is "nothing to ring").
			g.plan = nil
			c.passOver(g)
			return
		}
	}
	a := g.plan[g.next]
	g.next++
	g.rings = make([]*ring, 0, len(a))
	for _, r := range a {
		if r.Member < 0 || r.Member >= len(g.members) || r.For <= 0 {
			// A strategy bug must not crash the call or spin it.
			c.note(fmt.Sprintf("group %s: strategy %s planned an invalid ring %+v; skipped", g.g.Name, g.g.Strategy, r))
			continue
		}
		m := g.members[r.Member]
		start := c.at.Add(r.After)
		g.rings = append(g.rings, &ring{
			member:  r.Member,
			key:     m.key,
			run:     g,
			group:   g.top,
			targets: m.targets,
			nested:  m.nested,
			startAt: start,
			endAt:   start.Add(r.For),
		})
	}
	if len(g.rings) == 0 {
		c.attemptOver(g)
		return
	}
	// Room for the legs this attempt may start, made at once: appended one
	// by one, both slices regrew twice in every parallel call.
	n := 0
	for _, r := range g.rings {
		n += len(r.targets)
	}
	c.legs = slices.Grow(c.legs, n)
	c.rec.Legs = slices.Grow(c.rec.Legs, n)
}

// calling reports whether one of legs rings ident. A scan, not a set: a
// call has a handful of legs, and a map cost every ring of every call an
// allocation or two.
func calling(legs []*leg, ident string) bool {
	for _, l := range legs {
		if l.state == legCalling && l.ident == ident {
			return true
		}
	}
	return false
}

func (c *Call) startRing(r *ring) {
	r.state = ringRinging
	if g := r.run; g != nil {
		c.s.State.tried(g.g.Name, r.key)
	}
	if r.nested != nil {
		r.sub = c.newRun(r.nested, r)
		c.trace(r.nested.Name, TraceEnter, fmt.Sprintf("as member %s of %s until %s: %s", r.key, r.run.g.Name, c.rel(r.sub.end), describeGroup(r.nested)))
		return // its first attempt is due now
	}
	// A target already ringing in this call (a member of two nested
	// groups, say) is rung once: a second INVITE would only make the
	// phone ring twice. Legs of this ring are not counted, so every
	// contact of a user starts.
	before := c.legs[:len(c.legs):len(c.legs)]
	started := 0
	for _, d := range r.targets {
		if r.run != nil && calling(before, d.ident) {
			c.note(fmt.Sprintf("group %s: %s already rings in this call; rung once", r.run.g.Name, d.t.Member))
			continue
		}
		c.startLeg(r, d)
		started++
	}
	if started == 0 {
		r.state = ringEnded
		r.result = resNone
		c.ringEnded(r)
	}
}

// ringTimeUp: a member's (or fallback destination's) ring time is over.
func (c *Call) ringTimeUp(r *ring) {
	c.cancelRing(r, CancelRingTimeout)
	r.result = resTimeout
	if r == c.fb {
		c.fallbackFailed(480)
		return
	}
	c.ringEnded(r)
}

// nestedTimeUp: a nested run's end came: its member time in the parent,
// or its own timeout. Whatever it rings is cancelled and the member has
// rung out.
func (c *Call) nestedTimeUp(g *groupRun) {
	why := CancelRingTimeout
	r := g.parent
	if g.ownEnd {
		why = CancelGroupTimeout
		c.trace(g.g.Name, TraceTimeout, fmt.Sprintf("group timeout %s of %s", short(g.g.Timeout), g.g.Name))
		c.trace(g.g.Name, TraceGiveUp, "time ran out")
	} else {
		c.trace(g.g.Name, TraceGiveUp, fmt.Sprintf("its time as member %s of %s is up", r.key, r.run.g.Name))
	}
	c.cancelRing(r, why)
	r.result = resTimeout
	c.ringEnded(r)
}

// ringLegFailed: leg l of a ringing ring got a final failure. l is already
// terminal and no longer counted in r.live.
func (c *Call) ringLegFailed(l *leg, code int, contacts []string) {
	r := l.ring
	lr := &c.rec.Legs[l.rec]
	switch {
	case code >= 300 && code < 400:
		if r.group.FollowForward && len(contacts) > 0 && r.redirects < maxRedirects {
			r.redirects++
			lr.Reason = "redirect"
			t := Target{URI: contacts[0], Group: lr.Group, Member: lr.Member, Display: l.display}
			// The new leg belongs to the same ring, so it stops at the
			// member's original ring end, not after a fresh timeout; it
			// is still the same member, so the same identity.
			c.startLeg(r, dest{t: t, ident: l.ident})
			return
		}
		lr.Reason = "failed"
		r.nonBusy = true
	case busyCode(code):
		lr.Reason = "busy"
	default:
		lr.Reason = "failed"
		r.nonBusy = true
	}
	r.lastCode = code
	if r.live > 0 {
		return
	}
	r.state = ringEnded
	r.result = resBusy
	if r.nonBusy {
		r.result = resFailed
	}
	if r == c.fb {
		c.fallbackFailed(code)
		return
	}
	c.ringEnded(r)
}

// ringEnded: r will ring no more; if it was the last of its attempt, the
// attempt is over now.
func (c *Call) ringEnded(r *ring) {
	g := r.run
	if g == nil || g.over {
		return
	}
	if r.member >= 0 && r.member < len(g.results) {
		g.results[r.member] = r.result
	}
	for _, o := range g.rings {
		if o.state != ringEnded {
			return
		}
	}
	c.attemptOver(g)
}

func (c *Call) attemptOver(g *groupRun) {
	// An attempt in which nobody rang (every target already ringing in
	// this call) costs no pause.
	rang := false
	for _, r := range g.rings {
		if r.result != resNone {
			rang = true
		}
	}
	g.rings = nil
	g.wait = c.at
	if rang {
		g.wait = c.at.Add(g.g.RetryDelay)
	}
	if g.next < len(g.plan) {
		return
	}
	c.passOver(g)
}

// passOver judges a complete pass (SPEC §7) and decides whether another
// follows. Members left out for being in a call count as busy: to the
// caller they are, and a group whose members are all on the phone should
// take fallback.busy, not ring nobody until its timeout.
func (c *Call) passOver(g *groupRun) {
	rang, busy, failed := g.inUse, g.inUse, 0
	for _, r := range g.results {
		switch r {
		case resBusy:
			busy++
		case resFailed:
			failed++
		}
		if r != resNone {
			rang++
		}
	}
	switch {
	case rang == 0:
		c.note(fmt.Sprintf("group %s: nothing to ring", g.g.Name))
		c.runOver(g, "noanswer", resNone, OutcomeNoAnswer, "nothing to ring")
	case busy == rang:
		// Everyone is busy: ringing them again only delays the caller.
		c.runOver(g, "busy", resBusy, OutcomeBusy, "every member busy")
	case busy+failed == rang:
		// Nobody could ring at all: another pass would fail the same way.
		c.runOver(g, "noanswer", resFailed, OutcomeFailed, "every member failed")
	case g.g.Timeout > 0 || g.passes <= g.g.Repeats:
		g.plan = nil // next attempt plans a new pass, after retry_delay
	default:
		c.runOver(g, "noanswer", resTimeout, OutcomeNoAnswer, fmt.Sprintf("no answer in %d pass%s", g.passes, plural(g.passes, "es")))
	}
}

func plural(n int, suffix string) string {
	if n == 1 {
		return ""
	}
	return suffix
}

// runOver ends run g with a verdict. The group the call is in takes its
// fallback for kind; a nested run ends its member's ring with res, for
// the parent's verdict (a nested group's own fallbacks do not apply: it
// is a member, not a destination).
func (c *Call) runOver(g *groupRun, kind string, res result, outcome, why string) {
	endRun(g)
	c.trace(g.g.Name, TraceGiveUp, why)
	if g.parent == nil {
		c.grp = nil
		c.takeFallback(g.g, kind, c.fallbackFor(g.g, kind), outcome)
		return
	}
	r := g.parent
	r.state = ringEnded
	r.result = res
	c.ringEnded(r)
}

func (c *Call) fallbackFor(g *config.Group, kind string) config.Fallback {
	if kind == "busy" {
		return orDefault(g.Fallback.Busy, 486)
	}
	return orDefault(g.Fallback.NoAnswer, 480)
}

// endRun marks g and every run nested in it over, so that nothing of them
// fires any more.
func endRun(g *groupRun) {
	g.over = true
	for _, r := range g.rings {
		if r.sub != nil {
			endRun(r.sub)
		}
	}
}

// groupTimeout: the group timeout of the group the call is in.
func (c *Call) groupTimeout(g *groupRun) {
	c.trace(g.g.Name, TraceTimeout, fmt.Sprintf("group timeout %s of %s", short(g.g.Timeout), g.g.Name))
	for _, r := range g.rings {
		if r.state == ringRinging {
			c.cancelRing(r, CancelGroupTimeout)
		}
	}
	c.runOver(g, "noanswer", resTimeout, OutcomeNoAnswer, "time ran out")
}

// --- fallbacks

// takeFallback sends the call to f, one of group g's fallbacks (SPEC §8).
// The call leaves the group first, so its max_calls slot is free for the
// next caller, whatever f is.
func (c *Call) takeFallback(g *config.Group, kind string, f config.Fallback, outcome string) {
	c.leaveGroup()
	if c.rec.Fallback != "" {
		c.rec.Fallback += ","
	}
	c.rec.Fallback += kind + ":" + f.String()
	c.trace(g.Name, TraceFallback, "fallback."+kind+": "+f.String())
	switch {
	case f.Group != "":
		c.hops++
		if c.hops > maxHops {
			c.note(fmt.Sprintf("fallback hop limit (%d) reached at group %s", maxHops, f.Group))
			c.reject(480, OutcomeFailed)
			return
		}
		next := c.lookupGroup(f.Group)
		if next == nil {
			c.note(fmt.Sprintf("fallback group %s not found", f.Group))
			c.reject(480, OutcomeFailed)
			return
		}
		c.enterGroup(next)
	case f.URI != "" || f.User != "":
		key := "fallback:" + f.String()
		var targets []dest
		if f.URI != "" {
			targets = []dest{{t: c.target(g, key, f.URI, "", ""), ident: uriIdentity(f.URI)}}
		} else {
			targets = c.userTargets(g, key, f.User)
		}
		if len(targets) == 0 {
			c.note(fmt.Sprintf("group %s: fallback %s has nothing to ring", g.Name, f))
			c.reject(480, outcome)
			return
		}
		d := f.Timeout
		if d <= 0 {
			d = g.MemberTimeout
		}
		if d <= 0 {
			// Hand-built configs only; Load gives member_timeout a default.
			d = 15 * time.Second
		}
		r := &ring{member: -1, group: g, targets: targets, startAt: c.at, endAt: c.at.Add(d)}
		c.fb = r
		c.outcome = outcome
		c.startRing(r)
	default:
		code := f.Reject
		if code < 400 || code > 699 {
			code = 480
		}
		c.reject(code, outcome)
	}
}

// leaveGroup frees the call's max_calls slot, if it holds one.
func (c *Call) leaveGroup() {
	if c.slot != "" {
		c.s.State.leave(c.slot)
		c.slot = ""
	}
}

// fallbackFailed: the fallback destination did not answer. The caller gets
// its failure when it means something to them; a 487 (our own CANCEL) or a
// 408 (nobody there) is the same to a caller as nobody answering.
func (c *Call) fallbackFailed(code int) {
	c.fb = nil
	if code < 400 || code > 699 || code == 487 || code == 408 {
		code = 480
	}
	c.reject(code, c.outcome)
}

// --- members and targets

// resolve lists the members of g that ring in this pass, in config order,
// with their targets, and counts those left out for being in a call
// elsewhere (ring_in_use: false). A member with nothing to ring is skipped
// and noted, not an error (SPEC "Registrar": a user with no contact is
// skipped).
func (c *Call) resolve(g *groupRun) ([]member, int) {
	out := make([]member, 0, len(g.g.Members))
	inUse := 0
	skip := func(key, why string) {
		c.note(fmt.Sprintf("group %s: %s skipped: %s", g.g.Name, key, why))
		c.trace(g.g.Name, TraceSkip, key+": "+why)
	}
	for i, m := range g.g.Members {
		key := m.Key()
		if g.g.RingTime(m) <= 0 && !(g.g.DistributeEvenly && g.span > 0) {
			skip(key, "no ring time")
			continue
		}
		mem := member{cfg: m, index: i, key: key}
		switch {
		case m.Group != "":
			x := c.lookupGroup(m.Group)
			switch {
			case x == nil:
				skip(key, "no such group")
				continue
			case g.onPath(x.Name):
				skip(key, "it contains this group")
				continue
			case !x.Enabled || !x.Schedule.OpenAt(c.at):
				skip(key, "group "+x.Name+" is closed")
				continue
			case !c.ringable(x, g.pathNames()):
				skip(key, "nothing to ring")
				continue
			}
			mem.nested = x
		case m.User != "":
			mem.targets = c.userTargets(g.top, g.path+key, m.User)
			if len(mem.targets) == 0 {
				skip(key, "no registered contacts")
				continue
			}
		default:
			mem.targets = []dest{{t: c.target(g.top, g.path+key, m.URI, "", ""), ident: uriIdentity(m.URI)}}
		}
		if g.skipInUse && mem.nested == nil && c.inUseElsewhere(memberIdentity(m)) {
			skip(key, "in a call (ring_in_use: false)")
			inUse++
			continue
		}
		out = append(out, mem)
	}
	return out, inUse
}

// ringable reports whether nested group x has anything it could ring now.
// path names the groups on the nesting path, against cycles in
// hand-built configs.
func (c *Call) ringable(x *config.Group, path []string) bool {
	for _, m := range x.Members {
		switch {
		case m.Group != "":
			y := c.lookupGroup(m.Group)
			if y == nil || slices.Contains(path, y.Name) || y.Name == x.Name || !y.Enabled || !y.Schedule.OpenAt(c.at) {
				continue
			}
			if c.ringable(y, append(path[:len(path):len(path)], x.Name)) {
				return true
			}
		case m.User != "":
			if c.s.Directory != nil && len(c.s.Directory.Contacts(m.User)) > 0 {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// inUseElsewhere reports whether another call holds identity id. A call
// never skips a member for being in this same call.
func (c *Call) inUseElsewhere(id string) bool {
	n := c.s.State.inUseCount(id)
	if c.holds(id) {
		n--
	}
	return n > 0
}

// target is a leg toward uri on behalf of the member key of the group the
// call is in (g).
func (c *Call) target(g *config.Group, key, uri, dst, transport string) Target {
	return Target{
		URI:         uri,
		Destination: dst,
		Transport:   transport,
		Group:       g.Name,
		Member:      key,
		Display:     g.CallerID.Apply(c.s.Caller.Display),
	}
}

func (c *Call) userTargets(g *config.Group, key, user string) []dest {
	if c.s.Directory == nil {
		return nil
	}
	var out []dest
	for _, ct := range c.s.Directory.Contacts(user) {
		out = append(out, dest{t: c.target(g, key, ct.URI, ct.Destination, ct.Transport), ident: "user:" + user})
	}
	return out
}
