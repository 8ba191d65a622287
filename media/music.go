package media

import (
	"bufio"
	"fmt"
	"os"

	"github.com/ringroute/ringroute/internal/wav"
)

// newMusic loads the whole file once, already encoded for pt, so playing
// it is a copy per frame. The error names the file and what is wrong with
// it, because config check shows it as the reason music_file is refused.
func newMusic(path string, pt uint8) (Source, error) {
	law, err := lawIndex(pt)
	if err != nil {
		return nil, fmt.Errorf("music %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("music: %w", err)
	}
	defer f.Close()
	info, data, err := wav.Read(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("music %s: %w", path, err)
	}
	if err := wav.CheckMusic(info); err != nil {
		return nil, fmt.Errorf("music %s: %w", path, err)
	}
	var out []byte
	switch {
	case info.Tag == wav.PCM:
		enc := [2]func(int16) byte{encodeUlaw, encodeAlaw}[law]
		out = make([]byte, len(data)/2)
		for i := range out {
			out[i] = enc(int16(uint16(data[2*i]) | uint16(data[2*i+1])<<8))
		}
	case info.Tag == wav.ULaw && law == 0, info.Tag == wav.ALaw && law == 1:
		out = data
	default: // the other law, through linear: at most a quantization step off
		dec, enc := &ulawDecode, encodeAlaw
		if info.Tag == wav.ALaw {
			dec, enc = &alawDecode, encodeUlaw
		}
		out = make([]byte, len(data))
		for i, b := range data {
			out[i] = enc(dec[b])
		}
	}
	if len(out) < frameSamples {
		return nil, fmt.Errorf("music %s: %d samples of audio; need at least one 20 ms frame", path, len(out))
	}
	return &loop{data: out, pt: pt}, nil
}
