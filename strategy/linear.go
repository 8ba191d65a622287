package strategy

// Linear rings one member at a time in config order: one attempt per member.
// Config names: linear, sequential.
type Linear struct{}

var _ Strategy = Linear{}

// Plan returns one single-member attempt per member, in order.
func (Linear) Plan(in Input) []Attempt {
	if len(in.Members) == 0 {
		return nil
	}
	out := make([]Attempt, len(in.Members))
	for i := range in.Members {
		out[i] = Attempt{ring(in, i)}
	}
	return out
}
