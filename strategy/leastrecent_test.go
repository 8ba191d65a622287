package strategy

import (
	"slices"
	"testing"
	"time"
)

func TestLeastRecentPlan(t *testing.T) {
	at := func(min int) time.Time { return time.Date(2026, 3, 2, 10, min, 0, 0, time.UTC) }
	never := time.Time{}
	tests := []struct {
		name string
		last []time.Time
		want []int
	}{
		{name: "no members", last: nil, want: nil},
		{name: "nobody answered yet: config order", last: []time.Time{never, never, never}, want: []int{0, 1, 2}},
		{name: "longest ago first", last: []time.Time{at(30), at(10), at(20)}, want: []int{1, 2, 0}},
		// A member who never answered a call of the group goes before
		// everyone who did.
		{name: "never before any time", last: []time.Time{at(10), never, at(5)}, want: []int{1, 2, 0}},
		{name: "ties keep config order", last: []time.Time{at(20), at(10), at(10), never, never}, want: []int{3, 4, 1, 2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Members: members(len(tt.last))}
			for i, l := range tt.last {
				in.Members[i].LastCall = l
			}
			if got := order(LeastRecent{}.Plan(in)); !slices.Equal(got, tt.want) {
				t.Errorf("LeastRecent.Plan(last %v) = %v, want %v", tt.last, got, tt.want)
			}
		})
	}
}
