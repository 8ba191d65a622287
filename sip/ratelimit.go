package sip

import (
	"net/netip"
	"sync"
	"time"
)

// sourceLimiter is a token bucket per source address for
// limits.requests_per_source: a source may send that many requests a
// second (with a burst of one second's worth) before the rest are
// refused. Trunks are exempt (the caller checks). Memory is bounded: past
// maxSources the source seen longest ago is forgotten, which at worst
// gives a flooding scanner with many addresses a fresh bucket, never lets
// one address exceed its rate.
//
// Full, it forgets the buckets that have refilled (they hold nothing a
// new one would not), else half the table at random: one sweep per
// maxSources/2 new sources keeps a scanner spraying addresses O(1) per
// packet.
type sourceLimiter struct {
	mu      sync.Mutex
	rate    float64 // tokens a second; 0: off
	buckets map[netip.Addr]*srcBucket
	now     func() time.Time
}

type srcBucket struct {
	tokens   float64
	last     time.Time
	limited  bool      // over the limit right now: logged once per episode
	answered time.Time // last 503 sent while limited: at most one a second
}

const maxSources = 20000

func newSourceLimiter(perSecond int, now func() time.Time) *sourceLimiter {
	return &sourceLimiter{rate: float64(perSecond), buckets: map[netip.Addr]*srcBucket{}, now: now}
}

func (l *sourceLimiter) setRate(perSecond int) {
	l.mu.Lock()
	l.rate = float64(perSecond)
	l.mu.Unlock()
}

// verdict of one request.
type verdict int

const (
	pass       verdict = iota
	refuse             // answer 503 with Retry-After
	drop               // say nothing: a 503 went out this second already
	startFlood         // refuse, and this source just went over: log it once
)

// allow takes a token for a request from ip.
func (l *sourceLimiter) allow(ip netip.Addr) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rate <= 0 {
		return pass
	}
	now := l.now()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= maxSources {
			l.evictLocked()
		}
		b = &srcBucket{tokens: l.rate, last: now}
		l.buckets[ip] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		// A flood is over once the source has let its bucket fill up
		// again, not at the first token it earns back: a source that
		// keeps sending too fast is one flood, logged once.
		if b.limited && b.tokens >= l.rate {
			b.limited = false
		}
		b.tokens--
		return pass
	}
	if !b.limited {
		b.limited = true
		b.answered = now
		return startFlood
	}
	if now.Sub(b.answered) < time.Second {
		return drop
	}
	b.answered = now
	return refuse
}

func (l *sourceLimiter) evictLocked() {
	now := l.now()
	for ip, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.rate {
			delete(l.buckets, ip)
		}
	}
	for ip := range l.buckets {
		if len(l.buckets) < maxSources/2 {
			break
		}
		delete(l.buckets, ip)
	}
}
