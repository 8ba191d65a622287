package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringroute/ringroute/internal/wav"
)

// readStereo reads a recording back with the package's own reader.
func readStereo(t *testing.T, path string) (left, right []int16) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(b[4:8]); int(got) != len(b)-8 {
		t.Fatalf("RIFF size %d, file %d bytes", got, len(b))
	}
	info, data, err := wav.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if info.Tag != wav.PCM || info.Channels != 2 || info.Rate != 8000 || info.Bits != 16 {
		t.Fatalf("recording is %v", info)
	}
	if len(data)%4 != 0 || len(data) != len(b)-wav.HeaderSize {
		t.Fatalf("data chunk %d bytes of a %d-byte file", len(data), len(b))
	}
	for i := 0; i < len(data); i += 4 {
		left = append(left, int16(binary.LittleEndian.Uint16(data[i:])))
		right = append(right, int16(binary.LittleEndian.Uint16(data[i+2:])))
	}
	return left, right
}

// talk sends n 20 ms frames from each side at the real pace: the caller a
// 1 kHz tone in PCMU, the member 500 Hz in PCMA.
func talk(t *testing.T, c *call, n int) {
	t.Helper()
	a, b := sine(1000, n*frameSamples, 6000), sine(500, n*frameSamples, 6000)
	tick := time.NewTicker(frameTime)
	defer tick.Stop()
	for i := range n {
		pa, pb := make([]byte, frameSamples), make([]byte, frameSamples)
		for j := range frameSamples {
			pa[j] = encodeUlaw(a[i*frameSamples+j])
			pb[j] = encodeAlaw(b[i*frameSamples+j])
		}
		c.caller.send(c.toA, rtpPacket(0, uint16(i), pa))
		c.member.send(c.toB, rtpPacket(8, uint16(i), pb))
		<-tick.C
	}
}

func TestRecordStereo(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Bridge()
	path := filepath.Join(t.TempDir(), "call.wav")
	start := time.Now()
	if err := c.s.Record(path); err != nil {
		t.Fatal(err)
	}
	if err := c.s.Record(path); err == nil {
		t.Fatal("second Record accepted")
	}
	talk(t, c, 50) // one second
	if err := c.s.Close(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	left, right := readStereo(t, path)
	if len(left) != len(right) {
		t.Fatalf("channels of %d and %d samples", len(left), len(right))
	}
	// From Record to Close: at least the second of audio, at most the
	// time that really passed.
	if got := time.Duration(len(left)) * time.Second / 8000; got < time.Second || got > elapsed+10*time.Millisecond {
		t.Fatalf("recording of %v, want 1 s .. %v", got, elapsed)
	}
	mid := func(x []int16) []int16 { return x[2000:6000] }
	if l1k, l500 := goertzel(mid(left), 1000), goertzel(mid(left), 500); l1k < 1e6 || l500 > l1k/100 {
		t.Fatalf("left channel is not the caller's 1 kHz: %.0f / %.0f", l1k, l500)
	}
	if r500, r1k := goertzel(mid(right), 500), goertzel(mid(right), 1000); r500 < 1e6 || r1k > r500/100 {
		t.Fatalf("right channel is not the member's 500 Hz: %.0f / %.0f", r500, r1k)
	}
	if st := c.s.Stats(); st.RecordErr != "" {
		t.Fatalf("RecordErr %q", st.RecordErr)
	}
}

// One side silent (on hold, say): the recording still has two channels of
// the same length, the silent one full of zeros.
func TestRecordOneSideSilent(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Bridge()
	path := filepath.Join(t.TempDir(), "call.wav")
	if err := c.s.Record(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a gap before anyone speaks
	for i := range 10 {
		c.caller.send(c.toA, rtpPacket(0, uint16(i), bytes.Repeat([]byte{0x80}, 160)))
		time.Sleep(frameTime)
	}
	c.s.Close()
	left, right := readStereo(t, path)
	if len(left) != len(right) || len(left) < 8000/2 {
		t.Fatalf("channels %d / %d samples", len(left), len(right))
	}
	if rms(left[:2000]) != 0 {
		t.Fatal("the gap before the first packet is not silence")
	}
	if rms(left[2400:]) < 1000 {
		t.Fatal("caller audio missing")
	}
	if rms(right) != 0 {
		t.Fatal("silent member channel is not silent")
	}
}

func TestRecordNonG711(t *testing.T) {
	c := newCall(t, SessionOptions{})
	st := c.caller.stream()
	st.Payloads = append(st.Payloads, 9)
	st.Codecs[9] = "G722"
	c.s.SetPeer(Caller, 0, st)
	c.s.Bridge()
	path := filepath.Join(t.TempDir(), "call.wav")
	if err := c.s.Record(path); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		c.caller.send(c.toA, rtpPacket(9, uint16(i), make([]byte, 160)))
		c.caller.send(c.toA, rtpPacket(101, uint16(i), []byte{1, 0, 0, 160})) // DTMF: ignored quietly
	}
	waitFor(t, "relayed", func() bool { return c.s.Stats().Packets[Caller] == 10 })
	c.s.Close()
	if e := c.s.Stats().RecordErr; !strings.Contains(e, "caller payload type 9 is not G.711") || strings.Contains(e, "101") {
		t.Fatalf("RecordErr %q", e)
	}
	left, right := readStereo(t, path)
	if len(left) != len(right) || rms(left) != 0 {
		t.Fatal("non-G.711 audio not silence")
	}
}

// A full disk stops the recording, is reported, and the call goes on.
func TestRecordDiskFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	c := newCall(t, SessionOptions{})
	c.s.Bridge()
	if err := c.s.Record("/dev/full"); err != nil {
		t.Fatal(err)
	}
	talk(t, c, 40) // 0.8 s: 25 KB of stereo, past the writer's buffer
	waitFor(t, "RecordErr", func() bool { return strings.Contains(c.s.Stats().RecordErr, "no space left") })
	drain(c.member.rtp, 20*time.Millisecond)
	drain(c.caller.rtp, 20*time.Millisecond)
	c.caller.send(c.toA, rtpPacket(0, 999, make([]byte, 160)))
	if _, _, ok := recv(c.member.rtp, time.Second); !ok {
		t.Fatal("the call stopped with the recording")
	}
	if st := c.s.Stats(); st.Packets[Caller] != 41 || st.Packets[Member] != 40 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRecordUnwritableDir(t *testing.T) {
	c := newCall(t, SessionOptions{})
	if err := c.s.Record(filepath.Join(t.TempDir(), "no", "such", "dir.wav")); err == nil {
		t.Fatal("Record into a missing directory succeeded")
	}
	c.s.Bridge()
	c.caller.send(c.toA, rtpPacket(0, 1, make([]byte, 160)))
	if _, _, ok := recv(c.member.rtp, time.Second); !ok {
		t.Fatal("no audio")
	}
}

// Record opens its file outside the session's lock: while the open blocks
// (a FIFO nobody reads, standing in for a hung mount) the call can still be
// closed, and the late Record then fails with ErrClosed and leaves no file.
func TestRecordSlowOpenDoesNotBlockClose(t *testing.T) {
	c := newCall(t, SessionOptions{})
	path := filepath.Join(t.TempDir(), "call.wav")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.s.Record(path) }()
	time.Sleep(50 * time.Millisecond) // let Record reach the open; the test passes either way if not
	closed := make(chan struct{})
	go func() { c.s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Error("Close waited for the recording's open")
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0) // the open returns
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	<-closed
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Record on a closed session: %v, want ErrClosed", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the closed session's file is still there (%v)", err)
	}
}
