package strategy

import (
	"reflect"
	"testing"
	"time"
)

func TestLinearPlan(t *testing.T) {
	s := time.Second
	tests := []struct {
		name string
		in   []Member
		want []Attempt
	}{
		{name: "no members", in: nil, want: nil},
		{
			name: "one member",
			in:   []Member{{Key: "uri:a", Timeout: 5 * s}},
			want: []Attempt{{{Member: 0, For: 5 * s}}},
		},
		{
			// SPEC "One call" §3 worked example: A then B, each alone.
			name: "config order, one member per attempt",
			in: []Member{
				{Key: "uri:a", Timeout: 5 * s},
				{Key: "uri:b", Timeout: 5 * s},
			},
			want: []Attempt{
				{{Member: 0, For: 5 * s}},
				{{Member: 1, For: 5 * s}},
			},
		},
		{
			// A member's delay still applies inside its own attempt.
			name: "delay kept",
			in: []Member{
				{Key: "user:alice", Timeout: 10 * s},
				{Key: "user:bob", Timeout: 15 * s, Delay: 2 * s},
				{Key: "group:sales", Timeout: 7 * s},
			},
			want: []Attempt{
				{{Member: 0, For: 10 * s}},
				{{Member: 1, After: 2 * s, For: 15 * s}},
				{{Member: 2, For: 7 * s}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Linear{}.Plan(Input{Members: tt.in})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Linear.Plan(%v)\n got %v\nwant %v", tt.in, got, tt.want)
			}
		})
	}
}
