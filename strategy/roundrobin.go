package strategy

// RoundRobin rings one member at a time, starting at Input.Next and going
// on in config order, wrapping round to the first member. Config names:
// memorized_round_robin, round_robin.
//
// The memory is the caller's: routing sets Next to the member after the one
// that answered the previous call of the group, or was last tried if nobody
// answered, so the value itself stays stateless and a config reload that
// rebuilds it loses nothing.
type RoundRobin struct{}

var _ Strategy = RoundRobin{}

// Plan returns one single-member attempt per member, from Next round.
func (RoundRobin) Plan(in Input) []Attempt {
	n := len(in.Members)
	start := in.Next
	if start < 0 || start >= n {
		start = 0
	}
	order := make([]int, n)
	for k := range order {
		order[k] = (start + k) % n
	}
	return sequence(in, order)
}
