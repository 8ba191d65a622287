package media

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringroute/ringroute/internal/wav"
)

// writeWAV writes a WAV with an arbitrary fmt for the tests.
func writeWAV(t *testing.T, format, channels uint16, rate uint32, bits uint16, data []byte, extra ...string) string {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(0)) // size unknown: readers must not care
	b.WriteString("WAVE")
	for _, e := range extra { // a chunk readers must skip
		b.WriteString(e)
		binary.Write(&b, binary.LittleEndian, uint32(3))
		b.WriteString("abc\x00")
	}
	b.WriteString("fmt ")
	binary.Write(&b, binary.LittleEndian, uint32(16))
	blk := channels * bits / 8
	for _, v := range []any{format, channels, rate, rate * uint32(blk), blk, bits} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, uint32(len(data)))
	b.Write(data)
	path := filepath.Join(t.TempDir(), "music.wav")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sine(freq float64, n int, amp float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * math.Sin(2*math.Pi*freq*float64(i)/8000))
	}
	return out
}

func TestMusicFormats(t *testing.T) {
	const n = 8000 / 2 // half a second: not a whole number of frames less one
	pcm := sine(700, n+37, 8000)
	pcmBytes := make([]byte, 2*len(pcm))
	ulaw := make([]byte, len(pcm))
	alaw := make([]byte, len(pcm))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(pcmBytes[2*i:], uint16(v))
		ulaw[i], alaw[i] = encodeUlaw(v), encodeAlaw(v)
	}
	files := map[string]string{
		"pcm":  writeWAV(t, wav.PCM, 1, 8000, 16, pcmBytes, "LIST"),
		"ulaw": writeWAV(t, wav.ULaw, 1, 8000, 8, ulaw),
		"alaw": writeWAV(t, wav.ALaw, 1, 8000, 8, alaw),
	}
	for name, path := range files {
		for _, pt := range []uint8{0, 8} {
			src, err := Music(path, pt)
			if err != nil {
				t.Fatalf("%s pt %d: %v", name, pt, err)
			}
			got := frames(src, 3*time.Second) // loops about six times
			if p := goertzel(got[:len(pcm)], 700); p < 1e6 {
				t.Fatalf("%s pt %d: no 700 Hz (%.0f)", name, pt, p)
			}
			// It loops: the sample after the end is the first again.
			for _, k := range []int{0, 1, 100} {
				a, b := got[k], got[len(pcm)+k]
				if math.Abs(float64(a)-float64(b)) > 300 {
					t.Fatalf("%s pt %d: sample %d is %d, after one loop %d", name, pt, k, a, b)
				}
			}
			// And it matches the file, within a quantization step.
			for i := range pcm {
				// Transcoding A-law to µ-law adds both quantization errors.
				if d := math.Abs(float64(got[i]) - float64(pcm[i])); d > math.Abs(float64(pcm[i]))/10+64 {
					t.Fatalf("%s pt %d: sample %d = %d, file has %d", name, pt, i, got[i], pcm[i])
				}
			}
		}
	}
}

func TestMusicErrors(t *testing.T) {
	stereo := writeWAV(t, wav.PCM, 2, 44100, 16, make([]byte, 4000))
	_, err := Music(stereo, 0)
	if err == nil || !strings.Contains(err.Error(), "44100 Hz stereo 16-bit PCM; need 8 kHz mono") {
		t.Fatalf("stereo: %v", err)
	}
	t.Log(err)
	cases := map[string]string{
		"8-bit PCM":  writeWAV(t, wav.PCM, 1, 8000, 8, make([]byte, 4000)),
		"16 kHz":     writeWAV(t, wav.PCM, 1, 16000, 16, make([]byte, 4000)),
		"IEEE float": writeWAV(t, 3, 1, 8000, 32, make([]byte, 4000)),
		"too short":  writeWAV(t, wav.ULaw, 1, 8000, 8, make([]byte, 100)),
		"missing":    filepath.Join(t.TempDir(), "nope.wav"),
		"not a WAV":  writeFile(t, "ID3 this is an mp3"),
		"empty":      writeFile(t, ""),
		"no data":    writeFile(t, "RIFF\x04\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00"),
	}
	for name, path := range cases {
		if _, err := Music(path, 0); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), path) && name != "missing" {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
	if _, err := Music(stereo, 18); err == nil {
		t.Error("G.729 accepted")
	}
}

func writeFile(t *testing.T, s string) string {
	path := filepath.Join(t.TempDir(), "f.wav")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The music file shipped for configs and e2e tests loads.
func TestShippedMusic(t *testing.T) {
	src, err := Music("../testdata/media/moh.wav", 0)
	if err != nil {
		t.Fatal(err)
	}
	if p := rms(frames(src, time.Second)); p < 500 {
		t.Fatalf("shipped music is nearly silent (rms %.0f)", p)
	}
}

// Musics reads a file once while it stays as it was, and again once its
// size or modification time changes.
func TestMusicsKeepsAFileUntilItChanges(t *testing.T) {
	pcm := func(v int16) []byte {
		b := make([]byte, 2*8000)
		for i := 0; i < len(b); i += 2 {
			binary.LittleEndian.PutUint16(b[i:], uint16(v))
		}
		return b
	}
	path := writeWAV(t, 1, 1, 8000, 16, pcm(1000))
	first := func(c *Musics) byte {
		t.Helper()
		src, err := c.Music(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, frameSamples)
		src.Frame(b)
		return b[0]
	}
	var c Musics
	loud := first(&c)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The same size and time, other audio: still the kept copy.
	other := writeWAV(t, 1, 1, 8000, 16, pcm(-1000))
	b, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if got := first(&c); got != loud {
		t.Fatalf("unchanged file read again: first byte %#x, kept %#x", got, loud)
	}
	var fresh Musics
	quiet := first(&fresh)
	if quiet == loud {
		t.Fatalf("test files do not differ (%#x)", quiet)
	}
	// A new modification time: read again.
	later := st.ModTime().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if got := first(&c); got != quiet {
		t.Fatalf("changed file not read again: first byte %#x, want %#x", got, quiet)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Music(path, 0); err == nil {
		t.Fatal("a removed file still plays")
	}
}
