package strategy

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestWeightRandomPlan(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		seed    uint64
		want    []int
	}{
		{name: "no members", weights: nil, want: nil},
		{name: "one member", weights: []int{3}, seed: 1, want: []int{0}},
		// Weight 0 or below is the default 1, never "never rings".
		{name: "weight 0 still rings", weights: []int{0, 0}, seed: 1, want: []int{0, 1}},
		{name: "seeded order", weights: []int{1, 3, 1}, seed: 1, want: []int{1, 0, 2}},
		{name: "other seed", weights: []int{1, 3, 1}, seed: 8, want: []int{2, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Members: members(len(tt.weights)), Rand: rand.New(rand.NewPCG(tt.seed, 2))}
			for i, w := range tt.weights {
				in.Members[i].Weight = w
			}
			if got := order(WeightRandom{}.Plan(in)); !slices.Equal(got, tt.want) {
				t.Errorf("WeightRandom.Plan(weights %v, seed %d) = %v, want %v", tt.weights, tt.seed, got, tt.want)
			}
		})
	}
}

// Property: over 10 000 calls with a seeded source, the share of calls
// each member is rung first in is its share of the weights, within 2
// percentage points.
func TestWeightRandomConverges(t *testing.T) {
	weights := []int{1, 2, 3, 4}
	total := 10
	r := rand.New(rand.NewPCG(42, 43))
	in := Input{Members: members(len(weights)), Rand: r}
	for i, w := range weights {
		in.Members[i].Weight = w
	}
	first := make([]int, len(weights))
	const calls = 10000
	for i := 0; i < calls; i++ {
		first[WeightRandom{}.Plan(in)[0][0].Member]++
	}
	for m, n := range first {
		got, want := float64(n)/calls, float64(weights[m])/float64(total)
		if got < want-0.02 || got > want+0.02 {
			t.Errorf("member %d (weight %d) first in %.2f%% of calls, want %.0f%% +- 2", m, weights[m], 100*got, 100*want)
		}
	}
}
