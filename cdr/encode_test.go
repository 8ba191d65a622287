package cdr

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/ringroute/ringroute/routing"
)

func records() []routing.Record {
	start := time.Date(2026, 12, 3, 7, 4, 5, 123456789, time.UTC)
	answer := start.Add(2 * time.Second)
	local := time.FixedZone("", -5*3600)
	return []routing.Record{
		{},
		{Groups: []string{}, Legs: []routing.LegRecord{}, Notes: []string{}},
		{
			CallID: "a84b4c76e66710@pc33", Group: "sales", Caller: `"Alice" <sip:+15551234@192.0.2.1>;tag=x&y`,
			Dialled: "600", Start: start, Answer: &answer, End: start.Add(time.Minute).In(local),
			Outcome: routing.OutcomeAnswered, Code: 200, AnsweredBy: "m2", AnsweredAt: "sip:m2@192.0.2.7:5060;transport=tcp",
			Fallback: "noanswer:uri:sip:vm@192.0.2.9,busy:group:support", Groups: []string{"sales", "support"},
			Legs: []routing.LegRecord{
				{Leg: 1, Group: "sales", Member: "m1", URI: "sip:m1@192.0.2.5", Start: start, Code: 486, RingMS: 512, Reason: "busy"},
				{Leg: 2, Group: "sales", Member: "m2", URI: "sip:m2@192.0.2.7", Start: start.Add(time.Millisecond), Code: 200, RingMS: 2000},
				{Leg: -3, Start: time.Time{}},
			},
			Notes:   []string{"strategy \"x\"\tnot implemented", "\x00\x1f\x7f\b\f\n\r\\"},
			EndedBy: "caller", Recording: "/var/spool/ringroute/a84b.wav",
			RTP: &routing.RTPStats{FromCaller: 1, FromMember: 2, BytesFromCaller: 1 << 40, BytesFromMember: 18446744073709551615, Dropped: 5, NotRTP: 6},
		},
		{CallID: "bad utf8 \xff\xfe, \xe2\x28\xa1, U+2028 \u2028 U+2029 \u2029, é ü 中 🙂", Caller: "<>&'", Code: -1},
	}
}

// The CDR format is json.Marshal's: appendRecord must write the same bytes.
func TestAppendRecordIsJSONMarshal(t *testing.T) {
	for i, r := range records() {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendRecord(nil, &r); !bytes.Equal(got, want) {
			t.Errorf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\<>&", "\x00\x01\x1f\x7f", "\xff", "\u2028\u2029", "é中🙂", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	r := records()[2]
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendRecord", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendRecord(buf[:0], &r)
		}
	})
}
