package media

// G.711 µ-law and A-law, after the reference algorithm (ITU-T G.711, the
// Sun g711.c that every implementation copies). Decoding is a table lookup
// because the recorder decodes every relayed packet; encoding goes through
// a table indexed by the bits each law actually keeps (14 for µ-law, 13 for
// A-law), so the tables stay small. All tables are filled once at init and
// only read afterwards.

var (
	ulawDecode [256]int16
	alawDecode [256]int16
	ulawEncode [1 << 14]byte // index: sample >> 2, as uint16 >> 2
	alawEncode [1 << 13]byte // index: sample >> 3, as uint16 >> 3
)

func init() {
	for i := range 256 {
		ulawDecode[i] = ulawToLinear(byte(i))
		alawDecode[i] = alawToLinear(byte(i))
	}
	for i := range len(ulawEncode) {
		ulawEncode[i] = linearToUlaw(int16(uint16(i << 2)))
	}
	for i := range len(alawEncode) {
		alawEncode[i] = linearToAlaw(int16(uint16(i << 3)))
	}
}

const ulawBias = 0x84

// linearToUlaw works on the 14 bits µ-law keeps, as G.711 specifies: the
// shift comes before the sign is taken, so -1 and -4 share a code.
func linearToUlaw(sample int16) byte {
	v := int(sample) >> 2
	mask := 0xff
	if v < 0 {
		v = -v
		mask = 0x7f
	}
	v = min(v, 8159) + ulawBias>>2
	seg := 0
	for end := 0x3f; seg < 8 && v > end; end = end<<1 | 1 {
		seg++
	}
	if seg >= 8 {
		return byte(0x7f ^ mask)
	}
	return byte((seg<<4 | (v>>(seg+1))&0x0f) ^ mask)
}

func ulawToLinear(u byte) int16 {
	u = ^u
	t := (int(u&0x0f) << 3) + ulawBias
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(ulawBias - t)
	}
	return int16(t - ulawBias)
}

func linearToAlaw(sample int16) byte {
	v := int(sample) >> 3
	mask := 0xd5
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}
	seg := 0
	for end := 0x1f; seg < 8 && v > end; end = end<<1 | 1 {
		seg++
	}
	if seg >= 8 {
		return byte(0x7f ^ mask)
	}
	a := seg << 4
	if seg < 2 {
		a |= (v >> 1) & 0x0f
	} else {
		a |= (v >> seg) & 0x0f
	}
	return byte(a ^ mask)
}

func alawToLinear(a byte) int16 {
	a ^= 0x55
	t := int(a&0x0f) << 4
	seg := (a & 0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}

// encodeUlaw and encodeAlaw are the table-driven encoders the generators use.
func encodeUlaw(s int16) byte { return ulawEncode[uint16(s)>>2] }
func encodeAlaw(s int16) byte { return alawEncode[uint16(s)>>3] }

// encoder returns the encoder for a G.711 payload type, or nil.
func encoder(pt uint8) func(int16) byte {
	switch pt {
	case 0:
		return encodeUlaw
	case 8:
		return encodeAlaw
	}
	return nil
}

// decodeTable returns the decoding table for a G.711 payload type, or nil.
func decodeTable(pt uint8) *[256]int16 {
	switch pt {
	case 0:
		return &ulawDecode
	case 8:
		return &alawDecode
	}
	return nil
}
