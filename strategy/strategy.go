// Package strategy decides in which order, and with which timings, a group's
// members ring during one pass over the group.
//
// It is pure: no clock, no sockets, no goroutines, no package state.
// Everything a strategy may use arrives in Input; chance arrives as
// Input.Rand. Memory that must outlive a call (round-robin position, answer
// counts) is kept by the caller and passed in, so a config reload that
// rebuilds strategy values loses nothing.
//
// Passes, retry_delay between attempts, repeats and the group timeout are
// the same for every strategy; package routing applies them around Plan.
//
// Adding a strategy is one file with a value implementing Strategy, one case
// in Lookup and one table test.
package strategy

import (
	"math/rand/v2"
	"time"
)

// Member is one ringable member as a strategy sees it.
type Member struct {
	Key      string        // stable identity: "user:alice", "uri:sip:1002@192.0.2.5", "group:sales"
	Timeout  time.Duration // ring time: the member's timeout, else the group's member_timeout
	Delay    time.Duration // start delay inside its attempt
	Weight   int           // weight_random only; at least 1
	LastCall time.Time     // end of its last answered call of this group; zero: never
	Answered int           // answered calls of this group, for fewest_calls
}

// Input is a snapshot of one group at the moment a pass is planned.
type Input struct {
	Members []Member // config order; members that must not ring are already removed
	// Next is where memorized_round_robin starts: an index into Members.
	// Out of range counts as 0.
	Next int
	// Remaining is the group time left when the pass starts: the group
	// timeout minus the time already spent, or, for a nested group, what is
	// left of its member time in the parent. 0 means no limit. Only
	// progressive uses it, because its members ring until the group gives
	// up rather than for a ring time of their own.
	Remaining time.Duration
	// Rand is the only source of chance. Strategies that need chance and
	// get nil fall back to config order rather than invent a source.
	Rand *rand.Rand
}

// Ring is one member ringing inside an attempt.
type Ring struct {
	Member int           // index into Input.Members
	After  time.Duration // when it starts, counted from the start of the attempt
	For    time.Duration // how long it rings once started; > 0
}

// Attempt is a set of members that ring at the same time.
type Attempt []Ring

// Strategy plans one pass over a group's members. Plan must not keep in or
// change anything outside its result; an empty Members gives no attempts.
type Strategy interface {
	Plan(in Input) []Attempt
}

// Lookup returns the strategy for a canonical name or alias, as accepted by
// the config file.
func Lookup(name string) (Strategy, bool) {
	switch name {
	case "all", "parallel":
		return All{}, true
	case "linear", "sequential":
		return Linear{}, true
	case "memorized_round_robin", "round_robin":
		return RoundRobin{}, true
	case "least_recent":
		return LeastRecent{}, true
	case "fewest_calls":
		return FewestCalls{}, true
	case "random":
		return Random{}, true
	case "weight_random":
		return WeightRandom{}, true
	case "progressive":
		return Progressive{}, true
	}
	return nil, false
}

// Names lists the canonical strategy names, in the order the config
// reference gives them.
func Names() []string {
	return []string{"all", "linear", "memorized_round_robin", "least_recent", "fewest_calls", "random", "weight_random", "progressive"}
}

// ring is the Ring for member i ringing with its own delay and timeout.
func ring(in Input, i int) Ring {
	m := in.Members[i]
	return Ring{Member: i, After: m.Delay, For: m.Timeout}
}

// sequence is the pass of the one-member-at-a-time strategies: one
// attempt per member, in the given order of member indices.
func sequence(in Input, order []int) []Attempt {
	if len(order) == 0 {
		return nil
	}
	out := make([]Attempt, len(order))
	for k, i := range order {
		out[k] = Attempt{ring(in, i)}
	}
	return out
}

// configOrder is 0, 1, ..., n-1.
func configOrder(n int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	return order
}
