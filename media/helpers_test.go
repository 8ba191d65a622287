package media

import (
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// testPorts gives each test its own range so a port still in TIME_WAIT-like
// use by the kernel or by another package's tests is simply skipped.
var testPortBase atomic.Int32

func init() { testPortBase.Store(23000) }

// newTestPool makes a pool of pairs on loopback and, when the test ends,
// checks that every pair came back and no goroutine outlived it.
func newTestPool(t testing.TB, pairs int) *Pool {
	t.Helper()
	lo := int(testPortBase.Add(int32(2*pairs+20))) - 2*pairs - 20
	p, err := NewPool(loopback, lo, lo+2*pairs-1)
	if err != nil {
		t.Fatal(err)
	}
	checkGoroutines(t)
	t.Cleanup(func() {
		if n := p.InUse(); n != 0 {
			t.Errorf("%d port pairs still in use after the test", n)
		}
	})
	return p
}

// checkGoroutines fails the test if, once it and its cleanups are done,
// more goroutines run than before it started. Registered first, so its
// cleanup runs last (after every Session.Close).
func checkGoroutines(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines after the test, %d before\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
	})
}

func newTestSession(t testing.TB, p *Pool, streams int, opts SessionOptions) *Session {
	t.Helper()
	s, err := p.NewSession(streams, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fakeClock is a SessionOptions.Now that moves only when told.
type fakeClock struct {
	base time.Time
	off  atomic.Int64
}

func newFakeClock() *fakeClock { return &fakeClock{base: time.Now()} }

func (c *fakeClock) Now() time.Time          { return c.base.Add(time.Duration(c.off.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// peer is a Go RTP endpoint: an RTP and an RTCP socket.
type peer struct {
	t         testing.TB
	rtp, rtcp *net.UDPConn
}

func newPeer(t testing.TB, ip string) *peer {
	t.Helper()
	a := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0))
	c1, err := net.ListenUDP("udp4", a)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := net.ListenUDP("udp4", a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return &peer{t: t, rtp: c1, rtcp: c2}
}

func (p *peer) addr() netip.AddrPort     { return p.rtp.LocalAddr().(*net.UDPAddr).AddrPort() }
func (p *peer) rtcpAddr() netip.AddrPort { return p.rtcp.LocalAddr().(*net.UDPAddr).AddrPort() }

// stream is what the peer's SDP would say: PCMU, PCMA, telephone-event.
func (p *peer) stream() Stream {
	return Stream{
		Media: "audio", Port: int(p.addr().Port()), Addr: p.addr(), RTCP: p.rtcpAddr(),
		Payloads: []uint8{0, 8, 101}, Codecs: map[uint8]string{0: "PCMU", 8: "PCMA", 101: "telephone-event"},
		Direction: "sendrecv",
	}
}

func (p *peer) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.rtp.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

func (p *peer) sendRTCP(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.rtcp.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

// recv waits up to d for a packet on c.
func recv(c *net.UDPConn, d time.Duration) ([]byte, netip.AddrPort, bool) {
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}, false
	}
	return buf[:n], from, true
}

// drain reads until the socket is quiet for d (or 3 s passed) and
// returns what came.
func drain(c *net.UDPConn, d time.Duration) [][]byte {
	var out [][]byte
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		b, _, ok := recv(c, d)
		if !ok {
			return out
		}
		out = append(out, b)
	}
	return out
}

func rtpPacket(pt uint8, seq uint16, payload []byte) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0x1234}, Payload: payload}
	b, err := p.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// rtcpRR is a receiver report without report blocks.
func rtcpRR(ssrc uint32) []byte {
	return []byte{0x80, 201, 0, 1, byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc)}
}

func relayAddr(s *Session, side Side, i int) netip.AddrPort {
	return netip.AddrPortFrom(loopback, uint16(s.Ports(side)[i].RTP))
}

func relayRTCP(s *Session, side Side, i int) netip.AddrPort {
	return netip.AddrPortFrom(loopback, uint16(s.Ports(side)[i].RTCP))
}

// waitFor polls cond for up to 2 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
