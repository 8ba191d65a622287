package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/media"
	"github.com/ringroute/ringroute/routing"
)

// callMedia is a relayed call's media: the relay session and the SDP each
// side has been given. Every SDP ringroute sends carries its own address
// and the session's ports of the receiving side, so the caller and the
// members never learn each other's address.
type callMedia struct {
	c    *call
	sess *media.Session
	addr netip.Addr // what our SDP shows

	mu       sync.Mutex
	offer    *media.Description // the caller's offer; nil for a delayed offer
	origin   [2]media.Origin    // the o= we write, per side
	early    *uac               // the leg whose early media the caller hears
	ringing  bool               // 183 with SDP sent (early media or ringback)
	played   bool               // tone or music started
	watching bool
	path     string // recording
	legOffer []byte // memberOffer, computed once: every leg gets the same
}

// sdpAddr is the address our SDP shows: advertise when it is an IP, else
// the media bind address unless it is a wildcard, else the SIP host.
func (s *Server) sdpAddr(cfg *config.Config) netip.Addr {
	if a, err := netip.ParseAddr(cfg.Advertise); err == nil {
		return a
	}
	if s.advertiseIP.IsValid() {
		return s.advertiseIP
	}
	if a := cfg.Media.Address; a.IsValid() && !a.IsUnspecified() {
		return a
	}
	if a, err := netip.ParseAddr(s.host); err == nil {
		return a
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// isSDP reports whether a message body is an SDP session description.
func isSDP(m sipmsg.Message) bool {
	return len(m.Body()) > 0 && strings.HasPrefix(strings.ToLower(contentType(m)), "application/sdp")
}

// newCallMedia sets up the relay for a call from the caller's INVITE. It
// returns the SIP code to refuse the call with when it cannot: 488 for an
// offer we cannot read, 503 when the port pool is exhausted.
func (s *Server) newCallMedia(c *call, req *sipmsg.Request) (*callMedia, int) {
	m := &callMedia{c: c, addr: s.sdpAddr(c.cfg)}
	id := s.newRand().Uint64() >> 1
	m.origin = [2]media.Origin{{ID: id, Version: 1}, {ID: id + 1, Version: 1}}
	streams := 1
	if isSDP(req) {
		d, err := media.ParseSDP(req.Body())
		if err != nil {
			c.log.Info("unusable SDP offer", zap.Error(err))
			return nil, 488
		}
		m.offer = d
		streams = len(d.Streams())
	}
	sess, err := s.pool.NewSession(streams, media.SessionOptions{})
	if err != nil {
		c.log.Warn("cannot relay media; refusing the call", zap.Error(err))
		s.counters.poolExhausted.Add(1)
		s.metrics.PortPoolExhausted()
		return nil, 503
	}
	m.sess = sess
	if m.offer != nil {
		m.setPeers(media.Caller, m.offer)
	}
	return m, 0
}

// setPeers tells the session where side's streams are, from its SDP, and
// whether the call is on hold.
func (m *callMedia) setPeers(side media.Side, d *media.Description) {
	held := false
	for i, st := range d.Streams() {
		if i >= len(m.sess.Ports(side)) {
			break
		}
		m.sess.SetPeer(side, i, st)
		if st.Port != 0 && st.Direction != "" && st.Direction != "sendrecv" {
			held = true
		}
	}
	m.sess.SetHold(held)
}

// rewrite turns d into the SDP for side: our address, side's ports, our
// origin for side with a new version. Streams the session has no ports for
// (a re-INVITE adding video) are refused with port 0.
func (m *callMedia) rewrite(side media.Side, d *media.Description) []byte {
	ports := m.sess.Ports(side)
	n := len(d.Streams())
	if n > len(ports) {
		ports = append(append([]media.Ports(nil), ports...), make([]media.Ports, n-len(ports))...)
	}
	m.mu.Lock()
	m.origin[side].Version++
	o := m.origin[side]
	m.mu.Unlock()
	return d.Rewrite(m.addr, ports[:n], o)
}

// memberOffer is the offer every leg gets: the caller's, pointed at the
// member side of the relay (all ringing legs share it).
func (m *callMedia) memberOffer() []byte {
	if m.offer == nil {
		return nil
	}
	m.mu.Lock()
	body := m.legOffer
	m.mu.Unlock()
	if body == nil {
		body = m.rewrite(media.Member, m.offer)
		m.mu.Lock()
		m.legOffer = body
		m.mu.Unlock()
	}
	return body
}

// onProvisional sees a leg's 18x. With ringback passthrough, the first
// one carrying SDP becomes the caller's early media: the caller gets 183
// with our SDP and hears that member's ringback through the relay.
func (m *callMedia) onProvisional(l *uac, res *sipmsg.Response) {
	if g := m.group(l); res.StatusCode == 100 || !isSDP(res) || (g != nil && g.Ringback != "passthrough") {
		return
	}
	d, err := media.ParseSDP(res.Body())
	if err != nil {
		l.log.Info("unusable SDP in 18x; no early media", zap.Error(err))
		return
	}
	m.mu.Lock()
	if m.early != nil || m.played {
		m.mu.Unlock()
		return
	}
	m.early = l
	m.mu.Unlock()
	m.setPeers(media.Member, d)
	m.sess.EarlyMedia(true)
	m.c.a.progress(m.rewrite(media.Caller, d))
}

// ring is routing's RingCaller in relay mode: ringback tone or music
// answer early with 183 and our own audio; passthrough sends 180 unless a
// member's early media already went out.
func (m *callMedia) ring(g *config.Group) bool {
	m.mu.Lock()
	early := m.early != nil
	m.mu.Unlock()
	if early {
		// A member's early media is already on the caller's port (a
		// fallback group's passthrough, say): no tone on top of it.
		return true
	}
	if g == nil || (g.Ringback != "tone" && g.Ringback != "music") || m.offer == nil {
		return false
	}
	pt, ok := g711(m.offer)
	if !ok {
		m.c.log.Info("caller offers no PCMU/PCMA; plain 180 instead of ringback")
		return false
	}
	var src media.Source
	var err error
	if g.Ringback == "tone" {
		src, err = media.Tone(g.RingbackTone, pt)
	} else {
		src, err = m.c.s.musics.Music(g.MusicFile, pt)
	}
	if err != nil {
		m.c.log.Warn("ringback unavailable; plain 180", zap.Error(err))
		return false
	}
	m.mu.Lock()
	m.played = true
	m.mu.Unlock()
	m.c.a.progress(m.rewrite(media.Caller, m.offer))
	m.sess.Play(src)
	return true
}

// g711 picks the payload type ringback is sent in: the first of PCMU and
// PCMA the caller offers in its first audio stream.
func g711(d *media.Description) (uint8, bool) {
	for _, st := range d.Streams() {
		if st.Media != "audio" || st.Port == 0 {
			continue
		}
		for _, pt := range st.Payloads {
			if pt == 0 || pt == 8 {
				return pt, true
			}
		}
		return 0, false
	}
	return 0, false
}

// answer prepares the caller's 200 from the winner's 2xx: the relay is
// pointed at the winner and bridged. It returns the body for the caller.
func (m *callMedia) answer(l bridged, body []byte) ([]byte, error) {
	d, err := media.ParseSDP(body)
	if err != nil {
		return nil, fmt.Errorf("winner's SDP: %w", err)
	}
	m.setPeers(media.Member, d)
	m.sess.Bridge()
	m.watch()
	return m.rewrite(media.Caller, d), nil
}

// ackAnswer: for a delayed offer the caller's ACK carries the answer to
// the winner's offer; it is pointed at the member side.
func (m *callMedia) ackAnswer(body []byte) []byte {
	d, err := media.ParseSDP(body)
	if err != nil {
		return nil
	}
	m.setPeers(media.Caller, d)
	return m.rewrite(media.Member, d)
}

// group is the config of the group a leg rings for.
func (m *callMedia) group(l bridged) *config.Group {
	if l == nil {
		return nil
	}
	return m.c.cfg.Group(l.groupName())
}

// record starts the recording of an answered call if its group asks for
// one. It touches the disk, so the caller has its 200 first and no lock is
// held.
func (m *callMedia) record(l bridged) {
	if g := m.group(l); g != nil && g.Record.Enabled {
		m.startRecording(g)
	}
}

func (m *callMedia) startRecording(g *config.Group) {
	name := fmt.Sprintf("%s-%s.wav", time.Now().UTC().Format("20060102T150405Z"), safeName(m.c.a.callID))
	path := filepath.Join(g.Record.Dir, name)
	if err := os.MkdirAll(g.Record.Dir, 0o750); err != nil {
		m.c.log.Warn("recording not started", zap.Error(err))
		m.c.s.counters.recordFailures.Add(1)
		m.c.s.metrics.RecordingFailed()
		return
	}
	if err := m.sess.Record(path); errors.Is(err, media.ErrClosed) {
		return // the call ended while the file was opened
	} else if err != nil {
		m.c.log.Warn("recording not started", zap.Error(err))
		m.c.s.counters.recordFailures.Add(1)
		m.c.s.metrics.RecordingFailed()
		return
	}
	m.mu.Lock()
	m.path = path
	m.mu.Unlock()
}

// safeName keeps a Call-ID usable in a file name.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}

// watch starts the rtp_timeout watchdog once the call is bridged.
func (m *callMedia) watch() {
	timeout := m.c.cfg.Media.RTPTimeout
	m.mu.Lock()
	if m.watching || timeout <= 0 {
		m.mu.Unlock()
		return
	}
	m.watching = true
	m.mu.Unlock()
	step := min(time.Second, timeout/4)
	m.c.s.spawn(func() {
		stopped := m.c.a.stopped.wait()
		t := time.NewTicker(step)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if m.c.a.hasEnded() {
					// The caller's side is over (BYE either way); the
					// call only waits for a member's transaction to
					// end, and rtp_timeout has nothing left to hang up.
					return
				}
				if m.sess.Idle() >= timeout {
					m.c.log.Info("no RTP either way; hanging up", zap.Duration("rtp_timeout", timeout))
					m.c.post(routing.MediaTimeout{})
					return
				}
			case <-stopped:
				return
			case <-m.c.s.closing:
				return
			}
		}
	})
}

// inDialog rewrites a relayed in-dialog body from side from toward side
// to; bodies that are not SDP pass unchanged. ok is false for SDP we
// cannot read (the request is refused with 488).
func (m *callMedia) inDialog(from, to media.Side, msg sipmsg.Message) (body []byte, ok bool) {
	if !isSDP(msg) {
		return msg.Body(), true
	}
	d, err := media.ParseSDP(msg.Body())
	if err != nil {
		m.c.log.Info("unusable SDP in a relayed message", zap.Error(err))
		return nil, false
	}
	m.setPeers(from, d)
	return m.rewrite(to, d), true
}

// close releases the ports; the recording is finished by the session.
func (m *callMedia) close() string {
	if err := m.sess.Close(); err != nil {
		m.c.log.Debug("media close", zap.Error(err))
	}
	st := m.sess.Stats()
	if st.RecordErr != "" {
		m.c.log.Warn("recording incomplete", zap.String("error", st.RecordErr))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.path
}
