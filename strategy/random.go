package strategy

// Random rings one member at a time in an order shuffled afresh for each
// Plan, every order equally likely. Config name: random.
//
// The shuffle draws only on Input.Rand; without one it keeps config order,
// since a strategy must not reach for a source of its own.
type Random struct{}

var _ Strategy = Random{}

// Plan returns one single-member attempt per member, in shuffled order.
func (Random) Plan(in Input) []Attempt {
	order := configOrder(len(in.Members))
	if in.Rand != nil {
		in.Rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	return sequence(in, order)
}
