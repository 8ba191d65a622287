package sip

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestUDPReaderTakesLegResponses: a response to a leg's INVITE or CANCEL
// goes from the socket straight to its call's inbox, marked as sipgo marks
// what it reads, in the order it came; everything else (a request, a
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
	c := &call{s: s, inboxWake: make(chan struct{}, 1)}
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
	// the request again; the leg's four responses never reach it.
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

	select {
	case <-c.inboxWake:
	default:
		t.Fatal("the call was not woken")
	}
	q := c.takeInbox()
	wantCodes := []struct {
		code   int
		method string
	}{{100, "INVITE"}, {180, "INVITE"}, {200, "CANCEL"}, {487, "INVITE"}}
	if len(q) != len(wantCodes) {
		t.Fatalf("the call got %d responses, want %d", len(q), len(wantCodes))
	}
	src := netip.MustParseAddrPort(peer.LocalAddr().String()).String()
	for i, w := range wantCodes {
		res := q[i].res
		if q[i].leg != leg || res.StatusCode != w.code || string(res.CSeq().MethodName) != w.method {
			t.Errorf("response %d: %d %s for leg %p, want %d %s for %p", i, res.StatusCode, res.CSeq().MethodName, q[i].leg, w.code, w.method, leg)
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
