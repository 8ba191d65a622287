package strategy

import (
	"slices"
)

// LeastRecent rings one member at a time, the member whose last answered
// call of the group ended longest ago first; a member who never answered
// one (zero LastCall) comes before everyone who did. Ties keep config
// order, so the order is exact for a given snapshot. Config name:
// least_recent.
type LeastRecent struct{}

var _ Strategy = LeastRecent{}

// Plan returns one single-member attempt per member, least recent first.
func (LeastRecent) Plan(in Input) []Attempt {
	order := configOrder(len(in.Members))
	slices.SortStableFunc(order, func(a, b int) int {
		return in.Members[a].LastCall.Compare(in.Members[b].LastCall)
	})
	return sequence(in, order)
}
