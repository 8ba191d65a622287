package sip

import (
	"testing"
	"time"

	"github.com/ringroute/ringroute/routing"
)

// stepClock is a clock whose AfterFunc runs only when the test advances it.
type stepClock struct {
	now time.Time
	due []stepTimer
}

type stepTimer struct {
	at time.Time
	f  func()
}

func (c *stepClock) Now() time.Time { return c.now }

func (c *stepClock) AfterFunc(d time.Duration, f func()) routing.Timer {
	c.due = append(c.due, stepTimer{c.now.Add(d), f})
	return stopless{}
}

type stopless struct{}

func (stopless) Stop() bool { return false }

// advance runs every timer due by now+d in order, each at its own time.
func (c *stepClock) advance(d time.Duration) {
	end := c.now.Add(d)
	for {
		next := -1
		for i, t := range c.due {
			if !t.at.After(end) && (next < 0 || t.at.Before(c.due[next].at)) {
				next = i
			}
		}
		if next < 0 {
			c.now = end
			return
		}
		t := c.due[next]
		c.due = append(c.due[:next], c.due[next+1:]...)
		c.now = t.at
		t.f()
	}
}

// A leg's Call-ID is remembered at least 2*64*T1 (recentKeep) after the leg
// ended and at most twice that, whenever in a generation it was added.
func TestRecentLegsKeepsAtLeastTwoTimer64T1(t *testing.T) {
	clk := &stepClock{now: time.Unix(1_000_000, 0)}
	var r set
	r.init(clk, recentKeep)
	r.add("early") // starts a generation
	clk.advance(recentKeep - time.Second)
	r.add("late") // a second before that generation turns
	if !r.has("early") || !r.has("late") || r.has("other") {
		t.Fatalf("has(early, late, other) = %v %v %v", r.has("early"), r.has("late"), r.has("other"))
	}
	clk.advance(recentKeep) // late is recentKeep old
	if !r.has("late") || !r.has("early") {
		t.Errorf("forgotten too soon: has(late) %v at %v, has(early) %v at %v", r.has("late"), recentKeep, r.has("early"), 2*recentKeep-time.Second)
	}
	clk.advance(time.Second) // early is 2*recentKeep old
	if r.has("early") || r.has("late") {
		t.Errorf("kept too long: has(early) %v at %v, has(late) %v", r.has("early"), 2*recentKeep, r.has("late"))
	}
	if len(clk.due) != 0 {
		t.Errorf("%d timers still set with nothing to forget", len(clk.due))
	}
}

// Keys of several parts stay apart however their bytes split, and first
// says yes once per key.
func TestRecentSetKeys(t *testing.T) {
	var r set
	r.init(&stepClock{now: time.Unix(1_000_000, 0)}, recentKeep)
	if !r.first("ab", "c") {
		t.Fatal("first(ab, c) on an empty set = false")
	}
	if r.first("ab", "c") {
		t.Error("first(ab, c) twice = true")
	}
	if r.has("a", "bc") || r.has("abc") {
		t.Errorf("has(a, bc) %v, has(abc) %v after adding (ab, c)", r.has("a", "bc"), r.has("abc"))
	}
}
