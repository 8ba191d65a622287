package registrar

import (
	"container/list"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxSources bounds the FailureLimiter's table.
const DefaultMaxSources = 10000

// LimiterOptions configure a FailureLimiter. Zero values take the defaults.
type LimiterOptions struct {
	// MaxSources bounds how many sources are tracked; past it the source
	// that failed least recently is forgotten.
	MaxSources int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// LimiterStats are the FailureLimiter's counters, for metrics.
type LimiterStats struct {
	Failures uint64 // Fail calls
	Blocked  uint64 // Allow calls that said no
	Sources  int    // sources tracked now
}

// FailureLimiter slows down password guessing: each source may fail
// authentication perMinute times a minute. It is a leaky bucket per
// source: every failure adds one, the level drains at perMinute per
// minute, and a source may try while one more failure would not take it
// over perMinute. So a burst of perMinute failures is let through, then
// one more attempt every 60s/perMinute. Safe for concurrent use.
//
// Sources are IP addresses; IPv6 addresses count per /64, the block one
// host or site usually holds, so walking through a /64 does not reset
// the count.
type FailureLimiter struct {
	now      func() time.Time
	maxSrc   int
	failures atomic.Uint64
	blocked  atomic.Uint64

	mu    sync.Mutex
	limit int
	table map[netip.Addr]*list.Element // of *bucket
	lru   list.List                    // front: most recent failure
}

type bucket struct {
	key   netip.Addr
	level float64
	at    time.Time // when level was last computed
}

// NewFailureLimiter makes a limiter allowing perMinute failures a minute
// per source; 0 or less: off (Allow always true, Fail only counts).
func NewFailureLimiter(perMinute int, opts LimiterOptions) *FailureLimiter {
	if opts.MaxSources <= 0 {
		opts.MaxSources = DefaultMaxSources
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &FailureLimiter{
		now:    opts.Now,
		maxSrc: opts.MaxSources,
		limit:  perMinute,
		table:  map[netip.Addr]*list.Element{},
	}
}

// SetLimit changes the limit (config reload); 0 turns it off and forgets
// every source.
func (l *FailureLimiter) SetLimit(perMinute int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limit = perMinute
	if perMinute <= 0 {
		clear(l.table)
		l.lru.Init()
	}
}

func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// drain lowers the level for the time since it was last computed.
func (b *bucket) drain(now time.Time, limit int) float64 {
	if d := now.Sub(b.at); d > 0 {
		b.level -= d.Minutes() * float64(limit)
		if b.level < 0 {
			b.level = 0
		}
		b.at = now
	}
	return b.level
}

// Allow reports whether ip may try to authenticate. When it says no, the
// SIP layer answers 403 at once without looking at the credentials, and
// the refusal is counted in Blocked.
func (l *FailureLimiter) Allow(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit <= 0 {
		return true
	}
	el := l.table[sourceKey(ip)]
	if el == nil {
		return true
	}
	if el.Value.(*bucket).drain(l.now(), l.limit)+1 <= float64(l.limit) {
		return true
	}
	l.blocked.Add(1)
	return false
}

// Fail counts one failed authentication from ip. It returns true when
// this failure used up the source's allowance, so the caller can log once
// per episode that the source is now blocked.
func (l *FailureLimiter) Fail(ip netip.Addr) (nowBlocked bool) {
	l.failures.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit <= 0 {
		return false
	}
	now := l.now()
	key := sourceKey(ip)
	// Forget sources that have drained completely, oldest first; the
	// list is in failure order, so the first live one ends the walk.
	for back := l.lru.Back(); back != nil; back = l.lru.Back() {
		b := back.Value.(*bucket)
		if b.key == key || b.drain(now, l.limit) > 0 {
			break
		}
		delete(l.table, b.key)
		l.lru.Remove(back)
	}
	el := l.table[key]
	if el == nil {
		for len(l.table) >= l.maxSrc {
			back := l.lru.Back()
			delete(l.table, back.Value.(*bucket).key)
			l.lru.Remove(back)
		}
		el = l.lru.PushFront(&bucket{key: key, at: now})
		l.table[key] = el
	} else {
		l.lru.MoveToFront(el)
	}
	b := el.Value.(*bucket)
	before := b.drain(now, l.limit)
	b.level = before + 1
	limit := float64(l.limit)
	return before+1 <= limit && b.level+1 > limit
}

// Stats returns the counters.
func (l *FailureLimiter) Stats() LimiterStats {
	l.mu.Lock()
	n := len(l.table)
	l.mu.Unlock()
	return LimiterStats{Failures: l.failures.Load(), Blocked: l.blocked.Load(), Sources: n}
}
