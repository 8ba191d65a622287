// Package media carries a call's audio through ringroute: the RTP/RTCP port
// pool, the SDP rewrite that puts ringroute's address and ports in each
// side's offer and answer, the relay with symmetric-RTP latching, generated
// ringback (tones and music) and call recording.
//
// It is a leaf that package sip drives: it knows nothing of SIP dialogs or
// routing. sip parses each SDP with ParseSDP, asks a Session for ports,
// rewrites the SDP toward the other side, and tells the Session where each
// side's media is and when the call is answered.
//
// This file is the API the rest of ringroute is written against; the
// implementation lives in the other files of the package.
package media

import (
	"errors"
	"net/netip"
	"time"
)

// ErrExhausted: the pool has no free port pair; the call gets 503.
var ErrExhausted = errors.New("media: no free RTP port pair")

// ErrClosed is returned by Record on a session that has been closed.
var ErrClosed = errors.New("media: session closed")

// Side is one side of a relayed call.
type Side int

const (
	Caller Side = iota // the A side: toward the caller
	Member             // the B side: toward the ringing members, then the winner
)

// Ports are the two sockets of one stream on one side: RTP even, RTCP the
// next odd port.
type Ports struct {
	RTP, RTCP int
}

// Stream is one m= line as sip needs to know it.
type Stream struct {
	Media     string           // "audio", "video", ...
	Port      int              // 0: the stream is disabled (RFC 3264 §6); not relayed
	Addr      netip.AddrPort   // where the peer wants RTP (c= of the media, else the session)
	RTCP      netip.AddrPort   // where it wants RTCP (a=rtcp, else Addr port+1)
	Payloads  []uint8          // payload types of the m= line, in order
	Codecs    map[uint8]string // encoding names from a=rtpmap, or the static ones ("PCMU", "PCMA", ...)
	Direction string           // sendrecv | sendonly | recvonly | inactive (session default applied)
}

// Origin is the o= line ringroute writes on one side: a fixed session id
// and a version that sip increments every time that side's SDP changes
// (RFC 3264 §8).
type Origin struct {
	ID      uint64
	Version uint64
}

// Description is a parsed SDP body. Parsing is strict where pion/sdp is
// and falls back to a line-based reading for bodies pion rejects (a session
// c= after t=, say), so a peer's odd SDP never crashes a call.
type Description struct {
	impl descImpl
}

// ParseSDP parses an SDP body. An error means the body is not usable SDP
// (no m= line, no address for an active stream): sip answers 488.
func ParseSDP(body []byte) (*Description, error) { return parseSDP(body) }

// Streams are the m= lines in order.
func (d *Description) Streams() []Stream { return d.impl.streams() }

// Rewrite returns the body with ringroute's addr in every c= line, ports[i]
// in the i-th m= line (disabled streams keep port 0), a=rtcp pointing at
// ports[i].RTCP, ICE attributes (candidate, ice-*, end-of-candidates) and
// rtcp-mux removed, and o= replaced by origin with addr. Codecs, rtpmap,
// fmtp, ptime, direction attributes and telephone-event pass unchanged.
func (d *Description) Rewrite(addr netip.Addr, ports []Ports, origin Origin) []byte {
	return d.impl.rewrite(addr, ports, origin)
}

// Pool hands out port pairs from `media.ports`, bound on `media.address`.
// It is safe for concurrent use.
type Pool struct {
	impl poolImpl
}

// NewPool makes a pool of the pairs (lo, lo+1), (lo+2, lo+3), ... up to hi,
// binding sockets on addr.
func NewPool(addr netip.Addr, lo, hi int) (*Pool, error) { return newPool(addr, lo, hi) }

// InUse and Size count pairs.
func (p *Pool) InUse() int { return p.impl.inUse() }
func (p *Pool) Size() int  { return p.impl.size() }

