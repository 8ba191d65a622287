package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// poolImpl is a FIFO free list of RTP ports (the pair's RTCP port is the
// next one). FIFO rather than LIFO so a pair just released rests as long
// as possible before reuse: late packets of the old call then find the
// port closed instead of reaching a new call.
type poolImpl struct {
	addr netip.Addr
	lo   int
	n    int

	mu    sync.Mutex
	free  []int // ring buffer of free RTP ports
	head  int
	count int // pairs in free
	inuse int
}

func newPool(addr netip.Addr, lo, hi int) (*Pool, error) {
	if !addr.IsValid() {
		return nil, errors.New("media pool: no address")
	}
	if lo%2 != 0 {
		lo++
	}
	if lo <= 0 || hi > 65535 || lo+1 > hi {
		return nil, fmt.Errorf("media pool: port range %d-%d holds no even/odd pair", lo, hi)
	}
	n := (hi - lo + 1) / 2
	p := &Pool{impl: poolImpl{addr: addr.Unmap().WithZone(addr.Zone()), lo: lo, n: n, free: make([]int, n), count: n}}
	for i := range n {
		p.impl.free[i] = lo + 2*i
	}
	return p, nil
}

func (p *poolImpl) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inuse
}

func (p *poolImpl) size() int { return p.n }

func (p *poolImpl) take() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.count == 0 {
		return 0, false
	}
	port := p.free[p.head]
	p.head = (p.head + 1) % p.n
	p.count--
	p.inuse++
	return port, true
}

// give puts a pair taken by take back at the tail.
func (p *poolImpl) give(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.count == p.n {
		panic("media pool: more pairs returned than taken")
	}
	p.free[(p.head+p.count)%p.n] = port
	p.count++
	p.inuse--
}

// pair is one bound RTP/RTCP socket pair.
type pair struct {
	port      int
	rtp, rtcp *net.UDPConn
}

// allocate binds a free pair. A pair that another process holds goes back
// to the tail of the list and the next one is tried; each pair is tried at
// most once per call so a range full of foreign sockets ends in
// ErrExhausted, not a loop.
func (p *poolImpl) allocate() (pair, error) {
	var lastErr error
	for range p.n {
		port, ok := p.take()
		if !ok {
			break
		}
		rtp, err := p.listen(port)
		if err == nil {
			var rtcp *net.UDPConn
			rtcp, err = p.listen(port + 1)
			if err == nil {
				return pair{port: port, rtp: rtp, rtcp: rtcp}, nil
			}
			rtp.Close()
		}
		lastErr = err
		p.give(port)
	}
	if lastErr != nil {
		return pair{}, fmt.Errorf("%w (last bind error: %v)", ErrExhausted, lastErr)
	}
	return pair{}, ErrExhausted
}

func (p *poolImpl) listen(port int) (*net.UDPConn, error) {
	// An IPv4 address gets an IPv4 socket, so sources come without the
	// ::ffff: prefix; "::" gets a dual-stack socket, as a wildcard bind
	// usually means "everything".
	network := "udp6"
	switch {
	case p.addr.Is4():
		network = "udp4"
	case p.addr.IsUnspecified():
		network = "udp"
	}
	return net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.addr, uint16(port))))
}

func (p *poolImpl) release(pr pair) {
	pr.rtp.Close()
	pr.rtcp.Close()
	p.give(pr.port)
}
