package strategy

import (
	"slices"
	"testing"
	"time"
)

func TestRoundRobinPlan(t *testing.T) {
	tests := []struct {
		name string
		n    int
		next int
		want []int
	}{
		{name: "no members", n: 0, next: 0, want: nil},
		{name: "from the first", n: 3, next: 0, want: []int{0, 1, 2}},
		// The call after member 0 answered starts at 1 and wraps round.
		{name: "from the middle", n: 3, next: 1, want: []int{1, 2, 0}},
		{name: "from the last", n: 3, next: 2, want: []int{2, 0, 1}},
		// A Next computed against a longer list (a member left since) must
		// not crash or skip anyone.
		{name: "next past the end", n: 3, next: 3, want: []int{0, 1, 2}},
		{name: "negative next", n: 2, next: -1, want: []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := order(RoundRobin{}.Plan(Input{Members: members(tt.n), Next: tt.next}))
			if !slices.Equal(got, tt.want) {
				t.Errorf("RoundRobin.Plan(%d members, Next %d) = %v, want %v", tt.n, tt.next, got, tt.want)
			}
		})
	}
}

// Delays and ring times come with the member, not with its place in the
// rotation.
func TestRoundRobinKeepsMemberTimes(t *testing.T) {
	in := Input{Members: []Member{
		{Key: "a", Timeout: 5 * time.Second},
		{Key: "b", Timeout: 7 * time.Second, Delay: time.Second},
	}, Next: 1}
	got := RoundRobin{}.Plan(in)
	want := []Attempt{{{Member: 1, After: time.Second, For: 7 * time.Second}}, {{Member: 0, For: 5 * time.Second}}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got %v, want %v", got, want)
	}
}
