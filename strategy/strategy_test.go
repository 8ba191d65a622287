package strategy

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// names lists every name Lookup must accept; a new strategy adds its names
// here and the property test and fuzz test cover it at once.
var names = []string{"all", "parallel", "linear", "sequential", "memorized_round_robin", "round_robin",
	"least_recent", "fewest_calls", "random", "weight_random", "progressive"}

// sequential are the strategies that ring one member at a time and must
// ring every member once per pass, whatever their order.
var sequential = []string{"linear", "memorized_round_robin", "least_recent", "fewest_calls", "random", "weight_random"}

func TestLookup(t *testing.T) {
	for _, n := range names {
		if s, ok := Lookup(n); !ok || s == nil {
			t.Errorf("Lookup(%q) = %v, %v; want a strategy", n, s, ok)
		}
	}
	for _, n := range Names() {
		if _, ok := Lookup(n); !ok {
			t.Errorf("Names() has %q, which Lookup does not know", n)
		}
	}
	for _, n := range []string{"", "ALL", "Linear", "nope"} {
		if s, ok := Lookup(n); ok || s != nil {
			t.Errorf("Lookup(%q) = %v, %v; want nil, false", n, s, ok)
		}
	}
}

// checkPlan holds the properties every strategy's plan must have, because
// routing relies on them: each member rings at most once per pass (routing
// keeps one result per member and pass), indices are in range, no attempt is
// empty (an empty attempt would never end) and every ring lasts (a ring of 0
// could spin a timeout-bound group without time passing).
func checkPlan(in Input, plan []Attempt) error {
	if len(in.Members) == 0 && len(plan) != 0 {
		return fmt.Errorf("no members gave %d attempts", len(plan))
	}
	seen := make(map[int]bool)
	for i, a := range plan {
		if len(a) == 0 {
			return fmt.Errorf("attempt %d is empty", i)
		}
		for _, r := range a {
			if r.Member < 0 || r.Member >= len(in.Members) {
				return fmt.Errorf("attempt %d: member %d out of range [0,%d)", i, r.Member, len(in.Members))
			}
			if seen[r.Member] {
				return fmt.Errorf("attempt %d: member %d rings twice in one pass", i, r.Member)
			}
			seen[r.Member] = true
			if r.For <= 0 {
				return fmt.Errorf("attempt %d: member %d rings for %v", i, r.Member, r.For)
			}
			if r.After < 0 {
				return fmt.Errorf("attempt %d: member %d starts after %v", i, r.Member, r.After)
			}
		}
	}
	return nil
}

// randomInput builds a plausible group snapshot: members always have a
// positive ring time, as routing guarantees before calling Plan.
func randomInput(r *rand.Rand) Input {
	n := r.IntN(8)
	in := Input{Members: make([]Member, n), Rand: r}
	for i := range in.Members {
		in.Members[i] = Member{
			Key:      fmt.Sprintf("uri:sip:m%d@x", i),
			Timeout:  time.Duration(1+r.IntN(60)) * time.Second,
			Delay:    time.Duration(r.IntN(5)) * time.Second,
			Weight:   1 + r.IntN(5),
			Answered: r.IntN(3),
		}
		if r.IntN(2) == 0 {
			in.Members[i].LastCall = time.Date(2026, 3, 1, 9, r.IntN(60), 0, 0, time.UTC)
		}
	}
	if n > 0 {
		// Out of range on purpose now and then: strategies must cope.
		in.Next = r.IntN(n+2) - 1
	}
	if r.IntN(2) == 0 {
		in.Remaining = time.Duration(r.IntN(90)) * time.Second
	}
	return in
}

// TestSequentialRingsEveryMemberOnce: the one-at-a-time strategies ring
// every member exactly once per pass, one per attempt, each with its own
// delay and ring time, whatever order they choose.
func TestSequentialRingsEveryMemberOnce(t *testing.T) {
	for _, name := range sequential {
		s, _ := Lookup(name)
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 6))
			for i := 0; i < 500; i++ {
				in := randomInput(r)
				plan := s.Plan(in)
				if len(plan) != len(in.Members) {
					t.Fatalf("run %d: %d attempts for %d members", i, len(plan), len(in.Members))
				}
				seen := make([]int, len(in.Members))
				for k, a := range plan {
					if len(a) != 1 {
						t.Fatalf("run %d: attempt %d has %d members", i, k, len(a))
					}
					m := in.Members[a[0].Member]
					if a[0].After != m.Delay || a[0].For != m.Timeout {
						t.Fatalf("run %d: attempt %d = %+v, member has delay %v timeout %v", i, k, a[0], m.Delay, m.Timeout)
					}
					seen[a[0].Member]++
				}
				for m, n := range seen {
					if n != 1 {
						t.Fatalf("run %d: member %d rings %d times", i, m, n)
					}
				}
			}
		})
	}
}

// TestNilRandKeepsConfigOrder: without a source of chance the random
// strategies do not invent one.
func TestNilRandKeepsConfigOrder(t *testing.T) {
	in := Input{Members: []Member{{Key: "a", Timeout: time.Second}, {Key: "b", Timeout: time.Second}, {Key: "c", Timeout: time.Second}}}
	want := Linear{}.Plan(in)
	for _, s := range []Strategy{Random{}, WeightRandom{}} {
		if got := s.Plan(in); !reflect.DeepEqual(got, want) {
			t.Errorf("%T without Rand: %v, want %v", s, got, want)
		}
	}
}

// order is the member indices of a one-at-a-time plan, for table tests.
func order(plan []Attempt) []int {
	var out []int
	for _, a := range plan {
		for _, r := range a {
			out = append(out, r.Member)
		}
	}
	return out
}

// members makes n members with a 5 s ring time, keyed m0, m1, ...
func members(n int) []Member {
	out := make([]Member, n)
	for i := range out {
		out[i] = Member{Key: fmt.Sprintf("uri:sip:m%d@x", i), Timeout: 5 * time.Second, Weight: 1}
	}
	return out
}

func TestPlanProperties(t *testing.T) {
	for _, name := range names {
		s, _ := Lookup(name)
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			for i := 0; i < 500; i++ {
				in := randomInput(r)
				if err := checkPlan(in, s.Plan(in)); err != nil {
					t.Fatalf("run %d, %d members: %v", i, len(in.Members), err)
				}
			}
		})
	}
}

// TestPlanPure: Plan must not change its input (routing reuses the slice
// for the CDR and later passes).
func TestPlanPure(t *testing.T) {
	for _, name := range names {
		s, _ := Lookup(name)
		in := randomInput(rand.New(rand.NewPCG(3, 4)))
		before := append([]Member(nil), in.Members...)
		s.Plan(in)
		for i := range before {
			if before[i] != in.Members[i] {
				t.Errorf("%s: Plan changed member %d: %+v -> %+v", name, i, before[i], in.Members[i])
			}
		}
	}
}

func FuzzPlan(f *testing.F) {
	// Seeds: the table tests' shapes (0, 1, 2, 3 members) under each strategy.
	for i := range names {
		for n := 0; n <= 3; n++ {
			f.Add(uint8(i), uint64(n), uint64(n*7+1))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, seed1, seed2 uint64) {
		name := names[int(which)%len(names)]
		s, _ := Lookup(name)
		in := randomInput(rand.New(rand.NewPCG(seed1, seed2)))
		if err := checkPlan(in, s.Plan(in)); err != nil {
			t.Fatalf("%s with %d members: %v", name, len(in.Members), err)
		}
	})
}
