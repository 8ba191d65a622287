package sip

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// TestUDPReaderTakesLegResponses: a response to a leg's INVITE or CANCEL
// goes from the socket straight to its call's inbox, marked as sipgo marks
// what it reads (a 100 or a bodiless 180 to an INVITE, and a 200 to a
// CANCEL, as the reader's unparsed stand-ins), in the order it came; everything else (a request, a
// response to no leg, what does not parse) is handed on to sipgo with its
// sender's address.
func TestUDPReaderTakesLegResponses(t *testing.T) {
	in, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	s := &Server{}
	c := &call{s: s}
	// As if a step of the call were running: a kick then only marks the
	// call to be looked at again.
	c.sched.Store(schedRunning)
	leg := &uac{c: c, branch: "z9hG4bK-leg1"}
	s.members.add(leg.branch, leg)
	r := newUDPReader(s, in)

	response := func(code int, reason, branch, method string) string {
		return "SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=" + branch + "\r\n" +
			"From: <sip:caller@example.com>;tag=a\r\n" +
			"To: <sip:m1@example.com>;tag=b\r\n" +
			"Call-ID: leg1@ringroute\r\n" +
			"CSeq: 1 " + method + "\r\n" +
			"Content-Length: 0\r\n\r\n"
	}
	request := "OPTIONS sip:ringroute@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-opt\r\n" +
		"From: <sip:probe@example.com>;tag=p\r\n" +
		"To: <sip:ringroute@127.0.0.1>\r\n" +
		"Call-ID: opt@probe\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
	datagrams := []string{
		response(100, "Trying", leg.branch, "INVITE"),
		response(180, "Ringing", leg.branch, "INVITE"),
		request,
		response(200, "OK", "z9hG4bK-nobody", "INVITE"),
		response(200, "OK", leg.branch, "CANCEL"),
		response(183, "Session Progress", leg.branch, "INVITE"),
		"SIP/2.0 garbage\r\n\r\n",
		response(487, "Request Terminated", leg.branch, "INVITE"),
		request,
	}
	for _, d := range datagrams {
		if _, err := peer.WriteTo([]byte(d), in.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// What sipgo reads: the request, the response to nobody, the garbage,
	// the request again; the leg's five responses never reach it.
	want := []string{request, response(200, "OK", "z9hG4bK-nobody", "INVITE"), "SIP/2.0 garbage\r\n\r\n", request}
	buf := make([]byte, 65535)
	for i, w := range want {
		_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := r.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if got := string(buf[:n]); got != w {
			t.Errorf("sipgo read %d:\n%q\nwant\n%q", i, got, w)
		}
		if from.String() != peer.LocalAddr().String() {
			t.Errorf("read %d from %s, want %s", i, from, peer.LocalAddr())
		}
	}

	if c.sched.Load() != schedAgain {
		t.Fatal("the call was not kicked")
	}
	q := c.takeInbox()
	wantCodes := []struct {
		code   int
		method string
	}{{100, "INVITE"}, {180, "INVITE"}, {200, "CANCEL"}, {183, "INVITE"}, {487, "INVITE"}}
	if len(q) != len(wantCodes) {
		t.Fatalf("the call got %d responses, want %d", len(q), len(wantCodes))
	}
	src := netip.MustParseAddrPort(peer.LocalAddr().String()).String()
	for i, w := range wantCodes {
		res := q[i].res
		if q[i].leg != leg || res.StatusCode != w.code || string(res.CSeq().MethodName) != w.method {
			t.Errorf("response %d: %d %s for leg %p, want %d %s for %p", i, res.StatusCode, res.CSeq().MethodName, q[i].leg, w.code, w.method, leg)
		}
		if want := map[int]string{487: "<sip:m1@example.com>;tag=b"}[w.code]; string(q[i].to) != want {
			t.Errorf("response %d: To %q, want %q", i, q[i].to, want)
		}
		if w.code != 183 {
			// Not parsed: the reader's stand-ins take their places,
			// and the 487's To goes with its own.
			if standIn := map[int]*sipmsg.Response{100: r.trying, 180: r.ringing, 200: r.cancelled, 487: r.failures[487]}[w.code]; res != standIn {
				t.Errorf("response %d: the %d was parsed, want the reader's stand-in", i, w.code)
			}
			continue
		}
		if res.Transport() != "UDP" || res.Source() != src {
			t.Errorf("response %d: transport %q source %q, want UDP %s", i, res.Transport(), res.Source(), src)
		}
	}

	// Once the call's goroutine has returned, deliver refuses.
	c.closeInbox()
	if c.deliver(leg, q[0].res) {
		t.Error("deliver took a response after the call ended")
	}
}

// lightResponse finds the status and the top Via's branch of a 100 or a
// 180 to an INVITE, or a 200 to a CANCEL, the way the parser would, and
// gives up (nil, the full parse) on anything else.
func TestLightResponse(t *testing.T) {
	msg := func(status string, headers ...string) []byte {
		return []byte(status + "\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n")
	}
	const via = "Via: SIP/2.0/UDP 127.0.0.1:5060;rport=5060;branch=z9hG4bK-a1"
	const cseq = "CSeq: 1 INVITE"
	tests := []struct {
		name string
		data []byte
		want string // "" for nil
	}{
		{"plain", msg("SIP/2.0 100 Trying", via, "Call-ID: x", cseq, "Content-Length: 0"), "z9hG4bK-a1"},
		{"compact and lower case", msg("SIP/2.0 100 Trying", "v: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-a2;rport", "cseq: 7 INVITE"), "z9hG4bK-a2"},
		{"spaces around the branch: left to the parser", msg("SIP/2.0 100 Trying", "Via: SIP/2.0/UDP 127.0.0.1 ; branch = z9hG4bK-a2", cseq), ""},
		{"two branches: left to the parser", msg("SIP/2.0 100 Trying", "Via: SIP/2.0/UDP a;branch=z9hG4bK-1;branch=z9hG4bK-2", cseq), ""},
		{"BRANCH: left to the parser", msg("SIP/2.0 100 Trying", "Via: SIP/2.0/UDP 127.0.0.1;BRANCH=z9hG4bK-a2", cseq), ""},
		{"top of several Vias in one line", msg("SIP/2.0 100 Trying", "Via: SIP/2.0/UDP a;branch=z9hG4bK-top, SIP/2.0/UDP b;branch=z9hG4bK-b", cseq), "z9hG4bK-top"},
		{"top of several Via lines", msg("SIP/2.0 100 Trying", "Via: SIP/2.0/UDP a;branch=z9hG4bK-top", "Via: SIP/2.0/UDP b;branch=z9hG4bK-b", cseq), "z9hG4bK-top"},
		{"CSeq first", msg("SIP/2.0 100 Trying", cseq, via), "z9hG4bK-a1"},
		{"180", msg("SIP/2.0 180 Ringing", via, "Content-Length: 0", cseq), "z9hG4bK-a1"},
		{"180 compact Content-Length", msg("SIP/2.0 180 Ringing", via, "l: 0", cseq), "z9hG4bK-a1"},
		{"183", msg("SIP/2.0 183 Session Progress", via, cseq), ""},
		{"180 with a body", append(msg("SIP/2.0 180 Ringing", via, cseq, "Content-Length: 3"), "v=0"...), ""},
		{"180 with a body and no Content-Length", append(msg("SIP/2.0 180 Ringing", via, cseq), "v=0"...), ""},
		{"200 to an INVITE", msg("SIP/2.0 200 OK", via, cseq), ""},
		{"200 to a CANCEL", msg("SIP/2.0 200 OK", via, "CSeq: 1 CANCEL", "Content-Length: 0"), "z9hG4bK-a1"},
		{"200 to a CANCEL, compact", msg("SIP/2.0 200 OK", "v: SIP/2.0/UDP a;branch=z9hG4bK-c", "cseq: 1 CANCEL", "l: 0"), "z9hG4bK-c"},
		{"200 to a CANCEL with a body", append(msg("SIP/2.0 200 OK", via, "CSeq: 1 CANCEL", "Content-Length: 3"), "v=0"...), ""},
		{"200 to a BYE", msg("SIP/2.0 200 OK", via, "CSeq: 2 BYE"), ""},
		{"487 without a To", msg("SIP/2.0 487 Request Terminated", via, cseq), ""},
		{"487", msg("SIP/2.0 487 Request Terminated", via, "To: <sip:m1@h>;tag=x1", cseq, "Content-Length: 0"), "z9hG4bK-a1"},
		{"486 compact To", msg("SIP/2.0 486 Busy Here", via, "t:  \"M\" <sip:m1@h>;tag=x2 ", cseq), "z9hG4bK-a1"},
		{"603", msg("SIP/2.0 603 Decline", via, "To: <sip:m1@h>;tag=x3", cseq), "z9hG4bK-a1"},
		{"two Tos", msg("SIP/2.0 486 Busy Here", via, "To: <sip:m1@h>;tag=x1", "To: <sip:m2@h>", cseq), ""},
		{"empty To", msg("SIP/2.0 486 Busy Here", via, "To:", cseq), ""},
		{"302: its Contacts are parsed", msg("SIP/2.0 302 Moved", via, "To: <sip:m1@h>;tag=x1", "Contact: <sip:x@y>", cseq), ""},
		{"487 with a body", append(msg("SIP/2.0 487 Request Terminated", via, "To: <sip:m1@h>;tag=x1", cseq, "Content-Length: 3"), "v=0"...), ""},
		{"487 to a CANCEL", msg("SIP/2.0 487 Request Terminated", via, "To: <sip:m1@h>;tag=x1", "CSeq: 1 CANCEL"), ""},
		{"700", msg("SIP/2.0 700 Odd", via, "To: <sip:m1@h>;tag=x1", cseq), ""},
		{"4x7", msg("SIP/2.0 4x7 Odd", via, "To: <sip:m1@h>;tag=x1", cseq), ""},
		{"4000", msg("SIP/2.0 4000 Odd", via, "To: <sip:m1@h>;tag=x1", cseq), ""},
		{"2000 is not 200", msg("SIP/2.0 2000 Odd", via, "CSeq: 1 CANCEL"), ""},
		{"1000 is not 100", msg("SIP/2.0 1000 Odd", via, cseq), ""},
		{"100 to a CANCEL", msg("SIP/2.0 100 Trying", via, "CSeq: 1 CANCEL"), ""},
		{"180 to a CANCEL", msg("SIP/2.0 180 Ringing", via, "CSeq: 1 CANCEL"), ""},
		{"no CSeq", msg("SIP/2.0 100 Trying", via), ""},
		{"not our Via's form", msg("SIP/2.0 100 Trying", "Via: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK-a1", cseq), ""},
		{"not a branch of ours", msg("SIP/2.0 100 Trying", "Via: SIP/2.0/UDP 127.0.0.1;branch=1234", cseq), ""},
		{"no branch", msg("SIP/2.0 100 Trying", "Via: SIP/2.0/UDP 127.0.0.1;rport", cseq), ""},
		{"empty branch", msg("SIP/2.0 100 Trying", "Via: SIP/2.0/UDP 127.0.0.1;branch=", cseq), ""},
		{"folded line", msg("SIP/2.0 100 Trying", via, " ;received=10.0.0.1", cseq), ""},
		{"line without a colon", msg("SIP/2.0 100 Trying", via, "garbage", cseq), ""},
		{"no end of headers", []byte("SIP/2.0 100 Trying\r\n" + via + "\r\n" + cseq), ""},
		{"status line only", []byte("SIP/2.0 100 Trying"), ""},
		{"request", msg("INVITE sip:a@b SIP/2.0", via, cseq), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got, to := lightResponse(tt.data)
			if tt.want == "" {
				if got != nil {
					t.Errorf("got %d %q, want nil", code, got)
				}
				return
			}
			// A failure's To, as it came but for the spaces around it.
			var wantTo string
			if code >= 400 {
				for _, l := range strings.Split(string(tt.data), "\r\n") {
					if n, v, _ := strings.Cut(l, ":"); strings.EqualFold(n, "to") || strings.EqualFold(n, "t") {
						wantTo = strings.TrimSpace(v)
					}
				}
			}
			if string(to) != wantTo {
				t.Errorf("To %q, want %q", to, wantTo)
			}
			if want := int(tt.data[8]-'0')*100 + int(tt.data[9]-'0')*10 + int(tt.data[10]-'0'); code != want {
				t.Errorf("code %d, want %d", code, want)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzLightResponse: whatever lightResponse reads as a 100 or a 180 to an
// INVITE, or a 200 to a CANCEL, the full parser reads the same way, with
// no body and the same top Via branch where it reads one.
func FuzzLightResponse(f *testing.F) {
	f.Add([]byte("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-a1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-a1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 487 Request Terminated\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-a1\r\nTo: <sip:m1@h>;tag=x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-a1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 100 Trying\r\nv: SIP/2.0/UDP a;branch=z9hG4bK-x, SIP/2.0/UDP b\r\ncseq: 2 INVITE\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		code, b, to := lightResponse(data)
		if b == nil {
			return
		}
		method := sipmsg.INVITE
		if code == 200 {
			method = sipmsg.CANCEL
		}
		if (code >= 400) != (to != nil) {
			t.Fatalf("lightResponse read To %q of a %d", to, code)
		}
		msg, err := sipmsg.NewParser().ParseSIP(data)
		if err != nil {
			return // the parser refuses it: the leg would never have seen it
		}
		res, ok := msg.(*sipmsg.Response)
		if !ok || res.StatusCode != code || len(res.Body()) != 0 {
			t.Fatalf("lightResponse took %q as %d, the parser reads %q", data, code, msg.String())
		}
		if cs := res.CSeq(); cs == nil || cs.MethodName != method {
			t.Fatalf("lightResponse took %q as a response to %s, the parser reads CSeq %v", data, method, cs)
		}
		// A top Via the parser cannot read (a sent-by like "0:") loses
		// its branch there; the scanner takes the response anyway, which
		// at worst stops a leg's Timer A, as a 1xx should, or its
		// CANCEL's retransmissions, as a 200 to it should.
		if got := viaBranch(res); got != "" && got != string(b) {
			t.Fatalf("lightResponse read branch %q of %q, the parser %q", b, data, got)
		}
		// The ACK of a failure repeats its To as it came; where the
		// parser reads a tag in it, the same tag is there.
		if code >= 400 && res.To() != nil {
			if tag, _ := res.To().Params.Get("tag"); tag != "" && !strings.Contains(string(to), "tag="+tag) {
				t.Fatalf("lightResponse read To %q of %q, the parser's tag is %q", to, data, tag)
			}
		}
	})
}

func TestRequestBranch(t *testing.T) {
	const rest = "\r\nFrom: <sip:a@b>;tag=1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
	tests := []struct{ name, data, want string }{
		{"ours", "CANCEL sip:600@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-c1;rport" + rest, "z9hG4bK-c1"},
		{"compact, after other headers", "ACK sip:600@h SIP/2.0\r\nMax-Forwards: 70\r\nv: SIP/2.0/UDP a;branch=z9hG4bK-c2, SIP/2.0/UDP b;branch=z9hG4bK-x" + rest, "z9hG4bK-c2"},
		{"top Via only", "ACK sip:600@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK-top\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK-second" + rest, "z9hG4bK-top"},
		{"folded Via", "ACK sip:600@h SIP/2.0\r\nVia: SIP/2.0/UDP a\r\n ;branch=z9hG4bK-f" + rest, ""},
		{"folded line before it", "ACK sip:600@h SIP/2.0\r\nFrom: <sip:a@b>\r\n ;tag=1\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK-f" + rest, ""},
		{"TCP", "ACK sip:600@h SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK-t" + rest, ""},
		{"RFC 2543 branch", "ACK sip:600@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=1234" + rest, ""},
		{"no Via", "ACK sip:600@h SIP/2.0" + rest, ""},
	}
	for _, tt := range tests {
		if got := string(requestBranch([]byte(tt.data))); got != tt.want {
			t.Errorf("%s: requestBranch = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzRequestBranch: where the scanner reads a request's branch, the
// parser reads the same one, or none. A disagreement would send a CANCEL
// for one of our INVITEs to sipgo, which knows no such transaction.
func FuzzRequestBranch(f *testing.F) {
	f.Add([]byte("CANCEL sip:600@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-c1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("ACK sip:600@h SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK-c2, SIP/2.0/UDP b\r\ncseq: 1 ACK\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := requestBranch(data)
		if b == nil {
			return
		}
		msg, err := sipmsg.NewParser().ParseSIP(data)
		if err != nil {
			return
		}
		if got := viaBranch(msg); got != "" && got != string(b) {
			t.Fatalf("requestBranch read branch %q of %q, the parser %q", b, data, got)
		}
	})
}
