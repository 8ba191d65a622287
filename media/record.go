package media

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ringroute/ringroute/internal/wav"
)

const (
	maxRecPayload = 480 // 60 ms of G.711, the longest ptime phones use
	recQueue      = 256 // about 2.5 s of both sides at 20 ms
	// recLag is how far behind the clock a silent channel is filled with
	// silence: late packets within it still land where they belong.
	recLag = 200 * time.Millisecond
	// recGap: a packet arriving more than this after the end of what the
	// channel holds starts after silence; less is jitter and is appended.
	// Three frames: a burst after a jitter spike must not push the channel
	// ahead of the other one.
	recGap  = 60 * time.Millisecond
	recTick = 100 * time.Millisecond
	// A RIFF size is 32 bits; stop well before it wraps (about 37 hours).
	recMaxData = 1<<32 - 1<<20
)

// Codec classes a recorder sees.
const (
	recSkip    = iota // telephone-event, comfort noise: not audio to write
	recULaw           // PCMU
	recALaw           // PCMA
	recUnknown        // another codec: silence, and a note in Stats.RecordErr
)

type recFrame struct {
	side  Side
	codec uint8
	pt    uint8
	n     uint16
	at    int64
	data  [maxRecPayload]byte
}

// recorder writes one session's audio. The relay hands it packets through
// a buffered channel and never waits: a slow or full disk costs frames of
// the recording (and a note), never relayed packets.
type recorder struct {
	s      *session
	stream int
	start  int64
	ch     chan recFrame
	quit   chan int64 // Close's time
	done   chan error
	dead   atomic.Bool // a write failed: stop queueing
	lost   atomic.Uint64

	// owned by the goroutine
	f       *os.File
	w       *bufio.Writer
	cur     [2]int64 // samples each channel holds on the timeline
	pend    [2][]int16
	written int64 // stereo frames written
	notes   []string
	noted   map[[2]uint8]bool
	out     []byte
}

var errRecording = errors.New("record: already recording")

// record opens the file before it takes s.mu: play, stopPlay and close
// must not wait on a slow disk.
func (s *session) record(path string) error {
	if s.rec.Load() != nil {
		return errRecording
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.rec.Load() != nil {
		f.Close()
		os.Remove(path)
		if s.closed {
			return fmt.Errorf("record: %w", ErrClosed)
		}
		return errRecording
	}
	r := &recorder{
		s: s, stream: s.mediaStream(), start: s.nanos(),
		ch: make(chan recFrame, recQueue), quit: make(chan int64, 1), done: make(chan error, 1),
		f: f, w: bufio.NewWriterSize(f, 8192), noted: map[[2]uint8]bool{},
	}
	h := wav.Header(2, 8000, 16, 0)
	r.w.Write(h[:]) // an error shows on the first flush
	s.rec.Store(r)
	go r.run()
	return nil
}

// push is called by the relay for each relayed RTP packet of the stream.
func (r *recorder) push(side Side, b []byte, ps *peerState, at int64) {
	if r.dead.Load() {
		return
	}
	payload, ok := rtpPayload(b)
	if !ok {
		return
	}
	pt := b[1] & 0x7f
	codec := codecClass(pt, ps.codecs[pt])
	if codec == recSkip {
		return
	}
	var f recFrame
	f.side, f.codec, f.pt, f.at = side, uint8(codec), pt, at
	f.n = uint16(copy(f.data[:], payload))
	select {
	case r.ch <- f:
	default:
		r.lost.Add(1)
	}
}

func codecClass(pt uint8, name string) int {
	switch {
	case pt == 0 || strings.EqualFold(name, "PCMU"):
		return recULaw
	case pt == 8 || strings.EqualFold(name, "PCMA"):
		return recALaw
	case pt == 13 || strings.EqualFold(name, "CN") || strings.EqualFold(name, "telephone-event"):
		return recSkip
	}
	return recUnknown
}

// rtpPayload skips CSRCs, the header extension and padding.
func rtpPayload(b []byte) ([]byte, bool) {
	n := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < n+4 {
			return nil, false
		}
		n += 4 + 4*(int(b[n+2])<<8|int(b[n+3]))
	}
	end := len(b)
	if b[0]&0x20 != 0 && end > 0 {
		end -= int(b[end-1])
	}
	if n > end {
		return nil, false
	}
	return b[n:end], true
}

func (r *recorder) samplesAt(t int64) int64 { return (t - r.start) * 8000 / int64(time.Second) }

