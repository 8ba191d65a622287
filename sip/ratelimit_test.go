package sip

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

func TestSourceLimiterBucket(t *testing.T) {
	now := time.Unix(0, 0)
	l := newSourceLimiter(10, func() time.Time { return now })
	ip := netip.MustParseAddr("203.0.113.7")
	for i := 0; i < 10; i++ {
		if v := l.allow(ip); v != pass {
			t.Fatalf("request %d of the burst: %v", i, v)
		}
	}
	if v := l.allow(ip); v != startFlood {
		t.Fatalf("11th request: %v, want startFlood (refuse and log once)", v)
	}
	if v := l.allow(ip); v != drop {
		t.Fatalf("12th request in the same second: %v, want drop (one 503 a second)", v)
	}
	// Sending on at twice the rate is one flood: requests the refill
	// lets through pass, the rest are refused once a second and dropped,
	// and the flood is not reported again.
	starts, refusals := 0, 0
	for i := 0; i < 100; i++ { // 5 s at 20/s
		now = now.Add(50 * time.Millisecond)
		switch l.allow(ip) {
		case startFlood:
			starts++
		case refuse:
			refusals++
		}
	}
	if starts != 0 || refusals < 4 || refusals > 6 {
		t.Fatalf("sustained flood: %d new floods reported, %d 503s; want 0 and about one a second", starts, refusals)
	}
	now = now.Add(1100 * time.Millisecond)
	if v := l.allow(ip); v != pass {
		t.Fatalf("after a quiet second: %v, want pass (refilled)", v)
	}
	// Another source has its own bucket.
	if v := l.allow(netip.MustParseAddr("203.0.113.8")); v != pass {
		t.Fatalf("other source: %v", v)
	}
	// A scanner spraying addresses cannot grow the table without bound.
	for i := 0; i < 3*maxSources; i++ {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := len(l.buckets); n > maxSources {
		t.Fatalf("%d buckets, want at most %d", n, maxSources)
	}
}

// "Bad input" / issue 9: a flood from one source is limited (503, then
// drops), while a trunk keeps connecting.
func TestFloodFromOneSource(t *testing.T) {
	caller, m := newPeer(t, "caller"), newPeer(t, "m")
	flooder := newPeerAt(t, "flooder", net.IPv4(127, 0, 0, 5))
	cfg := strings.Replace(groupConfig("all", m.uri("m")), "cdr: {path: \"\"}", "cdr: {path: \"\"}\nlimits: {requests_per_source: 20}", 1)
	startServer(t, cfg, caller, m, flooder)
	for i := 0; i < 200; i++ {
		flooder.send(fmt.Sprintf(`OPTIONS sip:127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP 127.0.0.5:%d;branch=z9hG4bK-fl%d
From: <sip:x@127.0.0.5>;tag=f%d
To: <sip:127.0.0.1>
Call-ID: flood-%d
CSeq: 1 OPTIONS
Max-Forwards: 70

`, flooder.to.Port, flooder.port(), i, i, i))
	}
	time.Sleep(300 * time.Millisecond)
	ok, limited := 0, 0
	for {
		select {
		case msg := <-flooder.in:
			if r, isRes := msg.(*sipmsg.Response); isRes {
				switch r.StatusCode {
				case 200:
					ok++
				case 503:
					limited++
				}
			}
			continue
		default:
		}
		break
	}
	if ok > 25 || limited == 0 || limited > 2 {
		t.Errorf("flood of 200 OPTIONS: %d answered 200, %d got 503; want about 20 and one 503 (the rest dropped)", ok, limited)
	}
	// A trunk call goes through meanwhile.
	caller.invite("600")
	inv := m.request(sipmsg.INVITE, wait)
	m.reply(inv, 486, "m", "")
	caller.response(486, wait)
}
