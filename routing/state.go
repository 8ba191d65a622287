package routing

import (
	"strings"
	"sync"
	"time"

	"github.com/ringroute/ringroute/config"
)

// State is what ringroute remembers across calls: per group, the round
// robin position, each member's answered calls and when the last one
// ended, and how many calls are in the group now (for max_calls); across
// all groups, which members are in a call through ringroute (for
// ring_in_use: false).
//
// Package sip creates one per server with NewState and puts it in every
// Setup. It is safe for concurrent use. Calls only touch it from Start and
// Step, briefly, under its lock; strategies never see it, only a snapshot
// routing builds for them.
//
// Memory is keyed by group name and member key (config.Member.Key), so it
// survives a config reload while the group keeps its name and the member is
// still there. Reload forgets what the new config no longer has.
type State struct {
	mu     sync.Mutex
	groups map[string]*groupState
	// inUse counts, per member identity (see identity), the calls holding
	// it: ringing it, talking to it, or placed by it.
	inUse map[string]int
}

type groupState struct {
	last    string // member key last tried or answered, for round robin
	members map[string]*memberState
	calls   int // calls in the group now, ringing or talking
}

type memberState struct {
	lastCall time.Time // end of its last answered call; its answer time while it talks
	answered int
}

// NewState returns an empty State.
func NewState() *State {
	return &State{groups: map[string]*groupState{}, inUse: map[string]int{}}
}

// Reload forgets memory of groups and members that cfg no longer has, so
// a member removed and added back later starts afresh, and round robin does
// not go on from a member that is gone. Call counts of groups that vanish
// are kept until their calls (which run under the old config) leave. sip
// calls it after a reload has swapped in cfg; skipping it only keeps some
// stale memory.
func (s *State) Reload(cfg *config.Config) {
	if s == nil || cfg == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[string]map[string]bool{}
	for _, g := range cfg.Groups {
		keys := map[string]bool{}
		for _, m := range g.Members {
			keys[m.Key()] = true
		}
		keep[g.Name] = keys
	}
	for name, gs := range s.groups {
		keys, ok := keep[name]
		if !ok {
			if gs.calls == 0 {
				delete(s.groups, name)
			} else {
				gs.last, gs.members = "", nil
			}
			continue
		}
		for k := range gs.members {
			if !keys[k] {
				delete(gs.members, k)
			}
		}
		if !keys[gs.last] {
			gs.last = ""
		}
	}
}

// Calls is how many calls are in the group now, ringing or talking.
func (s *State) Calls(group string) int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if gs := s.groups[group]; gs != nil {
		return gs.calls
	}
	return 0
}

// InCall reports whether a uri or user member is in a call through
// ringroute now (ringing, talking, or calling in), as ring_in_use sees it.
// A group member is never in a call itself; its members are.
func (s *State) InCall(m config.Member) bool {
	if s == nil || m.Group != "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse[memberIdentity(m)] > 0
}

// Answered is how many calls of group member key answered, and when the
// last one ended (its answer time while it is still up; zero: never).
func (s *State) Answered(group, key string) (n int, last time.Time) {
	if s == nil {
		return 0, time.Time{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if gs := s.groups[group]; gs != nil {
		if ms := gs.members[key]; ms != nil {
			return ms.answered, ms.lastCall
		}
	}
	return 0, time.Time{}
}

// group returns the state of name, creating it. s.mu must be held.
func (s *State) group(name string) *groupState {
	gs := s.groups[name]
	if gs == nil {
		gs = &groupState{}
		s.groups[name] = gs
	}
	if gs.members == nil {
		gs.members = map[string]*memberState{}
	}
	return gs
}

// enter counts a call into group, unless max (> 0) calls are in it
// already. A nil State has no limits.
func (s *State) enter(group string, max int) bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := s.group(group)
	if max > 0 && gs.calls >= max {
		return false
	}
	gs.calls++
	return true
}

// leave undoes one enter.
func (s *State) leave(group string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if gs := s.groups[group]; gs != nil && gs.calls > 0 {
		gs.calls--
	}
}

// use adds d (+1 or -1) calls holding identity id.
func (s *State) use(id string, d int) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.inUse[id] + d; n > 0 {
		s.inUse[id] = n
	} else {
		delete(s.inUse, id)
	}
}

