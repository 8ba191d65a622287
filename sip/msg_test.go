package sip

import (
	"strings"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"
)

// newResponse puts on the wire what sipgo's NewResponseFromRequest does,
// for every code class and the headers it treats apart (Record-Route, a
// Via asking for rport, several Vias, a Timestamp, a To with and without
// a tag), and leaves the request as it was.
func TestNewResponseIsSipgos(t *testing.T) {
	const base = "INVITE sip:600@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-top%s\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bK-second;rport\r\n" +
		"Record-Route: <sip:p1.example.com;lr>\r\n" +
		"Record-Route: <sip:p2.example.com;lr>\r\n" +
		"From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n" +
		"To: <sip:600@example.com>%s\r\n" +
		"Call-ID: c1@example.com\r\n" +
		"CSeq: 7 INVITE\r\n" +
		"Timestamp: 54\r\n" +
		"Contact: <sip:alice@10.0.0.1:5070>\r\n" +
		"Content-Length: 0\r\n\r\n"
	for _, via := range []string{"", ";rport", ";rport=5070", ";rport;x=1"} {
		for _, toTag := range []string{";tag=ours", ""} {
			for _, code := range []int{100, 180, 183, 200, 302, 486, 503} {
				text := strings.Replace(strings.Replace(base, "%s", via, 1), "%s", toTag, 1)
				parse := func() *sipmsg.Request {
					m, err := sipmsg.ParseMessage([]byte(text))
					if err != nil {
						t.Fatal(err)
					}
					req := m.(*sipmsg.Request)
					req.SetSource("192.0.2.9:6000")
					return req
				}
				req, theirs := parse(), parse()
				before := req.String()
				got := newResponse(req, code, "Reason").String()
				want := sipmsg.NewResponseFromRequest(theirs, code, "Reason", nil).String()
				if toTag == "" && code != 100 {
					// Both tag the To, each with a tag of its own.
					if !strings.Contains(got, "To: <sip:600@example.com>;tag=") {
						t.Errorf("via %q, %d: no To tag in\n%s", via, code, got)
					}
					got, want = untag(got), untag(want)
				}
				if got != want {
					t.Errorf("via %q, To %q, %d:\n%s\nwant (sipgo's)\n%s", via, toTag, code, got, want)
				}
				if after := req.String(); after != before {
					t.Errorf("via %q, To %q, %d: the request changed:\n%s\nwas\n%s", via, toTag, code, after, before)
				}
			}
		}
	}
}

// untag drops the To tag's value, which is random.
func untag(msg string) string {
	var out []string
	for _, l := range strings.Split(msg, "\r\n") {
		if i := strings.Index(l, ";tag="); strings.HasPrefix(l, "To:") && i >= 0 {
			l = l[:i+len(";tag=")]
		}
		out = append(out, l)
	}
	return strings.Join(out, "\r\n")
}
