package routing

import (
	"fmt"
	"time"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/strategy"
)

// ring is one member ringing inside an attempt, or a fallback destination
// ringing on its own. A member may have several legs at once (a user's
// contacts, a nested group) and, after a 3xx, legs that replace others.
type ring struct {
	member  int // index into groupRun.members; -1 for a fallback destination
	group   *config.Group
	targets []Target

	startAt, endAt time.Time
	state          ringState
	live           int  // legs still calling
	nonBusy        bool // some leg failed with something other than busy
	redirects      int
	lastCode       int // final code of the leg that failed last
	result         result
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
	key     string
	targets []Target
}

// groupRun is one entry of the call into a group: the dialled group, or a
// {group: X} fallback.
type groupRun struct {
	g     *config.Group
	strat strategy.Strategy
	end   time.Time // start + timeout; zero when timeout is 0
	// passes is how many passes have been planned, the current one included.
	passes  int
	members []member
	plan    []strategy.Attempt // nil: the next attempt starts a new pass
	next    int                // next attempt of plan
	rings   []*ring            // current attempt; nil while waiting for the next
	wait    time.Time          // start of the next attempt, while rings is nil
	results []result           // per member, this pass
}

func busyCode(code int) bool { return code == 486 || code == 600 || code == 603 }

// --- timers

type dueKind uint8

// Order among things due at the same instant. The group timeout goes first,
// so a member due to start exactly when the group expires never rings; ends
// go before starts, so the CANCEL of one ring precedes the INVITE of the
// next.
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
		if !g.end.IsZero() {
			consider(due{at: g.end, kind: dueGroupEnd})
		}
		if g.rings == nil {
			consider(due{at: g.wait, kind: dueAttempt})
		}
		for _, r := range g.rings {
			switch r.state {
			case ringPending:
				consider(due{at: r.startAt, kind: dueRingStart, ring: r})
			case ringRinging:
				consider(due{at: r.endAt, kind: dueRingEnd, ring: r})
			}
		}
	}
	if r := c.fb; r != nil && r.state == ringRinging {
		consider(due{at: r.endAt, kind: dueRingEnd, ring: r})
	}
	return best, ok
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
			c.groupTimeout()
		case dueRingEnd:
			c.ringTimeUp(d.ring)
		case dueRingStart:
			c.startRing(d.ring)
		case dueAttempt:
			c.startAttempt()
		}
	}
}

// --- entering a group

// refusal is a group turning a call away before ringing anyone.
type refusal struct {
	kind     string // fallback name for the CDR: closed, congestion
	fallback config.Fallback
	outcome  string
}

// admit decides whether group g takes the call now. Only `enabled` is
// checked today. This is the seam for what SPEC §2 and §4 add later:
// schedule (closed), max_calls (congestion); permissions are a 403 before
// routing and ring_in_use filters members in resolve, not here.
func admit(g *config.Group) (refusal, bool) {
	if !g.Enabled {
		return refusal{kind: "closed", fallback: orDefault(g.Fallback.Closed, 480), outcome: OutcomeClosed}, false
	}
	return refusal{}, true
}

// orDefault applies the documented default of a fallback left out. Load
// fills these in; a Config built by hand may not.
func orDefault(f config.Fallback, code int) config.Fallback {
	if f == (config.Fallback{}) {
		return config.Fallback{Reject: code}
	}
	return f
}

