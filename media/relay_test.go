package media

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// call is a one-stream session between two Go peers that know each
// other's SDP, as sip would set it up.
type call struct {
	pool           *Pool
	s              *Session
	caller, member *peer
	toA, toB       netip.AddrPort // relay ports the caller / member send to
}

func newCall(t *testing.T, opts SessionOptions) *call {
	t.Helper()
	p := newTestPool(t, 4)
	c := &call{pool: p, s: newTestSession(t, p, 1, opts), caller: newPeer(t, "127.0.0.1"), member: newPeer(t, "127.0.0.1")}
	c.s.SetPeer(Caller, 0, c.caller.stream())
	c.s.SetPeer(Member, 0, c.member.stream())
	c.toA, c.toB = relayAddr(c.s, Caller, 0), relayAddr(c.s, Member, 0)
	return c
}

func TestRelayBothWaysByteIdentical(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Bridge()
	const n = 50
	for dir, pr := range []struct {
		from, to *peer
		at       netip.AddrPort
	}{{c.caller, c.member, c.toA}, {c.member, c.caller, c.toB}} {
		var sent [][]byte
		for i := range n {
			payload := bytes.Repeat([]byte{byte(i), byte(dir)}, 80)
			pkt := rtpPacket(uint8([]int{0, 8}[i%2]), uint16(1000+i), payload)
			if i == 7 {
				pkt = rtpPacket(101, uint16(1000+i), []byte{1, 0x8a, 0, 160}) // DTMF passes too
				pkt[1] |= 0x80                                                // with the marker bit
			}
			sent = append(sent, pkt)
			pr.from.send(pr.at, pkt)
			time.Sleep(200 * time.Microsecond) // loopback does not reorder, but be gentle on buffers
		}
		got := drain(pr.to.rtp, 200*time.Millisecond)
		if len(got) != n {
			t.Fatalf("direction %d: %d packets arrived, want %d", dir, len(got), n)
		}
		for i := range got {
			if !bytes.Equal(got[i], sent[i]) {
				t.Fatalf("direction %d packet %d differs:\n got %x\nwant %x", dir, i, got[i], sent[i])
			}
		}
	}
	// RTCP both ways, on its own port pair.
	c.caller.sendRTCP(relayRTCP(c.s, Caller, 0), rtcpRR(1))
	if b, from, ok := recv(c.member.rtcp, time.Second); !ok || !bytes.Equal(b, rtcpRR(1)) {
		t.Fatalf("member RTCP: %x %v", b, ok)
	} else if int(from.Port()) != c.s.Ports(Member)[0].RTCP {
		t.Fatalf("RTCP to member came from %v, want the member-side RTCP port", from)
	}
	c.member.sendRTCP(relayRTCP(c.s, Member, 0), rtcpRR(2))
	if b, _, ok := recv(c.caller.rtcp, time.Second); !ok || !bytes.Equal(b, rtcpRR(2)) {
		t.Fatalf("caller RTCP: %x %v", b, ok)
	}
	st := c.s.Stats()
	if st.Packets != [2]uint64{n + 1, n + 1} || st.Dropped != 0 || st.NotRTP != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// The member must see packets from the member-side port it was told in
// SDP, the caller from the caller-side port: that is what makes the relay
// invisible and symmetric RTP work for them.
func TestRelaySourcePorts(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Bridge()
	c.caller.send(c.toA, rtpPacket(0, 1, make([]byte, 160)))
	if _, from, ok := recv(c.member.rtp, time.Second); !ok || from != c.toB {
		t.Fatalf("member got packet from %v (%v), want %v", from, ok, c.toB)
	}
	c.member.send(c.toB, rtpPacket(0, 1, make([]byte, 160)))
	if _, from, ok := recv(c.caller.rtp, time.Second); !ok || from != c.toA {
		t.Fatalf("caller got packet from %v (%v), want %v", from, ok, c.toA)
	}
}

func TestNothingBeforeBridge(t *testing.T) {
	c := newCall(t, SessionOptions{})
	for i := range 5 {
		c.caller.send(c.toA, rtpPacket(0, uint16(i), make([]byte, 160)))
		c.member.send(c.toB, rtpPacket(0, uint16(i), make([]byte, 160)))
	}
	if got := drain(c.member.rtp, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("member got %d packets before Bridge", len(got))
	}
	if got := drain(c.caller.rtp, 50*time.Millisecond); len(got) != 0 {
		t.Fatalf("caller got %d packets before Bridge", len(got))
	}
	if st := c.s.Stats(); st.Drained != 10 || st.Packets != [2]uint64{} {
		t.Fatalf("stats %+v", st)
	}
}

func TestEarlyMediaOnlyMemberToCaller(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.EarlyMedia(true)
	c.caller.send(c.toA, rtpPacket(0, 1, make([]byte, 160)))
	c.member.send(c.toB, rtpPacket(0, 1, make([]byte, 160)))
	if _, _, ok := recv(c.caller.rtp, time.Second); !ok {
		t.Fatal("caller got no early media")
	}
	if got := drain(c.member.rtp, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("member got %d packets from the caller before answer", len(got))
	}
	c.s.EarlyMedia(false)
	c.member.send(c.toB, rtpPacket(0, 2, make([]byte, 160)))
	if got := drain(c.caller.rtp, 100*time.Millisecond); len(got) != 0 {
		t.Fatal("early media still flows after EarlyMedia(false)")
	}
}

func TestNotRTPDropped(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Bridge()
	stun := append([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...)
	bad := [][]byte{
		stun,                        // version 0: pion/rtp would take it
		rtpPacket(0, 1, nil)[:11],   // short
		rtpPacket(96, 1, []byte{1}), // payload type not negotiated
		append([]byte{0x40}, rtpPacket(0, 1, []byte{1})[1:]...), // version 1
	}
	for _, b := range bad {
		c.caller.send(c.toA, b)
	}
	c.caller.sendRTCP(relayRTCP(c.s, Caller, 0), []byte{0x80, 100, 0, 1, 0, 0, 0, 1}) // PT 100 is no RTCP
	c.caller.sendRTCP(relayRTCP(c.s, Caller, 0), rtpPacket(0, 1, []byte{1}))          // RTP on the RTCP port
	waitFor(t, "NotRTP count", func() bool { return c.s.Stats().NotRTP == 6 })
	if got := drain(c.member.rtp, 50*time.Millisecond); len(got) != 0 {
		t.Fatalf("member got %d non-RTP packets", len(got))
	}
	if got := drain(c.member.rtcp, 10*time.Millisecond); len(got) != 0 {
		t.Fatalf("member got %d non-RTCP packets", len(got))
	}
}

// A stranger's packets to a relay port, once the peer is latched, are
// dropped and counted, and the destination does not move (RTP bleed).
func TestStrangerNotRelayed(t *testing.T) {
	clk := newFakeClock()
	c := newCall(t, SessionOptions{Now: clk.Now})
	c.s.Bridge()
	c.caller.send(c.toA, rtpPacket(0, 1, make([]byte, 160)))
	if _, _, ok := recv(c.member.rtp, time.Second); !ok {
		t.Fatal("no audio")
	}
	c.member.send(c.toB, rtpPacket(0, 1, make([]byte, 160)))
	if _, _, ok := recv(c.caller.rtp, time.Second); !ok {
		t.Fatal("no audio")
	}
	clk.Advance(latchWindow)
	stranger := newPeer(t, "127.0.0.1")
	for i := range 3 {
		stranger.send(c.toA, rtpPacket(0, uint16(i), make([]byte, 160)))
		stranger.send(c.toB, rtpPacket(0, uint16(i), make([]byte, 160)))
	}
	waitFor(t, "dropped count", func() bool { return c.s.Stats().Dropped == 6 })
	if got := drain(c.member.rtp, 50*time.Millisecond); len(got) != 0 {
		t.Fatalf("member got %d stranger packets", len(got))
	}
	if got := drain(c.caller.rtp, 10*time.Millisecond); len(got) != 0 {
		t.Fatalf("caller got %d stranger packets", len(got))
	}
	// The real peers still talk, and to the right addresses.
	c.member.send(c.toB, rtpPacket(0, 9, make([]byte, 160)))
	if _, _, ok := recv(c.caller.rtp, time.Second); !ok {
		t.Fatal("caller lost audio after the stranger")
	}
	if got := drain(stranger.rtp, 20*time.Millisecond); len(got) != 0 {
		t.Fatal("stranger got audio")
	}
}

// Inside the latch window a source with the SDP's IP is not replaced by
// one with another IP.
func TestStrangerOtherIPDuringWindow(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Bridge()
	c.caller.send(c.toA, rtpPacket(0, 1, make([]byte, 160)))
	if _, _, ok := recv(c.member.rtp, time.Second); !ok {
		t.Fatal("no audio")
	}
	stranger := newPeer(t, "127.0.0.2")
	stranger.send(c.toA, rtpPacket(0, 2, make([]byte, 160)))
	waitFor(t, "dropped count", func() bool { return c.s.Stats().Dropped == 1 })
	c.member.send(c.toB, rtpPacket(0, 1, make([]byte, 160)))
	if _, _, ok := recv(c.caller.rtp, time.Second); !ok {
		t.Fatal("caller lost audio")
	}
	if got := drain(stranger.rtp, 20*time.Millisecond); len(got) != 0 {
		t.Fatal("stranger got audio")
	}
}

// A caller behind NAT announces a private address, sends from another,
// and its NAT rebinds the port before latching completes: it still gets
// audio, at the newest binding; once locked the old binding is refused.
func TestNATRebindingBeforeLatch(t *testing.T) {
	clk := newFakeClock()
	c := newCall(t, SessionOptions{Now: clk.Now})
	sdp := c.caller.stream()
	sdp.Addr = netip.MustParseAddrPort("127.0.0.3:4000") // the phone's private address: nobody there
	sdp.RTCP = netip.MustParseAddrPort("127.0.0.3:4001")
	c.s.SetPeer(Caller, 0, sdp)
	c.s.Bridge()

	first := newPeer(t, "127.0.0.1")
	first.send(c.toA, rtpPacket(0, 1, make([]byte, 160)))
	if _, _, ok := recv(c.member.rtp, time.Second); !ok {
		t.Fatal("member got nothing from the NATed caller")
	}
	c.member.send(c.toB, rtpPacket(0, 1, []byte("to-first")))
	if b, _, ok := recv(first.rtp, time.Second); !ok || !bytes.HasSuffix(b, []byte("to-first")) {
		t.Fatal("audio did not follow the caller's real source")
	}

	clk.Advance(time.Second)
	rebound := newPeer(t, "127.0.0.1")
	rebound.send(c.toA, rtpPacket(0, 2, make([]byte, 160)))
	if _, _, ok := recv(c.member.rtp, time.Second); !ok {
		t.Fatal("member got nothing after the rebinding")
	}
	c.member.send(c.toB, rtpPacket(0, 2, []byte("to-rebound")))
	if b, _, ok := recv(rebound.rtp, time.Second); !ok || !bytes.HasSuffix(b, []byte("to-rebound")) {
		t.Fatal("audio did not follow the rebinding")
	}

	clk.Advance(latchWindow)
	first.send(c.toA, rtpPacket(0, 3, make([]byte, 160)))
	waitFor(t, "dropped count", func() bool { return c.s.Stats().Dropped == 1 })
	if got := drain(c.member.rtp, 30*time.Millisecond); len(got) != 0 {
		t.Fatal("old binding relayed after the window")
	}
}

// A re-INVITE moves the member: SetPeer points the relay at the new
// address at once and reopens latching there.
func TestSetPeerNewAddress(t *testing.T) {
	clk := newFakeClock()
	c := newCall(t, SessionOptions{Now: clk.Now})
	c.s.Bridge()
	c.member.send(c.toB, rtpPacket(0, 1, make([]byte, 160)))
	if _, _, ok := recv(c.caller.rtp, time.Second); !ok {
		t.Fatal("no audio")
	}
	clk.Advance(2 * latchWindow) // locked on the old member address

	moved := newPeer(t, "127.0.0.1")
	c.s.SetPeer(Member, 0, moved.stream())
	c.caller.send(c.toA, rtpPacket(0, 2, []byte("hello")))
	if b, _, ok := recv(moved.rtp, time.Second); !ok || !bytes.HasSuffix(b, []byte("hello")) {
		t.Fatal("caller audio did not go to the new address")
	}
	moved.send(c.toB, rtpPacket(0, 3, make([]byte, 160)))
	if _, _, ok := recv(c.caller.rtp, time.Second); !ok {
		t.Fatal("new address not accepted")
	}
	clk.Advance(2 * latchWindow)
	c.member.send(c.toB, rtpPacket(0, 4, make([]byte, 160))) // the old address is a stranger now
	waitFor(t, "dropped count", func() bool { return c.s.Stats().Dropped == 1 })
	if got := drain(c.caller.rtp, 30*time.Millisecond); len(got) != 0 {
		t.Fatal("old member address still relayed")
	}
}

func TestSetPeerPortZeroStopsStream(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Bridge()
	st := c.member.stream()
	st.Port = 0
	c.s.SetPeer(Member, 0, st)
	c.caller.send(c.toA, rtpPacket(0, 1, make([]byte, 160)))
	waitFor(t, "drained count", func() bool { return c.s.Stats().Drained == 1 })
	if got := drain(c.member.rtp, 30*time.Millisecond); len(got) != 0 {
		t.Fatal("disabled stream relayed")
	}
}

func TestHoldAndIdle(t *testing.T) {
	clk := newFakeClock()
	c := newCall(t, SessionOptions{Now: clk.Now})
	clk.Advance(10 * time.Second)
	if d := c.s.Idle(); d != 0 {
		t.Fatalf("Idle before Bridge = %v", d)
	}
	c.s.Bridge()
	clk.Advance(5 * time.Second)
	if d := c.s.Idle(); d != 5*time.Second {
		t.Fatalf("Idle 5 s after Bridge = %v", d)
	}
	c.caller.send(c.toA, rtpPacket(0, 1, make([]byte, 160)))
	recv(c.member.rtp, time.Second)
	if d := c.s.Idle(); d != 0 {
		t.Fatalf("Idle right after a packet = %v", d)
	}
	clk.Advance(3 * time.Second)
	c.member.send(c.toB, rtpPacket(0, 1, make([]byte, 160))) // the other side counts as well
	recv(c.caller.rtp, time.Second)
	if d := c.s.Idle(); d != 0 {
		t.Fatalf("Idle right after a member packet = %v", d)
	}
	c.s.SetHold(true)
	clk.Advance(time.Minute)
	if d := c.s.Idle(); d != 0 {
		t.Fatalf("Idle while held = %v", d)
	}
	c.s.SetHold(false)
	if d := c.s.Idle(); d != 0 {
		t.Fatalf("Idle right after resume = %v (the hold counted)", d)
	}
	clk.Advance(2 * time.Second)
	if d := c.s.Idle(); d != 2*time.Second {
		t.Fatalf("Idle 2 s after resume = %v", d)
	}
	c.s.SetHold(false) // an offer/answer that changes nothing (session refresh)
	if d := c.s.Idle(); d != 2*time.Second {
		t.Fatalf("Idle after a refresh = %v: SetHold(false) when not held restarted it", d)
	}
}

func TestTwoStreams(t *testing.T) {
	p := newTestPool(t, 8)
	s := newTestSession(t, p, 2, SessionOptions{})
	a0, a1, b0, b1 := newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1"), newPeer(t, "127.0.0.1")
	v := func(pr *peer) Stream { st := pr.stream(); st.Media = "video"; st.Payloads = []uint8{96}; return st }
	s.SetPeer(Caller, 0, a0.stream())
	s.SetPeer(Caller, 1, v(a1))
	s.SetPeer(Member, 0, b0.stream())
	s.SetPeer(Member, 1, v(b1))
	s.Bridge()
	a1.send(relayAddr(s, Caller, 1), rtpPacket(96, 1, []byte("video")))
	if b, _, ok := recv(b1.rtp, time.Second); !ok || !bytes.HasSuffix(b, []byte("video")) {
		t.Fatal("video stream not relayed to the member's video port")
	}
	if got := drain(b0.rtp, 30*time.Millisecond); len(got) != 0 {
		t.Fatal("video leaked into the audio stream")
	}
	if p.InUse() != 4 {
		t.Fatalf("InUse = %d, want 4 pairs for 2 streams", p.InUse())
	}
}

func TestCloseIdempotentAndReturnsPorts(t *testing.T) {
	p := newTestPool(t, 4)
	s, err := p.NewSession(1, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Play(mustTone(t, "us", 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if p.InUse() != 0 {
		t.Fatalf("InUse = %d after Close", p.InUse())
	}
	s.Play(mustTone(t, "us", 0)) // after Close: nothing starts
	s.SetPeer(Caller, 0, Stream{})
	s.Bridge()
	if err := s.Record(t.TempDir() + "/x.wav"); err == nil {
		t.Fatal("Record after Close succeeded")
	}
}

// The per-packet path allocates nothing.
func TestRelayNoAllocs(t *testing.T) {
	c := newCall(t, SessionOptions{})
	c.s.Bridge()
	e := c.s.impl.eps[Caller][0][kindRTP]
	pkt := rtpPacket(0, 1, make([]byte, 160))
	src := c.caller.addr()
	c.s.impl.handle(e, pkt, src) // latch first: that one may allocate
	allocs := testing.AllocsPerRun(1000, func() { c.s.impl.handle(e, pkt, src) })
	if allocs != 0 {
		t.Fatalf("%v allocations per relayed packet", allocs)
	}
	drain(c.member.rtp, 10*time.Millisecond)
}

func mustTone(t testing.TB, country string, pt uint8) Source {
	t.Helper()
	src, err := Tone(country, pt)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func ExampleSession() {
	pool, err := NewPool(netip.MustParseAddr("127.0.0.1"), 41000, 41099)
	if err != nil {
		panic(err)
	}
	s, err := pool.NewSession(1, SessionOptions{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	fmt.Println(len(s.Ports(Caller)), pool.InUse())
	// Output: 1 2
}