func (s *State) inUseCount(id string) int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse[id]
}

// tried records that member key of group started ringing: round robin
// goes on after it when nobody answers.
func (s *State) tried(group, key string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.group(group).last = key
}

// claim records first as the member a new pass of group rings first,
// unless the group's memory is no longer last (another call planned or
// answered since the caller read it): then it reports false and the
// caller plans again.
func (s *State) claim(group, last, first string) bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := s.group(group)
	if gs.last != last {
		return false
	}
	if first != "" {
		gs.last = first
	}
	return true
}

// memKey names one member of one group, for answered and ended.
type memKey struct{ group, key string }

// answered records that the members in ks (the winner, and for a nested
// winner each group member it was reached through) answered at at.
func (s *State) answered(ks []memKey, at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range ks {
		gs := s.group(k.group)
		ms := gs.members[k.key]
		if ms == nil {
			ms = &memberState{}
			gs.members[k.key] = ms
		}
		ms.answered++
		// While it talks its last call is this one, so least_recent puts
		// it last rather than first.
		ms.lastCall = at
		gs.last = k.key
	}
}

// ended records the end of the answered call of the members in ks.
func (s *State) ended(ks []memKey, at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range ks {
		if ms := s.group(k.group).members[k.key]; ms != nil {
			ms.lastCall = at
		}
	}
}

// groupMemory is a snapshot of one group's memory, for planning a pass.
type groupMemory struct {
	last    string
	members map[string]memberState
}

func (s *State) memory(group string) groupMemory {
	if s == nil {
		return groupMemory{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := s.groups[group]
	if gs == nil {
		return groupMemory{}
	}
	m := groupMemory{last: gs.last, members: make(map[string]memberState, len(gs.members))}
	for k, ms := range gs.members {
		m.members[k] = *ms
	}
	return m
}

// idle reports whether the State holds nothing for any call: every group
// empty and no member in use. For tests that check nothing leaks.
func (s *State) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, gs := range s.groups {
		if gs.calls != 0 {
			return false
		}
	}
	return len(s.inUse) == 0
}

// --- identities

// memberIdentity is who a uri or user member is for ring_in_use and for
// ringing a target once per call: "user:NAME" for a user (all its contacts
// are one person), "uri:" + the normalised URI for a uri member. A uri
// member is never the same as a user member, even when the URI happens to
// reach one of the user's phones: contacts change with every REGISTER, and
// guessing would skip people who are free.
func memberIdentity(m config.Member) string {
	if m.User != "" {
		return "user:" + m.User
	}
	return uriIdentity(m.URI)
}

// uriIdentity normalises a SIP URI so that spellings of one address
// compare equal: scheme and host in lower case, the default port 5060
// (5061 for sips) dropped, parameters and headers dropped. The user part
// stays as written: it is case-sensitive in SIP.
func uriIdentity(uri string) string {
	s := uri
	scheme := "sip"
	if i := strings.IndexByte(s, ':'); i >= 0 {
		if sc := strings.ToLower(s[:i]); sc == "sip" || sc == "sips" {
			scheme, s = sc, s[i+1:]
		}
	}
	if i := strings.IndexAny(s, ";?"); i >= 0 {
		s = s[:i]
	}
	user, host := "", s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		user, host = s[:i+1], s[i+1:]
	}
	host = strings.ToLower(host)
	def := ":5060"
	if scheme == "sips" {
		def = ":5061"
	}
	host = strings.TrimSuffix(host, def)
	return "uri:" + scheme + ":" + user + host
}
