package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// The timing lint: warnings (check exits 0) about group timing that
// cannot do what it seems to say. It models one pass in which nobody
// answers and nobody is busy, exactly as routing times it: each member
// rings from its delay (counted from the start of its attempt) for its ring
// time, retry_delay separates attempts, the group timeout ends everything.
// A busy member ends early and lets later ones ring sooner, so "never
// rings" here means "never rings unless someone before it is busy".

// maxMembers is where a group gets a warning for its size: Smart PBX's
// limit, which ringroute does not enforce.
const maxMembers = 15

// timing warns about settings that cannot do what they seem to say. It
// skips groups with errors, whose values may be defaults standing in for
// what the operator meant.
func (l *loader) timing() {
	byName := map[string]*groupInfo{}
	for _, gi := range l.x.infos {
		if gi.g.Name != "" {
			if _, dup := byName[gi.g.Name]; !dup {
				byName[gi.g.Name] = gi
			}
		}
	}
	for _, gi := range l.x.infos {
		if gi.bad {
			continue
		}
		l.groupTiming(gi, byName)
	}
}

func (l *loader) groupTiming(gi *groupInfo, byName map[string]*groupInfo) {
	g, f := gi.g, gi.f
	if len(g.Members) == 0 {
		l.warnf(f.pos("members"), f.at("members"), "group %q has no members; every call goes to fallback.noanswer", g.Name)
	}
	if n := len(g.Members); n > maxMembers {
		l.warnf(f.pos("members"), f.at("members"), "group %q has %d members; ringroute rings them all, but past %d (the Smart PBX limit) callers wait long and nested groups are easier to run", g.Name, n, maxMembers)
	}
	// Prefer the position of the setting the operator wrote.
	either := func(a, b string) (*yaml.Node, string) {
		if f.has(a) || !f.has(b) {
			return f.pos(a), f.at(a)
		}
		return f.pos(b), f.at(b)
	}
	cutFirst := false
	if g.Timeout > 0 {
		if !g.DistributeEvenly && g.MemberTimeout >= g.Timeout && memberTimeoutUsed(g) {
			n, p := either("member_timeout", "timeout")
			l.warnf(n, p, "member_timeout %s is not shorter than timeout %s, so the group timeout cuts the first attempt short and no later attempt rings", human(g.MemberTimeout), human(g.Timeout))
			cutFirst = true
		}
		if g.RetryDelay >= g.Timeout && len(g.Members) > 0 && g.Strategy != "all" && g.Strategy != "progressive" {
			n, p := either("retry_delay", "timeout")
			l.warnf(n, p, "retry_delay %s is not shorter than timeout %s, so no second attempt can start", human(g.RetryDelay), human(g.Timeout))
		}
		if g.Repeats > 0 {
			l.warnf(f.pos("repeats"), f.at("repeats"), "repeats only counts when timeout is 0; with timeout %s passes repeat until it expires", human(g.Timeout))
		}
	} else if g.DistributeEvenly {
		n, p := either("distribute_evenly", "timeout")
		l.warnf(n, p, "distribute_evenly divides timeout among the members, but timeout is 0 (no limit)")
	}
	if g.Strategy == "weight_random" && len(g.Members) > 1 {
		l.weights(gi)
	}

	ring := ringTimes(g, g.Timeout)
	starts := firstPass(g, ring)
	// Members the group timeout never reaches. For linear and progressive
	// the order is fixed, so the warning names them; the other
	// one-at-a-time strategies change the order per call, so it says how
	// many a call can reach.
	unreached := -1
	if g.Timeout > 0 && !cutFirst && g.Strategy != "all" {
		for i, s := range starts {
			if s >= g.Timeout {
				unreached = i
				break
			}
		}
	}
	if unreached >= 0 {
		n := len(g.Members)
		switch g.Strategy {
		case "linear", "progressive":
			mf := gi.members[unreached]
			l.warnf(mf.node, gi.membersPath(unreached), "%s: the group timeout %s comes first (%s would start at %s when nobody answers); raise timeout or shorten the ring times",
				neverRing(unreached, n), human(g.Timeout), memberRef(unreached), human(starts[unreached]))
		default:
			n2, p := either("timeout", "members")
			l.warnf(n2, p, "timeout %s lets a call ring only %d of the %d members (in config order the next would start at %s when nobody answers); %s changes the order from call to call, but no caller reaches them all",
				human(g.Timeout), unreached, n, human(starts[unreached]), g.Strategy)
		}
	}

	for i, m := range g.Members {
		mf := gi.members[i]
		if g.Timeout > 0 && m.Timeout >= g.Timeout {
			l.warnf(mf.pos("timeout"), mf.at("timeout"), "%s is not shorter than the group timeout %s, which cuts it short", human(m.Timeout), human(g.Timeout))
		}
		if m.Group != "" {
			if x := byName[m.Group]; x != nil && !x.bad && x.g != g && !l.x.nestCycle[g.Name] && !l.x.nestCycle[x.g.Name] {
				l.nested(gi, i, x, ring[i])
			}
		}
		if m.Delay == 0 {
			continue
		}
		if g.Timeout > 0 && m.Delay >= g.Timeout {
			if unreached < 0 || i < unreached || g.Strategy != "linear" && g.Strategy != "progressive" {
				l.warnf(mf.pos("delay"), mf.at("delay"), "%s is not shorter than the group timeout %s, so this member never rings", human(m.Delay), human(g.Timeout))
			}
			continue
		}
		// In progressive a member's ring time is when the next one joins,
		// so a long delay there only reorders who joins when.
		if g.Strategy != "progressive" && m.Delay >= ring[i] {
			l.warnf(mf.pos("delay"), mf.at("delay"), "%s is not shorter than the member's ring time %s: the caller waits longer for this member to start than it then rings (the ring time counts from the end of the delay)", human(m.Delay), human(ring[i]))
		}
	}
}

