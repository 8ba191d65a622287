package media

import (
	"errors"
	"net"
	"sync"
	"testing"
)

func TestPoolPairs(t *testing.T) {
	p := newTestPool(t, 3)
	if p.Size() != 3 {
		t.Fatalf("Size = %d", p.Size())
	}
	s := newTestSession(t, p, 1, SessionOptions{})
	for _, side := range []Side{Caller, Member} {
		pr := s.Ports(side)
		if len(pr) != 1 || pr[0].RTP%2 != 0 || pr[0].RTCP != pr[0].RTP+1 {
			t.Fatalf("side %d ports %v", side, pr)
		}
	}
	if p.InUse() != 2 {
		t.Fatalf("InUse = %d, want 2", p.InUse())
	}
}

func TestPoolOddBounds(t *testing.T) {
	p, err := NewPool(loopback, 10001, 10006) // pairs 10002/3, 10004/5; 10006 has no partner
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != 2 {
		t.Fatalf("Size = %d, want 2", p.Size())
	}
	for _, r := range [][2]int{{10000, 10000}, {0, 100}, {65534, 65536}, {20, 10}} {
		if _, err := NewPool(loopback, r[0], r[1]); err == nil {
			t.Errorf("range %v accepted", r)
		}
	}
}

// Exhaustion: ErrExhausted, and the pairs taken for the failed session go
// back at once.
func TestPoolExhaustion(t *testing.T) {
	p := newTestPool(t, 3)
	s1 := newTestSession(t, p, 1, SessionOptions{}) // 2 pairs
	_, err := p.NewSession(1, SessionOptions{})     // needs 2, 1 left
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("err = %v, want ErrExhausted", err)
	}
	if p.InUse() != 2 {
		t.Fatalf("InUse = %d after a failed session, want 2 (partial allocation leaked)", p.InUse())
	}
	s1.Close()
	s2 := newTestSession(t, p, 1, SessionOptions{})
	s2.Close()
	if _, err := p.NewSession(2, SessionOptions{}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("4 pairs from a pool of 3: %v", err)
	}
	if p.InUse() != 0 {
		t.Fatalf("InUse = %d", p.InUse())
	}
}

// A port another process holds is skipped, not fatal; if every free pair
// is held, the call gets ErrExhausted.
func TestPoolSkipsForeignPorts(t *testing.T) {
	p := newTestPool(t, 3)
	lo := p.impl.lo
	held, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: lo + 1}) // the first pair's RTCP
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	s := newTestSession(t, p, 1, SessionOptions{})
	for _, side := range []Side{Caller, Member} {
		if s.Ports(side)[0].RTP == lo {
			t.Fatalf("got the pair whose RTCP port is held")
		}
	}
	if _, err := p.NewSession(1, SessionOptions{}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("err = %v, want ErrExhausted with the last pair held", err)
	}
	if p.InUse() != 2 {
		t.Fatalf("InUse = %d", p.InUse())
	}
	s.Close()
	held.Close()
	// Once released elsewhere the pair is usable again.
	s2 := newTestSession(t, p, 1, SessionOptions{})
	_ = s2
	if p.InUse() != 2 {
		t.Fatalf("InUse = %d", p.InUse())
	}
}

// Recently released pairs go to the back of the list.
func TestPoolFIFO(t *testing.T) {
	p := newTestPool(t, 4)
	s := newTestSession(t, p, 1, SessionOptions{})
	first := s.Ports(Caller)[0].RTP
	s.Close()
	s2 := newTestSession(t, p, 1, SessionOptions{})
	for _, side := range []Side{Caller, Member} {
		if s2.Ports(side)[0].RTP == first {
			t.Fatal("a just-released pair was reused while others were free")
		}
	}
}

func TestPoolConcurrent(t *testing.T) {
	p := newTestPool(t, 40)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int]bool{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				s, err := p.NewSession(1, SessionOptions{})
				if errors.Is(err, ErrExhausted) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, side := range []Side{Caller, Member} {
					port := s.Ports(side)[0].RTP
					if seen[port] {
						t.Errorf("port %d handed out twice", port)
					}
					seen[port] = true
				}
				mu.Unlock()
				mu.Lock()
				for _, side := range []Side{Caller, Member} {
					delete(seen, s.Ports(side)[0].RTP)
				}
				mu.Unlock()
				s.Close()
			}
		}()
	}
	wg.Wait()
}
