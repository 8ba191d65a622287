package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

type kind int

const (
	kindRTP kind = iota
	kindRTCP
)

// bufSize holds any RTP packet that fits an Ethernet MTU with room to
// spare; a datagram that fills it is taken as truncated and dropped.
const bufSize = 2048

// peerState is what SetPeer said about one endpoint's peer. It is
// immutable: SetPeer installs a new one, which is also how the latch knows
// its window reopened.
type peerState struct {
	sdp    netip.AddrPort
	pts    [2]uint64 // negotiated RTP payload types, a bit each
	codecs map[uint8]string
	media  string
}

func (p *peerState) hasPT(pt byte) bool { return p.pts[pt>>6]&(1<<(pt&63)) != 0 }

// endpoint is one socket: stream i, side, RTP or RTCP.
type endpoint struct {
	side   Side
	stream int
	kind   kind
	conn   *net.UDPConn
	other  *endpoint // same stream and kind on the other side

	peer atomic.Pointer[peerState]
	dest atomic.Pointer[netip.AddrPort] // where packets toward this side's peer go

	mu    sync.Mutex // latch; taken per packet, uncontended but for SetPeer
	latch latchState
}

// sideCounters sit on their own cache line: the two sides' readers run
// on different cores.
type sideCounters struct {
	packets, bytes atomic.Uint64
	_              [48]byte
}

type session struct {
	pool *poolImpl
	now  func() time.Time
	base time.Time

	pairs [2][]pair         // by side, then stream
	eps   [2][][2]*endpoint // by side, stream, kind
	wg    sync.WaitGroup    // the socket readers

	bridged, early, held atomic.Bool
	lastRTP              atomic.Int64 // session clock, ns

	count                    [2]sideCounters
	dropped, notRTP, drained atomic.Uint64
	recErr                   atomic.Pointer[string]
	rec                      atomic.Pointer[recorder]

	mu       sync.Mutex // Play, StopPlay, Record against Close
	closed   bool
	player   *player
	once     sync.Once
	closeErr error
}

func (p *poolImpl) newSession(streams int, opts SessionOptions) (*Session, error) {
	if streams < 1 {
		return nil, fmt.Errorf("media session: %d streams", streams)
	}
	s := &session{pool: p, now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	s.base = s.now()
	for side := range 2 {
		for range streams {
			pr, err := p.allocate()
			if err != nil {
				for _, ps := range s.pairs {
					for _, pr := range ps {
						p.release(pr)
					}
				}
				return nil, fmt.Errorf("media session of %d streams: %w", streams, err)
			}
			s.pairs[side] = append(s.pairs[side], pr)
		}
	}
	for side := range 2 {
		s.eps[side] = make([][2]*endpoint, streams)
		for i, pr := range s.pairs[side] {
			s.eps[side][i][kindRTP] = &endpoint{side: Side(side), stream: i, kind: kindRTP, conn: pr.rtp}
			s.eps[side][i][kindRTCP] = &endpoint{side: Side(side), stream: i, kind: kindRTCP, conn: pr.rtcp}
		}
	}
	for i := range streams {
		for k := range 2 {
			a, b := s.eps[Caller][i][k], s.eps[Member][i][k]
			a.other, b.other = b, a
		}
	}
	for side := range 2 {
		for i := range streams {
			for k := range 2 {
				s.wg.Add(1)
				go s.serve(s.eps[side][i][k])
			}
		}
	}
	return &Session{impl: s}, nil
}

func (s *session) nanos() int64 { return int64(s.now().Sub(s.base)) }

func (s *session) ports(side Side) []Ports {
	out := make([]Ports, len(s.pairs[side]))
	for i, pr := range s.pairs[side] {
		out[i] = Ports{RTP: pr.port, RTCP: pr.port + 1}
	}
	return out
}

// serve is one socket's reader. It owns its buffer, so nothing is
// allocated per packet.
//
// Batched I/O (recvmmsg/sendmmsg through golang.org/x/net/ipv4) does not
// pay here, and is not used. Measured with bench/media on the 2-core VM
// (the variant is commit af9151d: go run ./bench/media -batch): at
// 100/300/600 calls the relay forwarded 45k/56k/63k packets per second
// per core batched against 61k/78k/78k with this loop, i.e. about 30%
// more CPU for the same traffic. A per-call socket at 50 packets/s almost
// never holds more than one datagram when its reader wakes, so a batch is
// one message plus x/net's per-message net.Addr allocation and the
// extra layer; batching would only pay on a socket shared by many calls.
func (s *session) serve(e *endpoint) {
	defer s.wg.Done()
	buf := make([]byte, bufSize)
	for {
		n, src, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (ENOBUFS, an ICMP error surfacing): do not spin.
			time.Sleep(time.Millisecond)
			continue
		}
		s.handle(e, buf[:n], src)
	}
}

// validRTP: long enough for the fixed header, version 2, and a payload
// type the sending peer negotiated (marker bit masked off).
func validRTP(b []byte, ps *peerState) bool {
	return len(b) >= 12 && len(b) < bufSize && b[0]>>6 == 2 && ps.hasPT(b[1]&0x7f)
}

// validRTCP: version 2 and a packet type of RFC 3550/4585 (SR, RR, SDES,
// BYE, APP, RTPFB, PSFB). Eight bytes is the smallest RTCP packet, an RR
// without report blocks.
func validRTCP(b []byte) bool {
	return len(b) >= 8 && len(b) < bufSize && b[0]>>6 == 2 && b[1] >= 200 && b[1] <= 206
}