// memberTimeoutUsed reports whether some member rings for member_timeout
// (has no timeout of its own).
func memberTimeoutUsed(g *Group) bool {
	for _, m := range g.Members {
		if m.Timeout == 0 {
			return true
		}
	}
	return len(g.Members) == 0
}

// weights warns when weight_random has nothing to weigh.
func (l *loader) weights(gi *groupInfo) {
	g, f := gi.g, gi.f
	set := false
	for _, mf := range gi.members {
		if mf.present("weight") {
			set = true
		}
	}
	if !set {
		l.warnf(f.pos("strategy"), f.at("strategy"), "weight_random, but no member sets a weight, so all weigh 1 and it rings like random; give members a weight")
		return
	}
	for _, m := range g.Members[1:] {
		if max(m.Weight, 1) != max(g.Members[0].Weight, 1) {
			return
		}
	}
	l.warnf(f.pos("strategy"), f.at("strategy"), "weight_random, but every member has weight %d, so it rings like random", max(g.Members[0].Weight, 1))
}

// nested warns when group x, member i of gi's group, has more to ring than
// its member time there allows: its own timeout (or, with timeout 0, its
// pass) runs past the time the parent gives it, and some of its members
// never get their turn.
func (l *loader) nested(gi *groupInfo, i int, x *groupInfo, memberTime time.Duration) {
	xg := x.g
	if memberTime <= 0 || xg.Timeout > 0 && xg.Timeout <= memberTime {
		return
	}
	starts := firstPass(xg, ringTimes(xg, memberTime))
	first := -1
	for k, s := range starts {
		if s >= memberTime {
			first = k
			break
		}
	}
	if first < 0 {
		return
	}
	own := fmt.Sprintf("has timeout 0, so one pass, which takes longer than its ring time %s as this member of %q", human(memberTime), gi.g.Name)
	if xg.Timeout > 0 {
		own = fmt.Sprintf("has timeout %s, longer than its ring time %s as this member of %q, which moves on then", human(xg.Timeout), human(memberTime), gi.g.Name)
	}
	mf := gi.members[i]
	where, path := mf.pos("group"), mf.at("group")
	if mf.has("timeout") {
		where, path = mf.pos("timeout"), mf.at("timeout")
	}
	verb := "never ring"
	if first == len(xg.Members)-1 {
		verb = "never rings"
	}
	l.warnf(where, path, "group %q %s; %s of %q %s%s (%s would start at %s)",
		xg.Name, own, neverRingShort(first, len(xg.Members)), xg.Name, verb, orderNote(xg), memberRef(first), human(starts[first]))
}

// ringTimes is each member's ring time in g, span being the time a pass
// has (the group timeout; for a nested group its member time), for
// distribute_evenly.
func ringTimes(g *Group, span time.Duration) []time.Duration {
	share := time.Duration(0)
	if g.DistributeEvenly && span > 0 {
		share = g.EvenRingTime(len(g.Members), span)
	}
	out := make([]time.Duration, len(g.Members))
	for i, m := range g.Members {
		out[i] = g.RingTime(m)
		if m.Timeout == 0 && share > 0 {
			out[i] = share
		}
	}
	return out
}

// firstPass is when each member starts ringing in the first pass, in config
// order, when nobody answers or is busy.
func firstPass(g *Group, ring []time.Duration) []time.Duration {
	out := make([]time.Duration, len(g.Members))
	var t time.Duration
	for i, m := range g.Members {
		switch g.Strategy {
		case "all", "parallel":
			out[i] = m.Delay
		case "progressive":
			out[i] = t + m.Delay
			t += ring[i]
		default:
			out[i] = t + m.Delay
			t = out[i] + ring[i] + g.RetryDelay
		}
	}
	return out
}

func memberRef(i int) string { return fmt.Sprintf("members[%d]", i) }

// neverRing names members i..n-1 as the subject of a sentence.
func neverRing(i, n int) string {
	switch {
	case i == n-1:
		return memberRef(i) + " never rings"
	case i == n-2:
		return fmt.Sprintf("members[%d] and members[%d] never ring", i, i+1)
	}
	return fmt.Sprintf("members[%d] to members[%d] never ring", i, n-1)
}

func neverRingShort(i, n int) string {
	switch {
	case i == n-1:
		return memberRef(i)
	case i == n-2:
		return fmt.Sprintf("members[%d] and members[%d]", i, i+1)
	}
	return fmt.Sprintf("members[%d] to members[%d]", i, n-1)
}

// orderNote qualifies "never ring" for strategies whose order changes.
func orderNote(g *Group) string {
	switch g.Strategy {
	case "linear", "progressive", "all", "parallel":
		return ""
	}
	return " in config order"
}

// membersPath is the field path of member i.
func (gi *groupInfo) membersPath(i int) string { return index(gi.f.at("members"), i) }
