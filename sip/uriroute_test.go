package sip

import (
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"
)

// uriTransport and uriDestination stand in for sipgo's Request.Transport
// and Destination on a leg's INVITE (no Via yet, no Route): they must give
// what sipgo would, for every shape of member URI.
func TestURITransportAndDestinationAsSipgo(t *testing.T) {
	for _, u := range []string{
		"sip:m1@127.0.0.1",
		"sip:m1@127.0.0.1:5070",
		"sip:m1@[::1]:5070",
		"sip:m1@[::1]",
		"sip:m1@pbx.example.com",
		"sip:m1@127.0.0.1:5070;transport=tcp",
		"sip:m1@127.0.0.1;transport=TLS",
		"sip:m1@127.0.0.1;transport=ws",
		"sips:m1@127.0.0.1",
		"sips:m1@127.0.0.1;transport=tcp",
		"sips:m1@127.0.0.1:5071;transport=ws",
		"sip:127.0.0.1:5080;lr;transport=udp",
	} {
		var ruri sipmsg.Uri
		if err := sipmsg.ParseUri(u, &ruri); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		req := sipmsg.NewRequest(sipmsg.INVITE, ruri)
		wantTP := req.Transport()
		req.SetTransport(wantTP)
		wantDest := req.Destination()
		if tp := uriTransport(&ruri); tp != wantTP {
			t.Errorf("%s: transport %q, sipgo says %q", u, tp, wantTP)
		}
		if d := uriDestination(&ruri, wantTP); d != wantDest {
			t.Errorf("%s: destination %q, sipgo says %q", u, d, wantDest)
		}
	}
}
