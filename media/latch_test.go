package media

import (
	"net/netip"
	"testing"
	"time"
)

// The latching rule, packet by packet: who is admitted as the peer.
func TestLatch(t *testing.T) {
	sdp := netip.MustParseAddrPort("192.0.2.10:4000")
	nat := netip.MustParseAddrPort("198.51.100.7:31000")     // the peer seen through a NAT
	rebound := netip.MustParseAddrPort("198.51.100.7:31002") // the NAT rebinds
	stranger := netip.MustParseAddrPort("203.0.113.9:5000")
	sameHost := netip.MustParseAddrPort("192.0.2.10:4002") // another phone on the peer's host
	ms := func(n int) int64 { return int64(time.Duration(n) * time.Millisecond) }
	type pkt struct {
		src  netip.AddrPort
		at   int64
		want bool
	}
	for _, tc := range []struct {
		name string
		pkts []pkt
	}{
		{"exact SDP address locks at once", []pkt{
			{sdp, 0, true}, {sameHost, ms(10), false}, {stranger, ms(20), false}, {sdp, ms(30), true},
		}},
		{"the SDP address beats a source followed before it", []pkt{
			{sameHost, 0, true}, {sdp, ms(10), true}, {sameHost, ms(20), false},
		}},
		{"behind a NAT the newest source within the window is followed", []pkt{
			{nat, 0, true}, {rebound, ms(500), true}, {nat, ms(600), true}, {rebound, ms(2900), true},
			{nat, ms(3000), false}, {rebound, ms(3100), true},
		}},
		{"after the window the source is locked", []pkt{
			{nat, 0, true}, {rebound, ms(3000), false}, {nat, ms(3100), true},
		}},
		{"a source with the SDP's IP is not replaced by another IP", []pkt{
			{sameHost, 0, true}, {stranger, ms(100), false}, {sameHost, ms(200), true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &endpoint{}
			e.reset(&peerState{sdp: sdp})
			for i, p := range tc.pkts {
				if got := e.admit(p.src, p.at); got != p.want {
					t.Fatalf("packet %d from %v at %v: admitted %v, want %v", i, p.src, time.Duration(p.at), got, p.want)
				}
			}
		})
	}
}