func (c *Call) enterGroup(g *config.Group) {
	c.rec.Groups = append(c.rec.Groups, g.Name)
	if r, ok := admit(g); !ok {
		c.takeFallback(g, r.kind, r.fallback, r.outcome)
		return
	}
	strat, ok := strategy.Lookup(g.Strategy)
	if !ok {
		c.note(fmt.Sprintf("group %s: strategy %q not implemented, rang linear", g.Name, g.Strategy))
		strat = strategy.Linear{}
	}
	run := &groupRun{g: g, strat: strat, wait: c.at}
	if g.Timeout > 0 {
		run.end = c.at.Add(g.Timeout)
	}
	c.grp = run
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

// planPass snapshots the ringable members and asks the strategy for a pass.
// Contacts are read here, at the pass's start, so a phone that registers
// while the call rings is in the next pass.
func (c *Call) planPass() bool {
	g := c.grp
	g.passes++
	g.members = c.resolve(g.g)
	in := strategy.Input{Members: make([]strategy.Member, len(g.members)), Rand: c.rand}
	for i, m := range g.members {
		in.Members[i] = strategy.Member{
			Key:     m.key,
			Timeout: g.g.RingTime(m.cfg),
			Delay:   m.cfg.Delay,
			Weight:  max(m.cfg.Weight, 1),
		}
	}
	g.plan = g.strat.Plan(in)
	g.next = 0
	g.results = make([]result, len(g.members))
	return len(g.plan) > 0
}

func (c *Call) startAttempt() {
	g := c.grp
	if g.plan == nil && !c.planPass() {
		c.note(fmt.Sprintf("group %s: nothing to ring", g.g.Name))
		c.giveUp("noanswer", orDefault(g.g.Fallback.NoAnswer, 480), OutcomeNoAnswer)
		return
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
		start := c.at.Add(r.After)
		g.rings = append(g.rings, &ring{
			member:  r.Member,
			group:   g.g,
			targets: g.members[r.Member].targets,
			startAt: start,
			endAt:   start.Add(r.For),
		})
	}
	if len(g.rings) == 0 {
		c.attemptOver()
	}
}

func (c *Call) startRing(r *ring) {
	r.state = ringRinging
	for _, t := range r.targets {
		c.startLeg(r, t)
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
			t := l.target
			t.URI, t.Destination, t.Transport = contacts[0], "", ""
			// The new leg belongs to the same ring, so it stops at the
			// member's original ring end, not after a fresh timeout.
			c.startLeg(r, t)
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
	g := c.grp
	if g == nil {
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
	c.attemptOver()
}

func (c *Call) attemptOver() {
	g := c.grp
	g.rings = nil
	g.wait = c.at.Add(g.g.RetryDelay)
	if g.next < len(g.plan) {
		return
	}
	c.passOver()
}

// passOver judges a complete pass (SPEC §7) and decides whether another
// follows.
func (c *Call) passOver() {
	g := c.grp
	rang, busy, failed := 0, 0, 0
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
	noanswer := orDefault(g.g.Fallback.NoAnswer, 480)
	switch {
	case rang == 0:
		c.giveUp("noanswer", noanswer, OutcomeNoAnswer)
	case busy == rang:
		// Everyone is busy: ringing them again only delays the caller.
		c.giveUp("busy", orDefault(g.g.Fallback.Busy, 486), OutcomeBusy)
	case busy+failed == rang:
		// Nobody could ring at all: another pass would fail the same way.
		c.giveUp("noanswer", noanswer, OutcomeFailed)
	case !g.end.IsZero() || g.passes <= g.g.Repeats:
		g.plan = nil // next attempt plans a new pass, after retry_delay
	default:
		c.giveUp("noanswer", noanswer, OutcomeNoAnswer)
	}
}

func (c *Call) groupTimeout() {
	g := c.grp
	for _, r := range g.rings {
		if r.state == ringRinging {
			c.cancelRing(r, CancelGroupTimeout)
		}
	}
	c.giveUp("noanswer", orDefault(g.g.Fallback.NoAnswer, 480), OutcomeNoAnswer)
}

// giveUp leaves the ringing group for one of its fallbacks.
func (c *Call) giveUp(kind string, f config.Fallback, outcome string) {
	g := c.grp.g
	c.grp = nil
	c.takeFallback(g, kind, f, outcome)
}

// --- fallbacks

// takeFallback sends the call to f, one of group g's fallbacks (SPEC §8).
func (c *Call) takeFallback(g *config.Group, kind string, f config.Fallback, outcome string) {
	if c.rec.Fallback != "" {
		c.rec.Fallback += ","
	}
	c.rec.Fallback += kind + ":" + f.String()
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
		var targets []Target
		if f.URI != "" {
			targets = []Target{c.target(g, key, f.URI, "", "")}
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

// resolve lists g's members that have something to ring now, in config
// order, with their targets. A member with nothing to ring is skipped and
// noted, not an error (SPEC "Registrar": a user with no contact is skipped).
func (c *Call) resolve(g *config.Group) []member {
	var out []member
	for _, m := range g.Members {
		key := m.Key()
		if g.RingTime(m) <= 0 {
			c.note(fmt.Sprintf("group %s: %s skipped: no ring time", g.Name, key))
			continue
		}
		var ts []Target
		switch {
		case m.User != "":
			ts = c.userTargets(g, key, m.User)
		case m.Group != "":
			// For now a nested group rings all its members at once as one
			// member; its own strategy comes later.
			ts = c.nestedTargets(g, key, m.Group, map[string]bool{g.Name: true})
		default:
			ts = []Target{c.target(g, key, m.URI, "", "")}
		}
		if len(ts) == 0 {
			why := "nothing to ring"
			if m.User != "" {
				why = "no registered contacts"
			}
			c.note(fmt.Sprintf("group %s: %s skipped: %s", g.Name, key, why))
			continue
		}
		out = append(out, member{cfg: m, key: key, targets: ts})
	}
	return out
}

// target is a leg toward uri on behalf of group g's member key.
func (c *Call) target(g *config.Group, key, uri, dest, transport string) Target {
	return Target{
		URI:         uri,
		Destination: dest,
		Transport:   transport,
		Group:       g.Name,
		Member:      key,
		Display:     g.CallerID.Apply(c.s.Caller.Display),
	}
}

func (c *Call) userTargets(g *config.Group, key, user string) []Target {
	if c.s.Directory == nil {
		return nil
	}
	var out []Target
	for _, ct := range c.s.Directory.Contacts(user) {
		out = append(out, c.target(g, key, ct.URI, ct.Destination, ct.Transport))
	}
	return out
}

// nestedTargets is every uri and user contact of group name, and of groups
// nested in it, for g's member key. seen breaks cycles a hand-built config
// may have.
func (c *Call) nestedTargets(g *config.Group, key, name string, seen map[string]bool) []Target {
	if seen[name] {
		return nil
	}
	seen[name] = true
	x := c.lookupGroup(name)
	if x == nil {
		return nil
	}
	var out []Target
	for _, m := range x.Members {
		switch {
		case m.User != "":
			out = append(out, c.userTargets(g, key, m.User)...)
		case m.Group != "":
			out = append(out, c.nestedTargets(g, key, m.Group, seen)...)
		default:
			out = append(out, c.target(g, key, m.URI, "", ""))
		}
	}
	return out
}
