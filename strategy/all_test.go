package strategy

import (
	"reflect"
	"testing"
	"time"
)

func TestAllPlan(t *testing.T) {
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
			// Each member keeps its own delay and ring time inside the one attempt.
			name: "delays and timeouts per member",
			in: []Member{
				{Key: "user:alice", Timeout: 10 * s},
				{Key: "user:bob", Timeout: 15 * s, Delay: 2 * s},
				{Key: "uri:c", Timeout: 15 * s, Delay: 500 * time.Millisecond},
			},
			want: []Attempt{{
				{Member: 0, After: 0, For: 10 * s},
				{Member: 1, After: 2 * s, For: 15 * s},
				{Member: 2, After: 500 * time.Millisecond, For: 15 * s},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := All{}.Plan(Input{Members: tt.in})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("All.Plan(%v)\n got %v\nwant %v", tt.in, got, tt.want)
			}
		})
	}
}
