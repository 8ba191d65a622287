package registrar

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestLimiterBlocksAndDrains(t *testing.T) {
	c := newClock()
	l := NewFailureLimiter(3, LimiterOptions{Now: c.Now})
	ip := netip.MustParseAddr("198.51.100.7")
	other := netip.MustParseAddr("198.51.100.8")
	for i := 1; i <= 3; i++ {
		if !l.Allow(ip) {
			t.Fatalf("blocked before failure %d", i)
		}
		if blocked := l.Fail(ip); blocked != (i == 3) {
			t.Errorf("Fail %d reported blocked=%v", i, blocked)
		}
	}
	if l.Allow(ip) {
		t.Error("allowed after 3 failures in an instant")
	}
	if !l.Allow(other) {
		t.Error("another source is blocked too")
	}
	// 3 a minute drains one every 20 s.
	c.Advance(19 * time.Second)
	if l.Allow(ip) {
		t.Error("allowed again after 19 s")
	}
	c.Advance(time.Second)
	if !l.Allow(ip) {
		t.Error("not allowed after 20 s")
	}
	if !l.Fail(ip) {
		t.Error("the failure after draining one should block again")
	}
	if l.Allow(ip) {
		t.Error("allowed right after blocking again")
	}
	c.Advance(time.Minute)
	if !l.Allow(ip) {
		t.Error("still blocked after a minute")
	}
	st := l.Stats()
	if st.Failures != 4 || st.Blocked != 3 || st.Sources != 1 {
		t.Errorf("stats %+v", st)
	}
	// Fully drained sources are forgotten on the next failure.
	c.Advance(2 * time.Minute)
	l.Fail(other)
	if st := l.Stats(); st.Sources != 1 {
		t.Errorf("sources %d after the first one drained, want 1", st.Sources)
	}
}

func TestLimiterSlowBurst(t *testing.T) {
	// Failures spread over time count only what has not drained.
	c := newClock()
	l := NewFailureLimiter(10, LimiterOptions{Now: c.Now})
	ip := netip.MustParseAddr("192.0.2.1")
	allowed := 0
	for range 120 { // one attempt a second for two minutes
		if l.Allow(ip) {
			allowed++
			l.Fail(ip)
		}
		c.Advance(time.Second)
	}
	// A burst of 10 (less what drains meanwhile), then 10 a minute.
	if allowed < 25 || allowed > 32 {
		t.Errorf("%d attempts let through in 2 minutes at a limit of 10/min", allowed)
	}
}

func TestLimiterOff(t *testing.T) {
	l := NewFailureLimiter(0, LimiterOptions{Now: newClock().Now})
	ip := netip.MustParseAddr("192.0.2.1")
	for range 100 {
		if l.Fail(ip) {
			t.Fatal("off limiter reported a block")
		}
	}
	if !l.Allow(ip) {
		t.Error("off limiter blocks")
	}
	if st := l.Stats(); st.Failures != 100 || st.Sources != 0 || st.Blocked != 0 {
		t.Errorf("stats %+v", st)
	}
	l.SetLimit(1)
	l.Fail(ip)
	if l.Allow(ip) {
		t.Error("SetLimit(1) did not take effect")
	}
	l.SetLimit(0)
	if !l.Allow(ip) || l.Stats().Sources != 0 {
		t.Error("SetLimit(0) did not turn it off")
	}
}

func TestLimiterBounded(t *testing.T) {
	c := newClock()
	l := NewFailureLimiter(5, LimiterOptions{Now: c.Now, MaxSources: 100})
	first := netip.MustParseAddr("10.0.0.1")
	for range 5 {
		l.Fail(first)
	}
	if l.Allow(first) {
		t.Fatal("not blocked")
	}
	// A scanner with many addresses cannot grow the table.
	for i := range 5000 {
		ip := netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
		l.Fail(ip)
	}
	if n := l.Stats().Sources; n > 100 {
		t.Errorf("table holds %d sources, cap 100", n)
	}
}

func TestLimiterSourceKeys(t *testing.T) {
	c := newClock()
	l := NewFailureLimiter(2, LimiterOptions{Now: c.Now})
	// One /64 is one source.
	l.Fail(netip.MustParseAddr("2001:db8:1:2::1"))
	l.Fail(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	if l.Allow(netip.MustParseAddr("2001:db8:1:2::77")) {
		t.Error("another address in the same /64 is not blocked")
	}
	if !l.Allow(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("the next /64 is blocked")
	}
	// IPv4-mapped IPv6 is the IPv4 address.
	l.Fail(netip.MustParseAddr("192.0.2.9"))
	l.Fail(netip.MustParseAddr("::ffff:192.0.2.9"))
	if l.Allow(netip.MustParseAddr("192.0.2.9")) {
		t.Error("mapped and plain IPv4 counted apart")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	c := newClock()
	l := NewFailureLimiter(10, LimiterOptions{Now: c.Now, MaxSources: 50})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				ip := netip.AddrFrom4([4]byte{10, byte(w), 0, byte(i % 80)})
				if l.Allow(ip) {
					l.Fail(ip)
				}
				if i%100 == 0 {
					c.Advance(time.Second)
					l.Stats()
				}
			}
		}()
	}
	wg.Wait()
	if n := l.Stats().Sources; n > 50 {
		t.Errorf("%d sources", n)
	}
}
