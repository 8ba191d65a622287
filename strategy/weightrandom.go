package strategy

// WeightRandom rings one member at a time in a weighted shuffle: the first
// member is drawn with probability weight / total weight, the second the
// same way from those left, and so on. A weight below 1 counts as 1 (the
// config default). Config name: weight_random.
//
// So a member's share of calls it is rung first in is exactly its share of
// the weights; a heavy member also tends to come early when it is not
// first. Without Input.Rand the order is config order.
type WeightRandom struct{}

var _ Strategy = WeightRandom{}

// Plan returns one single-member attempt per member, in weighted order.
func (WeightRandom) Plan(in Input) []Attempt {
	n := len(in.Members)
	if in.Rand == nil {
		return sequence(in, configOrder(n))
	}
	left := configOrder(n)
	total := 0
	for _, m := range in.Members {
		total += weight(m)
	}
	order := make([]int, 0, n)
	for len(left) > 0 {
		// Draw a point on the line of the remaining weights and take the
		// member whose stretch holds it; left stays in config order, so a
		// given source gives a given order.
		x := in.Rand.IntN(total)
		k := 0
		for ; k < len(left)-1; k++ {
			w := weight(in.Members[left[k]])
			if x < w {
				break
			}
			x -= w
		}
		i := left[k]
		order = append(order, i)
		total -= weight(in.Members[i])
		left = append(left[:k], left[k+1:]...)
	}
	return sequence(in, order)
}

func weight(m Member) int { return max(m.Weight, 1) }
