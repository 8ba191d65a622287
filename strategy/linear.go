package strategy

// Linear rings one member at a time in config order: one attempt per member.
// Config names: linear, sequential.
type Linear struct{}

var _ Strategy = Linear{}

// Plan returns one single-member attempt per member, in order.
func (Linear) Plan(in Input) []Attempt {
	return sequence(in, configOrder(len(in.Members)))
}
