package media

import (
	"math"
	"net"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// goertzel is the signal power at freq in x (8 kHz), normalised so a sine
// of amplitude A gives about A²/4 · len(x)² / len(x)... only ratios matter.
func goertzel(x []int16, freq float64) float64 {
	w := 2 * math.Pi * freq / 8000
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s := float64(v) + c*s1 - s2
		s2, s1 = s1, s
	}
	p := s1*s1 + s2*s2 - c*s1*s2
	n := float64(len(x))
	return p / (n * n)
}

func decodeAll(b []byte, pt uint8) []int16 {
	tab := decodeTable(pt)
	out := make([]int16, len(b))
	for i, v := range b {
		out[i] = tab[v]
	}
	return out
}

func rms(x []int16) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(len(x)))
}

// frames pulls d of audio from src, decoded.
func frames(src Source, d time.Duration) []int16 {
	var pcm []int16
	buf := make([]byte, frameSamples)
	for range int(d / frameTime) {
		src.Frame(buf)
		pcm = append(pcm, decodeAll(buf, src.PayloadType())...)
	}
	return pcm
}

func TestToneFrequenciesAndCadence(t *testing.T) {
	cases := []struct {
		country string
		freqs   []float64
		onOff   []time.Duration
	}{
		{"us", []float64{440, 480}, []time.Duration{2 * time.Second, 4 * time.Second}},
		{"eu", []float64{425}, []time.Duration{time.Second, 4 * time.Second}},
		{"uk", []float64{400, 450}, []time.Duration{400 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 2 * time.Second}},
	}
	for _, c := range cases {
		for _, pt := range []uint8{0, 8} {
			src := mustTone(t, c.country, pt)
			if src.PayloadType() != pt {
				t.Fatalf("%s: payload type %d", c.country, src.PayloadType())
			}
			var cycle time.Duration
			for _, d := range c.onOff {
				cycle += d
			}
			pcm := frames(src, 2*cycle) // two cycles: the loop wraps cleanly
			// Cadence: classify each 20 ms frame as on or off and compare
			// the run lengths with the pattern.
			var runs []time.Duration
			on := true
			var run time.Duration
			for i := 0; i+frameSamples <= len(pcm); i += frameSamples {
				f := pcm[i : i+frameSamples]
				isOn := rms(f) > 1000
				if isOn != on {
					runs = append(runs, run)
					on, run = isOn, 0
				}
				run += frameTime
			}
			runs = append(runs, run)
			for i, want := range append(c.onOff, c.onOff...) {
				if i >= len(runs) || runs[i] != want {
					t.Fatalf("%s pt %d: on/off runs %v, want %v twice", c.country, pt, runs, c.onOff)
				}
			}
			// Frequencies, over the middle of the first on period.
			seg := pcm[samples(50*time.Millisecond):samples(c.onOff[0]-50*time.Millisecond)]
			var total float64
			for _, f := range c.freqs {
				p := goertzel(seg, f)
				total += p
				// Each tone at -13 dBm0: amplitude ≈ 5070, power A²/4.
				level := 10 * math.Log10(p*4/(toneAmplitude*toneAmplitude))
				if math.Abs(level) > 0.5 {
					t.Errorf("%s pt %d: %v Hz at %.2f dB from -13 dBm0", c.country, pt, f, level)
				}
			}
			for _, f := range []float64{300, 350, 520, 620, 1000} {
				if p := goertzel(seg, f); p > total/1000 {
					t.Errorf("%s pt %d: energy at %v Hz: %.0f vs %.0f", c.country, pt, f, p, total)
				}
			}
		}
	}
}

func TestToneErrors(t *testing.T) {
	if _, err := Tone("fr", 0); err == nil {
		t.Error("unknown country accepted")
	}
	if _, err := Tone("us", 9); err == nil {
		t.Error("G.722 accepted")
	}
	if _, err := Tone("US", 8); err != nil {
		t.Errorf("upper case country: %v", err)
	}
}

// Play: the caller receives the tone as RTP before answer, from the
// caller-side relay port, with a fresh SSRC, the marker on the first
// packet, sequence +1 and timestamp +160 per packet; Bridge stops it.
func TestPlayToneToCaller(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Play(mustTone(t, "eu", 8))
	var pkts []rtp.Packet
	var pcm []int16
	for range 25 {
		b, from, ok := recv(c.caller.rtp, time.Second)
		if !ok {
			t.Fatalf("caller got %d tone packets, then nothing", len(pkts))
		}
		if from != c.toA {
			t.Fatalf("tone from %v, want %v", from, c.toA)
		}
		var p rtp.Packet
		if err := p.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, p)
		pcm = append(pcm, decodeAll(p.Payload, p.PayloadType)...)
	}
	for i, p := range pkts {
		if p.Version != 2 || p.PayloadType != 8 || len(p.Payload) != 160 || p.Marker != (i == 0) || p.SSRC != pkts[0].SSRC {
			t.Fatalf("packet %d header %+v", i, p.Header)
		}
		if i > 0 && (p.SequenceNumber != pkts[i-1].SequenceNumber+1 || p.Timestamp != pkts[i-1].Timestamp+160) {
			t.Fatalf("packet %d: seq %d ts %d after seq %d ts %d", i, p.SequenceNumber, p.Timestamp, pkts[i-1].SequenceNumber, pkts[i-1].Timestamp)
		}
	}
	seg := pcm[samples(20*time.Millisecond):]
	if p425, p1k := goertzel(seg, 425), goertzel(seg, 1000); p425 < 1000*p1k || p425 < 1e6 {
		t.Fatalf("received tone: 425 Hz power %.0f, 1 kHz %.0f", p425, p1k)
	}
	c.s.Bridge()
	drain(c.caller.rtp, 50*time.Millisecond)
	if got := drain(c.caller.rtp, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("%d tone packets after Bridge", len(got))
	}
}

func TestStopPlayAndReplace(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Play(mustTone(t, "us", 0))
	if _, _, ok := recv(c.caller.rtp, time.Second); !ok {
		t.Fatal("no tone")
	}
	c.s.Play(mustTone(t, "uk", 0)) // replaces, does not add a second stream
	time.Sleep(100 * time.Millisecond)
	got := readFor(c.caller.rtp, 200*time.Millisecond)
	ssrcs := map[uint32]bool{}
	for _, b := range got[len(got)/2:] {
		var h rtp.Header
		h.Unmarshal(b)
		ssrcs[h.SSRC] = true
	}
	if len(ssrcs) != 1 {
		t.Fatalf("%d SSRCs after replacing the source", len(ssrcs))
	}
	c.s.StopPlay()
	drain(c.caller.rtp, 30*time.Millisecond)
	if got := drain(c.caller.rtp, 60*time.Millisecond); len(got) != 0 {
		t.Fatal("tone after StopPlay")
	}
}

// readFor reads whatever arrives during d.
func readFor(c *net.UDPConn, d time.Duration) [][]byte {
	var out [][]byte
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if b, _, ok := recv(c, time.Until(end)); ok {
			out = append(out, b)
		}
	}
	return out
}
