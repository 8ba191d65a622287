package media

import "testing"

func TestG711KnownValues(t *testing.T) {
	ulaw := []struct {
		lin  int16
		code byte
	}{
		{0, 0xff}, {-1, 0x7e}, {-4, 0x7e}, {1, 0xff}, {3, 0xff}, {32767, 0x80}, {-32768, 0x00},
		{120, 0xf0}, {-120, 0x70}, {8031 * 4, 0x80}, {1000, 0xce}, {-1000, 0x4e},
	}
	for _, c := range ulaw {
		if got := linearToUlaw(c.lin); got != c.code {
			t.Errorf("linearToUlaw(%d) = %#02x, want %#02x", c.lin, got, c.code)
		}
		if got := encodeUlaw(c.lin); got != c.code {
			t.Errorf("encodeUlaw(%d) = %#02x, want %#02x", c.lin, got, c.code)
		}
	}
	ulawDec := map[byte]int16{0xff: 0, 0x7f: 0, 0x80: 32124, 0x00: -32124, 0xf0: 120, 0x70: -120, 0xce: 988}
	for code, lin := range ulawDec {
		if got := ulawDecode[code]; got != lin {
			t.Errorf("µ-law decode %#02x = %d, want %d", code, got, lin)
		}
	}
	alaw := []struct {
		lin  int16
		code byte
	}{
		{0, 0xd5}, {-1, 0x55}, {32767, 0xaa}, {-32768, 0x2a}, {1000, 0xfa}, {-1000, 0x7a},
	}
	for _, c := range alaw {
		if got := linearToAlaw(c.lin); got != c.code {
			t.Errorf("linearToAlaw(%d) = %#02x, want %#02x", c.lin, got, c.code)
		}
		if got := encodeAlaw(c.lin); got != c.code {
			t.Errorf("encodeAlaw(%d) = %#02x, want %#02x", c.lin, got, c.code)
		}
	}
	alawDec := map[byte]int16{0xd5: 8, 0x55: -8, 0xaa: 32256, 0x2a: -32256, 0xfa: 1008, 0x7a: -1008}
	for code, lin := range alawDec {
		if got := alawDecode[code]; got != lin {
			t.Errorf("A-law decode %#02x = %d, want %d", code, got, lin)
		}
	}
}

// Every code word must survive decode+encode: the tables agree with the
// reference functions and with each other.
func TestG711RoundTrip(t *testing.T) {
	for i := range 256 {
		b := byte(i)
		if got := encodeAlaw(alawDecode[b]); got != b {
			t.Errorf("A-law %#02x -> %d -> %#02x", b, alawDecode[b], got)
		}
		want := b
		if b == 0x7f { // negative zero has no encoding of its own
			want = 0xff
		}
		if got := encodeUlaw(ulawDecode[b]); got != want {
			t.Errorf("µ-law %#02x -> %d -> %#02x", b, ulawDecode[b], got)
		}
	}
	for s := -32768; s <= 32767; s++ {
		if linearToUlaw(int16(s)) != encodeUlaw(int16(s)) || linearToAlaw(int16(s)) != encodeAlaw(int16(s)) {
			t.Fatalf("table and reference differ at %d", s)
		}
	}
}

// Quantization error stays within half a step of each segment.
func TestG711Error(t *testing.T) {
	for s := -32000; s <= 32000; s += 7 {
		for name, rt := range map[string]int16{
			"ulaw": ulawDecode[encodeUlaw(int16(s))],
			"alaw": alawDecode[encodeAlaw(int16(s))],
		} {
			d := int(rt) - s
			if d < 0 {
				d = -d
			}
			if lim := max(s, -s)/16 + 140; d > lim {
				t.Fatalf("%s: %d -> %d, error %d", name, s, rt, d)
			}
		}
	}
}