func (r *recorder) run() {
	t := time.NewTicker(recTick)
	defer t.Stop()
	for {
		select {
		case f := <-r.ch:
			r.add(&f)
		case <-t.C:
			r.fill(r.samplesAt(r.s.nanos()) - int64(recLag*8000/time.Second))
		case end := <-r.quit:
			for {
				select {
				case f := <-r.ch:
					r.add(&f)
					continue
				default:
				}
				break
			}
			r.done <- r.close(end)
			return
		}
		if r.dead.Load() {
			r.done <- r.close(-1)
			return
		}
	}
}

func (r *recorder) note(s string) {
	r.notes = append(r.notes, s)
	msg := strings.Join(r.notes, "; ")
	r.s.recErr.Store(&msg)
}

func (r *recorder) add(f *recFrame) {
	c := f.side
	pos := r.samplesAt(f.at)
	if pos > r.cur[c]+int64(recGap*8000/time.Second) {
		r.pad(c, pos)
	}
	switch f.codec {
	case recULaw, recALaw:
		dec := &ulawDecode
		if f.codec == recALaw {
			dec = &alawDecode
		}
		for _, b := range f.data[:f.n] {
			r.pend[c] = append(r.pend[c], dec[b])
		}
		r.cur[c] += int64(f.n)
	default:
		if k := [2]uint8{uint8(c), f.pt}; !r.noted[k] {
			r.noted[k] = true
			r.note(fmt.Sprintf("%s payload type %d is not G.711: recorded as silence", sideName(c), f.pt))
		}
	}
	r.flush()
}

func sideName(s Side) string {
	if s == Caller {
		return "caller"
	}
	return "member"
}

// pad extends channel c with silence up to sample position pos.
func (r *recorder) pad(c Side, pos int64) {
	for ; r.cur[c] < pos; r.cur[c]++ {
		r.pend[c] = append(r.pend[c], 0)
	}
}

// fill gives every channel that lags pos silence up to it, so one silent
// side (hold, one-way audio) does not hold back writing the other.
func (r *recorder) fill(pos int64) {
	r.pad(Caller, pos)
	r.pad(Member, pos)
	r.flush()
}

// flush writes the frames both channels hold.
func (r *recorder) flush() {
	n := min(len(r.pend[0]), len(r.pend[1]))
	if n == 0 || r.dead.Load() {
		return
	}
	if (r.written+int64(n))*4 > recMaxData {
		r.fail(errors.New("recording reached the WAV size limit"))
		return
	}
	r.out = r.out[:0]
	for i := range n {
		l, rr := r.pend[0][i], r.pend[1][i]
		r.out = append(r.out, byte(l), byte(uint16(l)>>8), byte(rr), byte(uint16(rr)>>8))
	}
	if _, err := r.w.Write(r.out); err != nil {
		r.fail(err)
		return
	}
	r.written += int64(n)
	r.pend[0] = append(r.pend[0][:0], r.pend[0][n:]...)
	r.pend[1] = append(r.pend[1][:0], r.pend[1][n:]...)
}

func (r *recorder) fail(err error) {
	r.dead.Store(true)
	r.note("recording stopped: " + err.Error())
}

// close pads both channels to the same length (the time Close was called,
// or the longer channel if packets ran ahead of the clock), writes the
// final sizes into the header and closes the file. end < 0: after a write
// error, when only the header is worth trying.
func (r *recorder) close(end int64) error {
	if r.f == nil {
		return nil
	}
	var errs []error
	if end >= 0 && !r.dead.Load() {
		pos := max(r.samplesAt(end), r.cur[0], r.cur[1])
		r.fill(pos)
	}
	if n := r.lost.Load(); n > 0 {
		r.note(fmt.Sprintf("%d packets not recorded (recorder fell behind)", n))
	}
	if err := r.w.Flush(); err != nil && !r.dead.Load() {
		r.fail(err)
		errs = append(errs, err)
	}
	h := wav.Header(2, 8000, 16, uint32(r.written*4))
	if _, err := r.f.WriteAt(h[:], 0); err != nil {
		errs = append(errs, err)
	}
	if err := r.f.Close(); err != nil {
		errs = append(errs, err)
	}
	r.f = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}

// finish stops the recorder at time end (session clock) and waits for
// the file to be complete.
func (r *recorder) finish(end int64) error {
	r.quit <- end
	return <-r.done
}
