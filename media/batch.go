package media

import (
	"errors"
	"net"
	"time"

	"golang.org/x/net/ipv4"
)

// serveBatch is serve with recvmmsg/sendmmsg (x/net/ipv4), for the
// measurement in the benchmark.
func (s *session) serveBatch(e *endpoint) {
	defer s.wg.Done()
	const n = 16
	in := ipv4.NewPacketConn(e.conn)
	outPC := ipv4.NewPacketConn(e.other.conn)
	msgs := make([]ipv4.Message, n)
	out := make([]ipv4.Message, n)
	addrs := make([]net.UDPAddr, n)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, bufSize)}
		addrs[i].IP = make(net.IP, 4)
		out[i].Addr = &addrs[i]
		out[i].Buffers = make([][]byte, 1)
	}
	for {
		k, err := in.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond)
			continue
		}
		w := 0
		for i := range k {
			m := &msgs[i]
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			b := m.Buffers[0][:m.N]
			o, d, ps, now, ok := s.route(e, b, ua.AddrPort())
			if !ok || o != e.other {
				continue
			}
			a4 := d.Addr().As4()
			copy(addrs[w].IP, a4[:])
			addrs[w].Port = int(d.Port())
			out[w].Buffers[0] = b
			w++
			s.sent(e, b, ps, now)
		}
		for off := 0; off < w; {
			sent, err := outPC.WriteBatch(out[off:w], 0)
			if err != nil || sent == 0 {
				break
			}
			off += sent
		}
	}
}
