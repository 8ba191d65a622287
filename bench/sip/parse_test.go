package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The bench itself only runs by hand (make bench); these check its
// parsers on canned input and take milliseconds.

func TestBencodeRoundTrip(t *testing.T) {
	in := map[string]any{"command": "offer", "call-id": "c1", "sdp": "v=0\r\n", "n": 3, "flags": []any{"a", "b"}, "d": map[string]any{"x": "y"}}
	b := bencode(in)
	if want := "d7:call-id2:c17:command5:offer1:dd1:x1:ye5:flagsl1:a1:be1:ni3e3:sdp5:v=0\r\ne"; string(b) != want {
		t.Fatalf("bencode = %q, want %q", b, want)
	}
	out, rest, err := bdecode(b)
	if err != nil || len(rest) != 0 {
		t.Fatalf("bdecode: %v, rest %q", err, rest)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip: %#v", out)
	}
	for _, bad := range []string{"", "d3:abc", "l1:a", "5:ab", "i12", "x"} {
		if _, _, err := bdecode([]byte(bad)); err == nil {
			t.Errorf("bdecode(%q): no error", bad)
		}
	}
}

func TestReadStatsLastCompleteLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.csv")
	csv := "StartTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(C);FailedTimeoutOnRecv(C);Retransmissions(C);\n" +
		"x;1;1;0;0;0;\n" +
		"x;5;6;2;2;7;\n" +
		"x;5;6\n" // cut short: ignored
	if err := os.WriteFile(p, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := readStats(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.n("SuccessfulCall") != 6 || st.n("FailedCall") != 2 || st.n("Retransmissions") != 7 {
		t.Fatalf("stats %v", st)
	}
	if f := st.failures(); !reflect.DeepEqual(f, []string{"FailedTimeoutOnRecv 2"}) {
		t.Fatalf("failures %v", f)
	}
}

func TestErrorReasons(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "e.log")
	// SIPp writes entries without a newline between them.
	log := "The following events occurred:\n" +
		"2026-12-01\t20:27:35.324741\t1796156855.324741: Aborting call on unexpected message for Call-Id '1-5437@127.0.0.1': while expecting '200' (index 8), received 'SIP/2.0 404 Not here\nVia: x\n'" +
		"2026-12-01\t20:27:35.325505\t1796156855.325505: Aborting call on unexpected message for Call-Id '2-5437@127.0.0.1': while expecting '200' (index 8), received 'SIP/2.0 404 Not here\nVia: y\n'" +
		"2026-12-01\t20:27:45.323709\t1796156865.323709: Call-Id: 1-5437@127.0.0.1, receive timeout on message bench hold:2, jumping to label 3" +
		"2026-12-01\t20:28:25.236665\t1796156905.236665: Aborting call on an unexpected BYE for call: 88-6967@127.0.0.1" +
		"2026-12-01\t20:28:25.239924\t1796156905.239924: Dead call 1-1@127.0.0.1 (successful), received 'ACK'"
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := errorReasons(p, 5)
	want := []string{
		"2× Aborting call on unexpected message for Call-Id …: while expecting '200' (index 8), received 'SIP/2.0 404 Not here",
		"1× Aborting call on an unexpected BYE for call: …",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("errorReasons:\n%q\nwant\n%q", got, want)
	}
}

func TestPercentilesAndRate(t *testing.T) {
	var v []float64
	for i := 1; i <= 100; i++ {
		v = append(v, float64(i))
	}
	p := percentiles(v)
	if p.N != 100 || p.P50 != 51 || p.P95 != 96 || p.P99 != 100 || p.Max != 100 {
		t.Fatalf("percentiles %+v", p)
	}
	r := rttData{at: map[string][]float64{"placed": {0, 250, 500, 750, 1000}}}
	if got := r.rate("placed"); got != 4 {
		t.Fatalf("rate %v, want 4/s", got)
	}
}

func TestKnee(t *testing.T) {
	s := func(r int, pass bool) *stepResult { return &stepResult{Rate: r, Pass: pass} }
	k := knee([]*stepResult{s(200, true), s(400, true), s(800, false), s(600, true)})
	if k.rate != 600 || k.fail == nil || k.fail.Rate != 800 || k.topped {
		t.Fatalf("knee %+v", k)
	}
	// A pass above a failure does not count.
	if k := knee([]*stepResult{s(200, true), s(400, false), s(600, true)}); k.rate != 200 {
		t.Fatalf("knee %d, want 200", k.rate)
	}
	if k := knee([]*stepResult{s(200, true), s(400, true)}); !k.topped || k.rate != 400 {
		t.Fatalf("knee %+v", k)
	}
}

func TestSIPHeaders(t *testing.T) {
	msg := []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060\r\nf: \"bench\" <sip:c42@127.0.0.1:35080>;tag=1\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\n")
	if u := fromUser(msg); u != "c42" {
		t.Fatalf("fromUser %q", u)
	}
	if !cseqInvite(msg) {
		t.Fatal("cseqInvite false")
	}
	if cseqInvite([]byte("SIP/2.0 200 OK\r\nCSeq: 2 BYE\r\n\r\n")) {
		t.Fatal("cseqInvite true for BYE")
	}
}

func TestConfigs(t *testing.T) {
	e := &env{ports: newPorts(35000), kamVersion: "test"}
	rr := ringrouteConfig(e, sutOpts{media: "relay", sc: scenarios["linear"], users: 2})
	for _, want := range []string{"listen: [udp://127.0.0.1:35060]", "mode: relay", "u00001, password: bench", "member_timeout: 500ms", "{uri: sip:m1@127.0.0.1:35071, timeout: 30s}"} {
		if !strings.Contains(rr, want) {
			t.Errorf("ringroute config lacks %q:\n%s", want, rr)
		}
	}
	path := filepath.Join(t.TempDir(), "k.cfg")
	if err := writeKamailioCfg(e, path, sutOpts{media: "relay", sc: scenarios["linear"]}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{"listen=udp:127.0.0.1:35062", "rtpengine_offer();", "failure_route[THIRD]", "t_set_fr(500, 2000);", "maxbuffer=4194304"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("kamailio config lacks %q:\n%s", want, b)
		}
	}
	if err := writeKamailioCfg(e, path, sutOpts{media: "direct", sc: scenarios["parallel"]}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if !strings.Contains(string(b), `append_branch("sip:m3@127.0.0.1:35073");`) || strings.Contains(string(b), "rtpengine") {
		t.Errorf("parallel direct kamailio config:\n%s", b)
	}
	for _, name := range []string{"caller", "answer", "ring", "hold", "register"} {
		if _, err := writeScenario(t.TempDir(), name, map[string]any{"AnswerTimeoutMs": 1, "ByeTimeoutMs": 1, "CancelTimeoutMs": 1, "HoldMs": 1}); err != nil {
			t.Errorf("scenario %s: %v", name, err)
		}
	}
}
