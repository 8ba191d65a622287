package strategy

import (
	"reflect"
	"testing"
	"time"
)

func TestProgressivePlan(t *testing.T) {
	s := time.Second
	five := func(n int) []Member { return members(n) } // 5 s ring time each
	tests := []struct {
		name      string
		in        []Member
		remaining time.Duration
		want      []Attempt
	}{
		{name: "no members", in: nil, want: nil},
		{
			// Group timeout 30s: member i joins at i x 5s and all ring
			// until the timeout.
			name: "joins every ring time, rings until the group gives up",
			in:   five(3), remaining: 30 * s,
			want: []Attempt{{
				{Member: 0, After: 0, For: 30 * s},
				{Member: 1, After: 5 * s, For: 25 * s},
				{Member: 2, After: 10 * s, For: 20 * s},
			}},
		},
		{
			// Members who would join at or after the end never ring, so
			// they are not in the plan at all.
			name: "late members left out",
			in:   five(4), remaining: 10 * s,
			want: []Attempt{{
				{Member: 0, After: 0, For: 10 * s},
				{Member: 1, After: 5 * s, For: 5 * s},
			}},
		},
		{
			// timeout 0: the attempt ends when the last member has rung
			// its own ring time (10s + 5s).
			name: "no limit: until the last has rung its time",
			in:   five(3), remaining: 0,
			want: []Attempt{{
				{Member: 0, After: 0, For: 15 * s},
				{Member: 1, After: 5 * s, For: 10 * s},
				{Member: 2, After: 10 * s, For: 5 * s},
			}},
		},
		{
			// A member's own timeout is how long until the next joins; a
			// delay postpones only the member itself.
			name: "own ring times and delays",
			in: []Member{
				{Key: "a", Timeout: 10 * s},
				{Key: "b", Timeout: 5 * s, Delay: 2 * s},
				{Key: "c", Timeout: 5 * s},
			},
			remaining: 60 * s,
			want: []Attempt{{
				{Member: 0, After: 0, For: 60 * s},
				{Member: 1, After: 12 * s, For: 48 * s},
				{Member: 2, After: 15 * s, For: 45 * s},
			}},
		},
		{name: "nothing fits", in: five(1), remaining: 0, want: []Attempt{{{Member: 0, For: 5 * s}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Progressive{}.Plan(Input{Members: tt.in, Remaining: tt.remaining})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Progressive.Plan(remaining %v)\n got %v\nwant %v", tt.remaining, got, tt.want)
			}
		})
	}
}
