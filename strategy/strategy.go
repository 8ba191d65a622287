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
	Members []Member   // config order; members that must not ring are already removed
	Next    int        // memorized_round_robin: index into Members to start from
	Rand    *rand.Rand // the only source of chance; nil for strategies that need none
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
	}
	return nil, false
}

// ring is the Ring for member i ringing with its own delay and timeout.
func ring(in Input, i int) Ring {
	m := in.Members[i]
	return Ring{Member: i, After: m.Delay, For: m.Timeout}
}