// Session is one call's relay: for each stream, a port pair on the caller
// side and one on the member side (all ringing members share the member
// side). It starts dropping everything it receives; sip tells it where each
// side is (SetPeer) and when to forward (Bridge, EarlyMedia). Close is
// always called, whatever way the call ends, and returns every port.
//
// Every method may be called from any goroutine, concurrently. Bridge and
// StopPlay wait for the playing goroutine to stop (at most one 20 ms tick);
// Close waits for the socket readers, the playback and the recording file
// (its last flush and header fix-up), so it returns within milliseconds on
// a local disk. Methods called after Close do nothing (Record fails).
type Session struct {
	impl *session
}

// SessionOptions are optional collaborators.
type SessionOptions struct {
	// Now is the clock for idle times and latching windows; nil: time.Now.
	Now func() time.Time
}

// NewSession binds two port pairs per stream (streams = number of m= lines
// of the caller's offer). ErrExhausted when the pool runs out; whatever
// was taken is given back.
func (p *Pool) NewSession(streams int, opts SessionOptions) (*Session, error) {
	return p.impl.newSession(streams, opts)
}

// Ports are the bound ports of side, one per stream.
func (s *Session) Ports(side Side) []Ports { return s.impl.ports(side) }

// SetPeer says where side's stream i wants its media, from its SDP, and
// which payload types it may send. It (re)opens latching for that stream:
// the real source is learnt from the first valid packets, then locked.
func (s *Session) SetPeer(side Side, i int, st Stream) { s.impl.setPeer(side, i, st) }

// EarlyMedia forwards member-side RTP to the caller before answer (ringback
// passthrough from the member whose 183 carried SDP). Off by default.
func (s *Session) EarlyMedia(on bool) { s.impl.earlyMedia(on) }

// Bridge starts relaying both ways: the call is answered. It stops any
// playback.
func (s *Session) Bridge() { s.impl.bridge() }

// Play sends generated audio to the caller until StopPlay, Bridge or
// Close.
func (s *Session) Play(src Source) { s.impl.play(src) }

// StopPlay stops Play.
func (s *Session) StopPlay() { s.impl.stopPlay() }

// SetHold marks the call held (a direction other than sendrecv in the last
// offer/answer): an idle relay is then not a dead call.
func (s *Session) SetHold(held bool) { s.impl.setHold(held) }

// Idle is how long no RTP has arrived from either side since Bridge, or 0
// while held or not bridged.
func (s *Session) Idle() time.Duration { return s.impl.idle() }

// Record writes the call from now until Close as a stereo WAV at path:
// caller left, member right, G.711 decoded to 16-bit PCM at 8 kHz. A write
// error stops the recording, never the call; Stats reports it.
func (s *Session) Record(path string) error { return s.impl.record(path) }

// Stats counts what the relay did.
func (s *Session) Stats() Stats { return s.impl.stats() }

// Close stops the relay, finishes the recording and returns the ports.
// It is idempotent.
func (s *Session) Close() error { return s.impl.close() }

// Stats of one session.
type Stats struct {
	Packets   [2]uint64 // relayed (RTP and RTCP), by the side they came from
	Bytes     [2]uint64
	Dropped   uint64 // from a source that is not the latched peer (RTP bleed)
	NotRTP    uint64 // not RTP/RTCP version 2, too short, or a payload type the sender did not negotiate
	Drained   uint64 // valid but not forwarded: before Bridge (or EarlyMedia), or no peer to send to yet
	RecordErr string
}

// Source is generated audio: a ringback tone or a music file, encoded for
// one payload type (0 PCMU or 8 PCMA).
type Source interface {
	// Frame fills the next 20 ms (160 bytes) of encoded audio.
	Frame(b []byte)
	PayloadType() uint8
}

// Tone is the ringback cadence of a country ("us": 440+480 Hz 2 s on, 4 s
// off; "eu": 425 Hz 1 s on, 4 s off; "uk": 400+450 Hz 0.4 on 0.2 off 0.4
// on 2 off) for payload type pt.
func Tone(country string, pt uint8) (Source, error) { return newTone(country, pt) }

// Music loops a WAV file (8 kHz mono, 16-bit PCM, µ-law or A-law) for
// payload type pt.
func Music(path string, pt uint8) (Source, error) { return newMusic(path, pt) }
