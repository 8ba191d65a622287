package media

import (
	"testing"
	"time"
)

func benchCall(b *testing.B) *call {
	p := newTestPool(b, 4)
	c := &call{pool: p, s: newTestSession(b, p, 1, SessionOptions{}), caller: newPeer(b, "127.0.0.1"), member: newPeer(b, "127.0.0.1")}
	c.s.SetPeer(Caller, 0, c.caller.stream())
	c.s.SetPeer(Member, 0, c.member.stream())
	c.toA, c.toB = relayAddr(c.s, Caller, 0), relayAddr(c.s, Member, 0)
	c.s.Bridge()
	return c
}

// BenchmarkRelay measures the relay's cost per packet:
//   - handle: validation, latch, counters and the sendto of one packet, as
//     the socket reader does after its read (the reader's own recvfrom is
//     not included);
//   - pingpong: one packet at a time from the caller's socket through the
//     relay to the member's socket: the whole path, both kernel hops and
//     the reader's wakeup.
func BenchmarkRelay(b *testing.B) {
	b.Run("handle", func(b *testing.B) {
		c := benchCall(b)
		e := c.s.impl.eps[Caller][0][kindRTP]
		pkt := rtpPacket(0, 1, make([]byte, 160))
		src := c.caller.addr()
		done := make(chan struct{})
		go func() { // keep the member's socket buffer from filling
			defer close(done)
			buf := make([]byte, 2048)
			for {
				c.member.rtp.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, _, err := c.member.rtp.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
			}
		}()
		b.ReportAllocs()
		b.SetBytes(int64(len(pkt)))
		for b.Loop() {
			c.s.impl.handle(e, pkt, src)
		}
		<-done
	})
	b.Run("pingpong", func(b *testing.B) {
		c := benchCall(b)
		pkt := rtpPacket(0, 1, make([]byte, 160))
		buf := make([]byte, 2048)
		c.member.rtp.SetReadDeadline(time.Now().Add(time.Minute))
		b.ReportAllocs()
		b.SetBytes(int64(len(pkt)))
		for b.Loop() {
			c.caller.send(c.toA, pkt)
			if _, _, err := c.member.rtp.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
