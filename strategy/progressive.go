package strategy

import "time"

// Progressive rings member 1, then after member 1's ring time members 1+2,
// then after member 2's ring time 1+2+3, and so on; nobody stops ringing
// until someone answers or the group gives up. With the default ring times
// member i (from 0) joins at i x member_timeout. A member's own delay is
// added to the moment it joins. Config name: progressive.
//
// It is one attempt, "all with growing delays": member i has After = the sum
// of the ring times of the members before it (plus its delay), and rings
// until the end of the attempt, which is
//   - the group time left (Input.Remaining) when there is a limit: members
//     who would join at or after it are left out, because they would never
//     ring;
//   - with no limit (timeout 0), the moment the last member has rung for its
//     own ring time, so that every member rings at least its ring time and
//     the pass then ends (repeats may add passes).
type Progressive struct{}

var _ Strategy = Progressive{}

// Plan returns a single attempt in which members join one by one.
func (Progressive) Plan(in Input) []Attempt {
	if len(in.Members) == 0 {
		return nil
	}
	after := make([]time.Duration, len(in.Members))
	var join, end time.Duration
	for i, m := range in.Members {
		after[i] = join + m.Delay
		end = max(end, after[i]+m.Timeout)
		join += m.Timeout
	}
	if in.Remaining > 0 {
		end = in.Remaining
	}
	var a Attempt
	for i := range in.Members {
		if after[i] >= end {
			continue
		}
		a = append(a, Ring{Member: i, After: after[i], For: end - after[i]})
	}
	if len(a) == 0 {
		return nil
	}
	return []Attempt{a}
}
