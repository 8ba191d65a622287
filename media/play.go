package media

import (
	"math/rand/v2"
	"time"

	"github.com/pion/rtp"
)

const (
	frameSamples = 160 // 20 ms at 8 kHz
	frameTime    = 20 * time.Millisecond
)

// player is one Play: a goroutine that sends a Source's frames to the
// caller from the caller-side RTP socket, so the caller sees them from the
// address its SDP answer names.
type player struct {
	stop chan struct{}
	done chan struct{}
}

func (p *player) halt() {
	close(p.stop)
	<-p.done
}

// play replaces whatever is playing. After Bridge it does nothing: the
// caller then hears the member, and mixing generated packets into that
// stream would garble both. The old player stops first, so the caller
// never gets two streams interleaved; if another play started one
// meanwhile, that one stays.
//
// A player is halted with s.mu released (stopPlay): halting waits for its
// goroutine to leave a UDP write, and Bridge runs on the answer's path.
func (s *session) play(src Source) {
	s.stopPlay()
	s.mu.Lock()
	defer s.mu.Unlock()
	if src == nil || s.closed || s.bridged.Load() || s.player != nil {
		return
	}
	p := &player{stop: make(chan struct{}), done: make(chan struct{})}
	s.player = p
	go p.run(s.eps[Caller][s.mediaStream()][kindRTP], src)
}

func (s *session) stopPlay() {
	s.mu.Lock()
	old := s.player
	s.player = nil
	s.mu.Unlock()
	if old != nil {
		old.halt()
	}
}

func (p *player) run(e *endpoint, src Source) {
	defer close(p.done)
	buf := make([]byte, 12+frameSamples)
	h := rtp.Header{
		Version:        2,
		Marker:         true, // start of a talkspurt (RFC 3551 §4.1)
		PayloadType:    src.PayloadType(),
		SequenceNumber: uint16(rand.Uint32()),
		Timestamp:      rand.Uint32(),
		SSRC:           rand.Uint32(),
	}
	t := time.NewTicker(frameTime)
	defer t.Stop()
	for {
		src.Frame(buf[12:])
		if d := e.dest.Load(); d != nil {
			if _, err := h.MarshalTo(buf); err == nil {
				if _, err := e.conn.WriteToUDPAddrPort(buf, *d); err == nil {
					h.Marker = false
					h.SequenceNumber++
				}
			}
		}
		// The timestamp runs on while nothing can be sent, so the caller's
		// jitter buffer sees the real elapsed time.
		h.Timestamp += frameSamples
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// loop is a Source over a fixed encoded cycle.
type loop struct {
	data []byte
	pos  int
	pt   uint8
}

func (l *loop) PayloadType() uint8 { return l.pt }

func (l *loop) Frame(b []byte) {
	for len(b) > 0 {
		n := copy(b, l.data[l.pos:])
		b = b[n:]
		l.pos = (l.pos + n) % len(l.data)
	}
}
