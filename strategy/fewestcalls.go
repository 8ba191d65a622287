package strategy

import (
	"cmp"
	"slices"
)

// FewestCalls rings one member at a time, the member who answered the
// fewest calls of the group first. Ties keep config order. Config name:
// fewest_calls.
type FewestCalls struct{}

var _ Strategy = FewestCalls{}

// Plan returns one single-member attempt per member, fewest answered first.
func (FewestCalls) Plan(in Input) []Attempt {
	order := configOrder(len(in.Members))
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(in.Members[a].Answered, in.Members[b].Answered)
	})
	return sequence(in, order)
}
