package sip

import (
	"strconv"
	"strings"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/routing"
)

// A leg's INVITE is written straight into bytes over UDP to an address
// and built as a sipgo Request otherwise (a name to resolve, a
// connection to open): both say the same. Only what is the leg's own
// differs: the Via branch, the Call-ID and the From tag; and the member's
// host, which is what sends one of them the other way.
func TestLegInviteSameAsBytesAndAsRequest(t *testing.T) {
	caller := newPeer(t, "caller")
	s, _ := startServer(t, groupConfig("all", "sip:m@127.0.0.1:5999"), caller)
	text := strings.ReplaceAll(caller.inviteText("600", "cid-wire"), "\n", "\r\n")
	text = strings.Replace(text, "Max-Forwards: 70", "Max-Forwards: 20\r\nContent-Disposition: session", 1)
	m, err := sipmsg.ParseMessage([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	c := &call{s: s, log: zap.NewNop(), a: &uas{req: m.(*sipmsg.Request)}}
	c.party.User = "alice"

	build := func(uri string) (sipmsg.Message, *uac) {
		t.Helper()
		l := c.newLeg(routing.StartLeg{Target: routing.Target{URI: uri, Display: `Sales "A"`, Member: "m"}})
		if code := l.build(); code != 0 {
			t.Fatalf("build %s: %d", uri, code)
		}
		var b []byte
		switch {
		case l.wire != nil && l.inv == nil:
			b = l.wire.appendTo(nil, s.wireShared)
		case l.inv != nil && l.wire == nil:
			b = []byte(l.inv.String())
		default:
			t.Fatalf("%s: wire %v, Request %v: want exactly one", uri, l.wire != nil, l.inv != nil)
		}
		msg, err := sipmsg.ParseMessage(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", uri, err, b)
		}
		return msg, l
	}
	wire, wl := build("sip:m@127.0.0.1:5999")
	req, rl := build("sip:m@members.invalid:5999")
	if wl.wire == nil || rl.inv == nil {
		t.Fatal("the IP member's INVITE should go as bytes, the named member's as a Request")
	}

	own := func(msg sipmsg.Message) string {
		r := msg.(*sipmsg.Request)
		s := r.String()
		for _, v := range []string{viaBranch(r), r.CallID().Value(), tag(r.From())} {
			if v == "" {
				t.Fatalf("INVITE without a branch, Call-ID or From tag:\n%s", s)
			}
			s = strings.ReplaceAll(s, v, "OWN")
		}
		return strings.ReplaceAll(s, "members.invalid", "127.0.0.1")
	}
	// Header order is not the wire's business; compare the lines as sets.
	lines := func(s string) map[string]bool {
		out := map[string]bool{}
		for _, l := range strings.Split(s, "\r\n") {
			out[l] = true
		}
		return out
	}
	w, r := lines(own(wire)), lines(own(req))
	for l := range w {
		if !r[l] {
			t.Errorf("only the bytes have %q", l)
		}
	}
	for l := range r {
		if !w[l] {
			t.Errorf("only the Request has %q", l)
		}
	}
	if t.Failed() {
		t.Logf("bytes:\n%s\nRequest:\n%s", wire, req)
	}

	inv := wire.(*sipmsg.Request)
	for name, want := range map[string]string{
		"Max-Forwards":        "19",
		"From":                `"Sales \"A\"" <sip:alice@127.0.0.1>;tag=` + tag(inv.From()),
		"Content-Disposition": "session",
		"Content-Length":      strconv.Itoa(len(c.a.req.Body())),
	} {
		if h := inv.GetHeader(name); h == nil || h.Value() != want {
			t.Errorf("%s: %v, want %q", name, h, want)
		}
	}
	if b := inv.Body(); len(b) == 0 || string(b) != string(c.a.req.Body()) {
		t.Errorf("body %q, want the caller's offer %q", b, c.a.req.Body())
	}

	// Its CANCEL repeats the INVITE (RFC 3261 §9.1), as the Request's.
	wc, err := sipmsg.ParseMessage(appendCancel(nil, wl.wire.ident(), inviteCSeq, true))
	if err != nil {
		t.Fatal(err)
	}
	sameAsInvite(t, "CANCEL from bytes", wc.(*sipmsg.Request), inv, true)
	rc := rl.cancelRequest()
	if rc == nil {
		t.Fatal("no CANCEL for the Request")
	}
	sameAsInvite(t, "CANCEL from the Request", rc, rl.inv, true)
}
