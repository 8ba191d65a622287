package media

import (
	"net/netip"
	"time"
)

// latchWindow is how long after the first valid packet from a peer (since
// its last SetPeer) the relay still follows a new source address. A NAT
// that rebinds the source port while the call starts, or a phone whose
// first packets leave from another port, is followed; after the window
// the source is locked and anything else is a stranger (RTP bleed,
// AST-2017-005). Three seconds covers the slow starts seen in practice
// (early media, ICE-less phones behind carrier NAT) while keeping the
// time an attacker has to race the real peer short, and it is measured
// from the peer's own first packet, not from SetPeer, so a long ringing
// phase does not use it up.
const latchWindow = 3 * time.Second

// latchState belongs to one endpoint and is guarded by its mu.
type latchState struct {
	peer    *peerState // the SetPeer generation this state was learnt under
	have    bool
	src     netip.AddrPort // the latched source; also the destination toward the peer
	matched bool           // src has the IP the peer's SDP announced
	exact   bool           // src is the SDP address itself: locked at once
	first   int64          // session clock, ns: arrival of the first valid packet
}

// admit decides whether a valid packet from src comes from the peer and
// keeps the destination toward the peer on the learnt source:
//   - the first valid packet latches its source;
//   - a packet from exactly the SDP address (IP and port) locks at once:
//     that peer is not behind a NAT, and following anyone else would let
//     a stranger on the same host or NAT take the call over (two members
//     of one group behind one NAT, say: the loser's early media must not
//     replace the winner's);
//   - otherwise, within the window the most recent source wins, except
//     that a source with the SDP's IP is never replaced by one with
//     another IP (the real peer normally sends from its SDP address; a
//     stranger rarely can);
//   - after the window only the latched source passes.
//
// SetPeer resets the state, so a re-INVITE with a new address opens a new
// window.
func (e *endpoint) admit(src netip.AddrPort, now int64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ps := e.peer.Load()
	if ps == nil {
		return false
	}
	l := &e.latch
	if l.peer != ps {
		*l = latchState{peer: ps}
	}
	if l.have && src == l.src {
		return true
	}
	matched := src.Addr() == ps.sdp.Addr()
	exact := src == ps.sdp
	switch {
	case !l.have:
		l.have, l.first = true, now
	case l.exact:
		return false
	case exact:
		// The advertised address showing up beats whatever was followed.
	case now-l.first >= int64(latchWindow):
		return false
	case l.matched && !matched:
		return false
	}
	l.src, l.matched, l.exact = src, matched, exact
	d := src // a copy, so only a latch change allocates
	e.dest.Store(&d)
	return true
}

// reset installs a new peer (nil: none) and points the destination at its
// SDP address until packets say otherwise.
func (e *endpoint) reset(ps *peerState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.peer.Store(ps)
	e.latch = latchState{peer: ps}
	if ps == nil || !sendable(ps.sdp) {
		e.dest.Store(nil)
		return
	}
	d := ps.sdp
	e.dest.Store(&d)
}

// sendable: an SDP address the relay may send to before anything is
// learnt. c=0.0.0.0 (RFC 2543 hold) and port 0 are not: sending to them
// would hit this host.
func sendable(a netip.AddrPort) bool {
	return a.IsValid() && a.Port() != 0 && !a.Addr().IsUnspecified()
}
