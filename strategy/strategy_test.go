package strategy

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// names lists every name Lookup must accept; a new strategy adds its names
// here and the property test and fuzz test cover it at once.
var names = []string{"all", "parallel", "linear", "sequential"}

func TestLookup(t *testing.T) {
	for _, n := range names {
		if s, ok := Lookup(n); !ok || s == nil {
			t.Errorf("Lookup(%q) = %v, %v; want a strategy", n, s, ok)
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
	}
	if n > 0 {
		in.Next = r.IntN(n)
	}
	return in
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