// handle is everything the relay does with one datagram.
func (s *session) handle(e *endpoint, b []byte, src netip.AddrPort) {
	o, d, ps, now, ok := s.route(e, b, src)
	if !ok {
		return
	}
	// Counted before the write, so whoever sees the packet arrive also
	// sees it in Stats; a failed write takes it back.
	c := &s.count[e.side]
	c.packets.Add(1)
	c.bytes.Add(uint64(len(b)))
	if _, err := o.conn.WriteToUDPAddrPort(b, d); err != nil {
		c.packets.Add(^uint64(0))
		c.bytes.Add(^uint64(len(b) - 1))
		s.drained.Add(1)
		return
	}
	s.sent(e, b, ps, now)
}

// route validates a datagram from e's peer, latches, and says where it
// goes: out of o's socket to d. Drops are counted here.
func (s *session) route(e *endpoint, b []byte, src netip.AddrPort) (o *endpoint, d netip.AddrPort, ps *peerState, now int64, ok bool) {
	ps = e.peer.Load()
	if ps == nil {
		s.drained.Add(1) // no SDP from that side yet: nothing is expected
		return
	}
	if e.kind == kindRTP && !validRTP(b, ps) || e.kind == kindRTCP && !validRTCP(b) {
		s.notRTP.Add(1)
		return
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	now = s.nanos()
	if !e.admit(src, now) {
		s.dropped.Add(1)
		return
	}
	bridged := s.bridged.Load()
	if bridged && e.kind == kindRTP {
		s.lastRTP.Store(now)
	}
	if !bridged && (e.side != Member || !s.early.Load()) {
		s.drained.Add(1)
		return
	}
	o = e.other
	dp := o.dest.Load()
	if dp == nil {
		s.drained.Add(1)
		return
	}
	return o, *dp, ps, now, true
}

// sent hands a forwarded packet to the recorder.
func (s *session) sent(e *endpoint, b []byte, ps *peerState, now int64) {
	if e.kind == kindRTP {
		if r := s.rec.Load(); r != nil && r.stream == e.stream {
			r.push(e.side, b, ps, now)
		}
	}
}

func (s *session) setPeer(side Side, i int, st Stream) {
	if side != Caller && side != Member || i < 0 || i >= len(s.eps[side]) {
		return
	}
	rtp, rtcp := s.eps[side][i][kindRTP], s.eps[side][i][kindRTCP]
	if st.Port == 0 {
		rtp.reset(nil)
		rtcp.reset(nil)
		return
	}
	ps := &peerState{sdp: unmapAP(st.Addr), codecs: st.Codecs, media: st.Media}
	for _, pt := range st.Payloads {
		if pt < 128 {
			ps.pts[pt>>6] |= 1 << (pt & 63)
		}
	}
	rc := unmapAP(st.RTCP)
	if !rc.IsValid() && ps.sdp.IsValid() && ps.sdp.Port() < 65535 {
		rc = netip.AddrPortFrom(ps.sdp.Addr(), ps.sdp.Port()+1)
	}
	rtp.reset(ps)
	rtcp.reset(&peerState{sdp: rc, media: st.Media})
}

func unmapAP(a netip.AddrPort) netip.AddrPort {
	if !a.IsValid() {
		return a
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (s *session) earlyMedia(on bool) { s.early.Store(on) }

func (s *session) bridge() {
	s.lastRTP.Store(s.nanos())
	s.bridged.Store(true)
	s.stopPlay()
}

func (s *session) setHold(held bool) {
	if held {
		s.held.Store(true)
		return
	}
	// Resuming starts a fresh idle period: the silence of the hold must
	// not count toward rtp_timeout. Only a real resume does: sip calls
	// SetHold(false) on every offer/answer, and a session refresh of a
	// dead call must not postpone its timeout.
	now := s.nanos()
	if s.held.Load() {
		s.lastRTP.Store(now)
		s.held.Store(false)
	}
}

func (s *session) idle() time.Duration {
	if !s.bridged.Load() || s.held.Load() {
		return 0
	}
	return max(0, time.Duration(s.nanos()-s.lastRTP.Load()))
}

func (s *session) stats() Stats {
	st := Stats{
		Dropped: s.dropped.Load(),
		NotRTP:  s.notRTP.Load(),
		Drained: s.drained.Load(),
	}
	for i := range 2 {
		st.Packets[i] = s.count[i].packets.Load()
		st.Bytes[i] = s.count[i].bytes.Load()
	}
	if p := s.recErr.Load(); p != nil {
		st.RecordErr = *p
	}
	return st
}

// mediaStream is the stream generated audio and recordings use: the
// first audio stream of the caller's SDP, else the first.
func (s *session) mediaStream() int {
	for i, e := range s.eps[Caller] {
		if ps := e[kindRTP].peer.Load(); ps != nil && ps.media == "audio" {
			return i
		}
	}
	return 0
}

func (s *session) close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		p := s.player
		s.player = nil
		s.mu.Unlock()
		if p != nil {
			p.halt()
		}
		for _, prs := range s.pairs {
			for _, pr := range prs {
				pr.rtp.Close()
				pr.rtcp.Close()
			}
		}
		s.wg.Wait()
		if r := s.rec.Swap(nil); r != nil {
			s.closeErr = r.finish(s.nanos())
		}
		for _, prs := range s.pairs {
			for _, pr := range prs {
				s.pool.give(pr.port)
			}
		}
	})
	return s.closeErr
}
