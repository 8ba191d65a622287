package media

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// cadence is a country's ringback: the tones sounded together and the
// on/off pattern, starting with on.
type cadence struct {
	freqs []float64
	onOff []time.Duration
}

var cadences = map[string]cadence{
	"us": {[]float64{440, 480}, []time.Duration{2 * time.Second, 4 * time.Second}},
	"eu": {[]float64{425}, []time.Duration{1 * time.Second, 4 * time.Second}},
	"uk": {[]float64{400, 450}, []time.Duration{400 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 2 * time.Second}},
}

// toneAmplitude is the peak of each sine, in 16-bit linear: -13 dBm0 per
// tone. 0 dBm0 is 3.17 dB below a full-scale G.711 sine (peak 32636 after
// the ×4 scaling of µ-law's 14 bits), so 32636 · 10^(-(3.17+13)/20).
var toneAmplitude = 32636 * math.Pow(10, -(3.17+13)/20)

// toneRamp softens each on/off edge so the cadence does not click.
const toneRamp = 2 * time.Millisecond

// toneCycles holds one encoded cadence cycle per country and law, made
// on first use: a ringing call then costs no synthesis, and all calls
// share the same read-only bytes.
var toneCycles = func() map[string]func() [2][]byte {
	m := make(map[string]func() [2][]byte, len(cadences))
	for name, c := range cadences {
		m[name] = sync.OnceValue(func() [2][]byte {
			pcm := synthesize(c)
			var out [2][]byte
			for i, enc := range []func(int16) byte{encodeUlaw, encodeAlaw} {
				out[i] = make([]byte, len(pcm))
				for j, v := range pcm {
					out[i][j] = enc(v)
				}
			}
			return out
		})
	}
	return m
}()

func samples(d time.Duration) int { return int(d * 8000 / time.Second) }

func synthesize(c cadence) []int16 {
	var pcm []int16
	ramp := samples(toneRamp)
	n := 0
	for seg, d := range c.onOff {
		k := samples(d)
		for j := range k {
			var v float64
			if seg%2 == 0 {
				t := float64(n+j) / 8000
				for _, f := range c.freqs {
					v += math.Sin(2 * math.Pi * f * t)
				}
				v *= toneAmplitude
				if e := min(j, k-1-j); e < ramp {
					v *= 0.5 - 0.5*math.Cos(math.Pi*float64(e)/float64(ramp))
				}
			}
			pcm = append(pcm, int16(math.Round(v)))
		}
		n += k
	}
	return pcm
}

func newTone(country string, pt uint8) (Source, error) {
	law, err := lawIndex(pt)
	if err != nil {
		return nil, fmt.Errorf("ringback tone: %w", err)
	}
	cyc, ok := toneCycles[strings.ToLower(country)]
	if !ok {
		names := make([]string, 0, len(cadences))
		for n := range cadences {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("ringback tone %q: unknown country; known: %s", country, strings.Join(names, ", "))
	}
	return &loop{data: cyc()[law], pt: pt}, nil
}

// lawIndex: 0 for PCMU, 1 for PCMA, the only codecs generated audio comes in.
func lawIndex(pt uint8) (int, error) {
	switch pt {
	case 0:
		return 0, nil
	case 8:
		return 1, nil
	}
	return 0, fmt.Errorf("payload type %d: generated audio is PCMU (0) or PCMA (8) only", pt)
}
