package wav

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHeaderReadsBack(t *testing.T) {
	h := Header(2, 8000, 16, 8)
	b := append(h[:], make([]byte, 8)...)
	f, data, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if f != (Format{Tag: PCM, Channels: 2, Rate: 8000, Bits: 16}) || len(data) != 8 {
		t.Fatalf("read back %v with %d bytes", f, len(data))
	}
}

func TestCheckMusicFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mono := Header(1, 8000, 16, 0)
	stereo := Header(2, 44100, 16, 0)
	for _, tc := range []struct {
		name string
		b    []byte
		want string // "" is no error
	}{
		{"good.wav", mono[:], ""},
		{"cd.wav", stereo[:], "44100 Hz stereo 16-bit PCM; need 8 kHz mono"},
		{"text.wav", []byte("hello, this is not audio"), "not a WAV file"},
		{"empty.wav", nil, "not a WAV file"},
	} {
		err := CheckMusicFile(write(tc.name, tc.b))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want it to say %q", tc.name, err, tc.want)
		}
	}
	if err := CheckMusicFile(filepath.Join(dir, "missing.wav")); err == nil {
		t.Error("a missing file passes")
	}
}
