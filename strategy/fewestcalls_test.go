package strategy

import (
	"slices"
	"testing"
)

func TestFewestCallsPlan(t *testing.T) {
	tests := []struct {
		name     string
		answered []int
		want     []int
	}{
		{name: "no members", answered: nil, want: nil},
		{name: "all zero: config order", answered: []int{0, 0, 0}, want: []int{0, 1, 2}},
		{name: "fewest first", answered: []int{5, 1, 3}, want: []int{1, 2, 0}},
		{name: "ties keep config order", answered: []int{2, 1, 2, 1}, want: []int{1, 3, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Members: members(len(tt.answered))}
			for i, n := range tt.answered {
				in.Members[i].Answered = n
			}
			if got := order(FewestCalls{}.Plan(in)); !slices.Equal(got, tt.want) {
				t.Errorf("FewestCalls.Plan(answered %v) = %v, want %v", tt.answered, got, tt.want)
			}
		})
	}
}
