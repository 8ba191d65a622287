package strategy

// All rings every member at once, each from its own delay for its own
// timeout: one attempt per pass. Config names: all, parallel.
type All struct{}

var _ Strategy = All{}

// Plan returns one attempt holding every member.
func (All) Plan(in Input) []Attempt {
	if len(in.Members) == 0 {
		return nil
	}
	a := make(Attempt, len(in.Members))
	for i := range in.Members {
		a[i] = ring(in, i)
	}
	return []Attempt{a}
}
