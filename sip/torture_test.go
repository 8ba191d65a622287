package sip

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// The torture messages of testdata/torture (RFC 4475's classes, written for
// ringroute, plus what hurts B2BUAs): each NAME.sip is sent as it is, over
// UDP and over a raw TCP connection, and NAME.want says what ringroute must
// do. testdata/torture/README.md describes the format and every message.

const tortureDir = "../testdata/torture"

// tortureConfig is groupConfig with a TCP listener on the UDP port too.
func tortureConfig(members ...string) string {
	cfg := groupConfig("all", members...)
	return strings.Replace(cfg, "listen: [udp://127.0.0.1:%UDP%]", "listen: [udp://127.0.0.1:%UDP%, tcp://127.0.0.1:%UDP%]", 1)
}

// tortureWant is a NAME.want for one transport.
type tortureWant struct {
	kind string // route, answer, drop, close, skip
	code int    // answer
	why  string // skip
	bug  string // a known bug makes the message fail: see skipKnownBug
}

func (w tortureWant) String() string {
	if w.kind == "answer" {
		return fmt.Sprintf("answer %d", w.code)
	}
	return w.kind
}

// parseWant reads the lines of a .want: "route", "drop", "close",
// "answer CODE", "skip: why" and "bug: what", each optionally prefixed by
// the transport it is for ("udp", "tcp").
func parseWant(text, transport string) (tortureWant, error) {
	var w tortureWant
	bug := ""
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		line = strings.TrimSpace(line)
		if tr, rest, ok := strings.Cut(line, " "); ok && (tr == "udp" || tr == "tcp") {
			if tr != transport {
				continue
			}
			line = strings.TrimSpace(rest)
		}
		switch {
		case strings.HasPrefix(line, "bug:"):
			bug = strings.TrimSpace(strings.TrimPrefix(line, "bug:"))
		case line == "route" || line == "drop" || line == "close":
			w = tortureWant{kind: line}
		case strings.HasPrefix(line, "skip:"):
			w = tortureWant{kind: "skip", why: strings.TrimSpace(strings.TrimPrefix(line, "skip:"))}
		case strings.HasPrefix(line, "answer "):
			code, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "answer ")))
			if err != nil || code < 100 || code > 699 {
				return w, fmt.Errorf("bad answer line %q", line)
			}
			w = tortureWant{kind: "answer", code: code}
		default:
			return w, fmt.Errorf("bad line %q", line)
		}
	}
	if w.kind == "" {
		return w, fmt.Errorf("no outcome for %s", transport)
	}
	if w.kind == "close" && transport != "tcp" {
		return w, fmt.Errorf("close is a TCP outcome")
	}
	w.bug = bug
	return w, nil
}

// knownBugs runs the messages whose .want names a bug not fixed yet; they
// fail until it is. Without it they are skipped, so that the suite stays
// green while the fix is pending.
var knownBugs = os.Getenv("RINGROUTE_KNOWN_BUGS") != ""

func skipKnownBug(t *testing.T, w tortureWant) {
	t.Helper()
	if w.bug != "" && !knownBugs {
		t.Skipf("known bug %s (RINGROUTE_KNOWN_BUGS=1 runs it)", w.bug)
	}
}

// fill replaces the placeholders of a torture message (never inside a
// body, so Content-Length stays right).
func fill(raw []byte, vars map[string]string) []byte {
	for k, v := range vars {
		raw = bytes.ReplaceAll(raw, []byte("%"+k+"%"), []byte(v))
	}
	return raw
}

// torture is one message of testdata/torture.
type torture struct {
	name string
	raw  []byte
	want string
}

func loadTorture(t testing.TB, prefix string) []torture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(tortureDir, "*.sip"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no torture messages in %s: %v", tortureDir, err)
	}
	var out []torture
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sip")
		if (prefix == "" && (strings.HasPrefix(name, "seq-") || strings.HasPrefix(name, "resp-"))) ||
			(prefix != "" && !strings.HasPrefix(name, prefix)) {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(strings.TrimSuffix(f, ".sip") + ".want")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, torture{name: name, raw: raw, want: string(want)})
	}
	return out
}

func tortureMessage(t *testing.T, name string) torture {
	t.Helper()
	for _, m := range loadTorture(t, name) {
		if m.name == name {
			return m
		}
	}
	t.Fatalf("no torture message %s", name)
	return torture{}
}

// wire is where a torture message is sent from: the UDP caller peer, or a
// raw TCP connection whose responses land in a peer's inbox.
type wire struct {
	p      *peer
	tcp    net.Conn
	local  string
	closed <-chan struct{} // TCP: the server closed the connection
}

func (w *wire) write(t *testing.T, b []byte) {
	t.Helper()
	if w.tcp != nil {
		if _, err := w.tcp.Write(b); err != nil {
			t.Fatalf("tcp write: %v", err)
		}
		return
	}
	if _, err := w.p.conn.WriteToUDP(b, w.p.to); err != nil {
		t.Fatalf("udp write: %v", err)
	}
}

func udpWire(p *peer) *wire {
	return &wire{p: p, local: p.conn.LocalAddr().String()}
}

// tcpWire connects to the server's TCP listener; every message ringroute
// sends on it must parse.
func tcpWire(t *testing.T, s *Server, name string) *wire {
	t.Helper()
	ap, ok := s.Addr("tcp")
	if !ok {
		t.Fatal("no tcp listener")
	}
	c, err := net.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	w := &wire{tcp: c, local: c.LocalAddr().String(),
		p: &peer{t: t, name: name, in: make(chan sipmsg.Message, 64)}}
	w.closed = streamInto(t, c, w.p)
	t.Cleanup(func() { c.Close(); <-w.closed })
	return w
}

// streamInto feeds p every message ringroute sends on the stream c, until
// c closes; the channel it returns is closed then.
func streamInto(t *testing.T, c net.Conn, p *peer) <-chan struct{} {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		par := sipmsg.NewParser().NewSIPStream()
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			err = par.ParseSIPStream(buf[:n], func(m sipmsg.Message) {
				p.mu.Lock()
				p.seen = append(p.seen, m)
				p.mu.Unlock()
				select {
				case p.in <- m:
				default: // nobody reads any more; never block the close
				}
			})
			if err != nil && err != sipmsg.ErrParseSipPartial {
				t.Errorf("%s: ringroute sent an unparsable message over a stream: %v", p.name, err)
				return
			}
		}
	}()
	return closed
}

func isFinalNot100(m sipmsg.Message) bool {
	r, ok := m.(*sipmsg.Response)
	return ok && r.StatusCode > 100
}

// options checks that the server answers an OPTIONS on w.
func (w *wire) options(t *testing.T, server string) {
	t.Helper()
	cid := "alive-" + sipmsg.GenerateTagN(8)
	tr := "UDP"
	if w.tcp != nil {
		tr = "TCP"
	}
	w.write(t, []byte(fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK-%s\r\n"+
		"From: <sip:probe@example.net>;tag=p\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", server, tr, w.local, cid, server, cid)))
	w.p.next("200 to OPTIONS "+cid, func(m sipmsg.Message) bool {
		r, ok := m.(*sipmsg.Response)
		return ok && r.StatusCode == 200 && r.CallID() != nil && r.CallID().Value() == cid
	}, wait)
}

// answerNotRing waits for the response ok accepts on w; the member being
// rung first is a failure.
func answerNotRing(t *testing.T, w *wire, member *peer, what string, ok func(sipmsg.Message) bool) *sipmsg.Response {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case x := <-w.p.in:
			if ok(x) {
				return x.(*sipmsg.Response)
			}
		case x := <-member.in:
			if r, isReq := x.(*sipmsg.Request); isReq && r.IsInvite() {
				t.Fatalf("the member was rung; want %s", what)
			}
		case <-deadline:
			t.Fatalf("no %s within %v", what, wait)
		}
	}
}

// ringNotAnswer waits for the member's INVITE; a final response to the
// sender first is a failure.
func ringNotAnswer(t *testing.T, w *wire, member *peer) *sipmsg.Request {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case x := <-member.in:
			if r, ok := x.(*sipmsg.Request); ok && r.IsInvite() {
				return r
			}
		case x := <-w.p.in:
			// (dblreq over TCP: the OPTIONS behind the INVITE is answered.)
			if r, ok := x.(*sipmsg.Response); ok && r.StatusCode > 100 && r.CSeq() != nil && r.CSeq().MethodName == sipmsg.INVITE {
				t.Fatalf("answered %d %s instead of ringing the member", r.StatusCode, r.Reason)
			}
		case <-w.closed:
			t.Fatalf("the server closed the connection instead of ringing the member")
		case <-deadline:
			t.Fatalf("the member was not rung within %v", wait)
		}
	}
}

// refuseAtEnd makes the member refuse, when the test ends, every INVITE it
// got, so that a test that failed half-way leaves no call ringing into the
// leak checks.
func refuseAtEnd(t *testing.T, member *peer) {
	t.Cleanup(func() {
		member.mu.Lock()
		seen := append([]sipmsg.Message(nil), member.seen...)
		member.mu.Unlock()
		for _, m := range seen {
			if r, ok := m.(*sipmsg.Request); ok && r.IsInvite() {
				res := sipmsg.NewResponseFromRequest(r, 486, "Busy Here", nil)
				res.To().Params.Add("tag", "m")
				_, _ = member.conn.WriteToUDP([]byte(res.String()), member.to)
			}
		}
	})
}

// noLiveCalls waits until the server has no call and no leg left.
func noLiveCalls(t *testing.T, s *Server, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		calls, legs := s.Live()
		if calls == 0 && legs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stuck: %d calls and %d legs still alive after %v", calls, legs, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkLegInvite: the headers that reach a member are clean whatever the
// caller sent (the body passes as it came in direct mode).
func checkLegInvite(t *testing.T, inv *sipmsg.Request) {
	t.Helper()
	for _, h := range inv.Headers() {
		if strings.ContainsAny(h.Value(), "\r\n\x00") {
			t.Errorf("INVITE to the member has a line break or NUL inside %s: %q", h.Name(), h.Value())
		}
		switch n := strings.ToLower(h.Name()); {
		case strings.HasPrefix(n, "x-"), n == "subject", n == "route", n == "date", n == "reply-to":
			// None of the caller's headers is copied (docs/behaviour.md),
			// nor the headers a request-URI carries after '?'.
			t.Errorf("INVITE to the member carries the caller's %s header", h.Name())
		}
	}
}

// TestTorture: every torture message over UDP and TCP does what its .want
// says, rings nobody unless it is routed, leaves no call behind, and the
// server answers OPTIONS after it.
func TestTorture(t *testing.T) {
	msgs := loadTorture(t, "")
	for _, m := range msgs {
		for _, tr := range []string{"udp", "tcp"} {
			t.Run(m.name+"/"+tr, func(t *testing.T) {
				w, err := parseWant(m.want, tr)
				if err != nil {
					t.Fatalf("%s.want: %v", m.name, err)
				}
				if w.kind == "skip" {
					t.Skip(w.why)
				}
				skipKnownBug(t, w)
				runTorture(t, m, tr, w)
			})
		}
	}
}

func runTorture(t *testing.T, m torture, tr string, want tortureWant) {
	member, caller := newPeer(t, "m"), newPeer(t, "caller")
	s, _ := startServer(t, tortureConfig(member.uri("m")), caller, member)
	refuseAtEnd(t, member)
	server := caller.to.String()
	w := udpWire(caller)
	if tr == "tcp" {
		w = tcpWire(t, s, "tcp-caller")
	}
	id := tr + "-" + sipmsg.GenerateTagN(10)
	msg := fill(m.raw, map[string]string{"SERVER": server, "PEER": w.local, "ID": id, "TRANSPORT": strings.ToUpper(tr)})
	w.write(t, msg)

	switch want.kind {
	case "route":
		inv := ringNotAnswer(t, w, member)
		checkLegInvite(t, inv)
		if sent, err := sipmsg.ParseMessage(msg); err == nil && !bytes.Equal(sent.Body(), inv.Body()) {
			// Direct mode passes the offer as it came, Content-Length bytes of it.
			t.Errorf("member got body %q, want the caller's %q", inv.Body(), sent.Body())
		}
		member.reply(inv, 486, "m", "")
		w.p.response(486, wait)
	case "answer":
		got := answerNotRing(t, w, member, want.String(), isFinalNot100)
		if got.StatusCode != want.code {
			t.Fatalf("got %d %s, want %s", got.StatusCode, got.Reason, want)
		}
		if got.SipVersion != "SIP/2.0" {
			t.Errorf("answer sent as %q", got.SipVersion)
		}
	case "drop":
		// Over UDP an OPTIONS behind it: its 200 shows the message was read,
		// and nothing came for it. Over TCP the server may have closed the
		// connection over the message, or wait for the rest of it (where
		// anything sent behind it would become its body): a quiet while.
		cid := "behind-" + id
		deadline := time.After(250 * time.Millisecond)
		if tr == "udp" {
			w.write(t, []byte(fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s\r\n"+
				"From: <sip:probe@example.net>;tag=p\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"+
				"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", server, w.local, cid, server, cid)))
			deadline = time.After(wait)
		}
		answered := false
	wait:
		for {
			select {
			case x := <-w.p.in:
				if r, ok := x.(*sipmsg.Response); ok && r.StatusCode == 200 && r.CallID() != nil && r.CallID().Value() == cid {
					answered = true
					deadline = time.After(100 * time.Millisecond)
					continue
				}
				t.Fatalf("response to a dropped message:\n%s", x)
			case <-w.closed:
				break wait
			case <-deadline:
				break wait
			}
		}
		if tr == "udp" && !answered {
			t.Fatalf("no 200 for the OPTIONS behind the message")
		}
	case "close":
		select {
		case <-w.closed:
		case <-time.After(wait):
			t.Fatalf("the server kept the connection open")
		}
		// What came complete before the framing error may have been taken
		// (sipgo hands it on while it closes the connection): a call it
		// started must end like any other.
		select {
		case x := <-member.in:
			if inv, ok := x.(*sipmsg.Request); ok && inv.IsInvite() {
				member.reply(inv, 486, "m", "")
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	if want.kind == "answer" {
		member.quiet("INVITE", isReq(sipmsg.INVITE), 50*time.Millisecond)
	}
	if n := member.count(sipmsg.INVITE); (want.kind == "answer" || want.kind == "drop") && n != 0 {
		t.Errorf("member got %d INVITEs for a message that was not routed", n)
	}
	if n := member.count(sipmsg.INVITE); want.kind == "close" && n > 1 {
		t.Errorf("member got %d INVITEs", n)
	}
	if n := member.count(sipmsg.INVITE); want.kind == "route" && n != 1 {
		t.Errorf("member got %d INVITEs, want exactly 1", n)
	}
	// Still serving, on both transports, and nothing stuck.
	udpWire(caller).options(t, server)
	tcpWire(t, s, "tcp-probe").options(t, server)
	noLiveCalls(t, s, 5*time.Second)
}

// TestTortureSequences: the same call arriving again must not fork twice:
// a retransmission is absorbed, a merged request (same Call-ID, From tag
// and CSeq, another branch: RFC 3261 §8.2.2.2) gets 482, and a new INVITE
// with a higher CSeq while the first has no final response yet gets 500
// with Retry-After (§14.2), and so does the same once more on a third
// branch. Once the first call has its final response a
// new CSeq is a new call: that is how a caller retries after a challenge.
func TestTortureSequences(t *testing.T) {
	first := tortureMessage(t, "seq-first-invite")
	steps := []struct {
		name   string
		second torture
		// ringing: the member has sent 180 for the first INVITE and holds
		// it; else it has refused it (486) before the second is sent.
		ringing bool
		retrans bool
	}{
		{"retransmission", first, true, true},
		{"merged", tortureMessage(t, "seq-merged-invite"), true, false},
		{"new-cseq", tortureMessage(t, "seq-new-cseq-invite"), true, false},
		{"new-cseq-after-final", tortureMessage(t, "seq-new-cseq-invite"), false, false},
	}
	for _, st := range steps {
		for _, tr := range []string{"udp", "tcp"} {
			t.Run(st.name+"/"+tr, func(t *testing.T) {
				want, err := parseWant(st.second.want, tr)
				if err != nil {
					t.Fatal(err)
				}
				if st.ringing && !st.retrans {
					skipKnownBug(t, want)
				}
				member, caller := newPeer(t, "m"), newPeer(t, "caller")
				s, _ := startServer(t, tortureConfig(member.uri("m")), caller, member)
				refuseAtEnd(t, member)
				server := caller.to.String()
				w := udpWire(caller)
				if tr == "tcp" {
					w = tcpWire(t, s, "tcp-caller")
				}
				vars := map[string]string{"SERVER": server, "PEER": w.local, "ID": tr + "-" + sipmsg.GenerateTagN(10), "TRANSPORT": strings.ToUpper(tr)}
				b1, b2 := branchOf(t, first, vars), branchOf(t, st.second, vars)
				w.write(t, fill(first.raw, vars))
				inv := member.request(sipmsg.INVITE, wait)
				if st.ringing {
					member.reply(inv, 180, "m", "")
					w.p.response(180, wait)
				} else {
					member.reply(inv, 486, "m", "")
					w.p.response(486, wait)
				}

				w.write(t, fill(st.second.raw, vars))
				if !st.ringing {
					// After the final response the same Call-ID with a new
					// CSeq is a new call.
					want = tortureWant{kind: "route"}
				}
				switch {
				case st.retrans:
					member.quiet("second INVITE for a retransmission", isReq(sipmsg.INVITE), 300*time.Millisecond)
				case want.kind == "route":
					inv2 := member.request(sipmsg.INVITE, wait)
					member.reply(inv2, 486, "m2", "")
					w.p.next("486 for the second INVITE", func(m sipmsg.Message) bool {
						r, ok := m.(*sipmsg.Response)
						return ok && r.StatusCode == 486 && r.CSeq().SeqNo == 2
					}, wait)
				case want.kind == "answer":
					got := answerNotRing(t, w, member, want.String()+" for the second INVITE", func(m sipmsg.Message) bool {
						r, ok := m.(*sipmsg.Response)
						return ok && r.StatusCode > 100 && viaBranch(r) == b2
					})
					if got.StatusCode != want.code {
						t.Errorf("second INVITE got %d %s, want %s", got.StatusCode, got.Reason, want)
					}
					if want.code == 500 && got.GetHeader("Retry-After") == nil {
						t.Errorf("500 without Retry-After (RFC 3261 §14.2)")
					}
					// Refusing it must not have freed the first call's place:
					// the same again on a third branch gets the same answer.
					b3 := b2 + "-again"
					w.write(t, bytes.Replace(fill(st.second.raw, vars), []byte(b2), []byte(b3), 1))
					again := answerNotRing(t, w, member, want.String()+" for the third INVITE", func(m sipmsg.Message) bool {
						r, ok := m.(*sipmsg.Response)
						return ok && r.StatusCode > 100 && viaBranch(r) == b3
					})
					if again.StatusCode != want.code {
						t.Errorf("third INVITE got %d %s, want %s", again.StatusCode, again.Reason, want)
					}
					member.quiet("second INVITE", isReq(sipmsg.INVITE), 100*time.Millisecond)
				default:
					t.Fatalf("want %s: not a sequence outcome", want)
				}
				if st.ringing {
					member.reply(inv, 486, "m", "")
					w.p.next("486 for the first INVITE", func(m sipmsg.Message) bool {
						r, ok := m.(*sipmsg.Response)
						return ok && r.StatusCode == 486 && viaBranch(r) == b1
					}, wait)
				}
				wantInvites := 1
				if want.kind == "route" && !st.retrans {
					wantInvites = 2
				}
				if n := member.count(sipmsg.INVITE); n != wantInvites {
					t.Errorf("member got %d INVITEs, want %d", n, wantInvites)
				}
				udpWire(caller).options(t, server)
				noLiveCalls(t, s, 5*time.Second)
			})
		}
	}
}

// branchOf is the top Via branch of a torture message as sent.
func branchOf(t *testing.T, m torture, vars map[string]string) string {
	t.Helper()
	msg, err := sipmsg.ParseMessage(fill(m.raw, vars))
	if err != nil {
		t.Fatalf("%s: %v", m.name, err)
	}
	return viaBranch(msg)
}

func viaBranch(m sipmsg.Message) string {
	if v := m.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		return b
	}
	return ""
}

// TestTortureMemberResponses: odd and broken responses from a member
// (resp-*.sip, placeholders filled from the INVITE ringroute sent it),
// each followed by a clean 603. The .want's code is the member's final
// response as ringroute took it (the leg's code in the CDR): 486 when the
// odd response was understood, 603 when it was dropped. Either way the
// caller gets its final response and nothing is left.
func TestTortureMemberResponses(t *testing.T) {
	for _, m := range loadTorture(t, "resp-") {
		t.Run(m.name, func(t *testing.T) {
			want, err := parseWant(m.want, "udp")
			if err != nil || want.kind != "answer" {
				t.Fatalf("%s.want: %v %s", m.name, err, want)
			}
			skipKnownBug(t, want)
			member, caller := newPeer(t, "m"), newPeer(t, "caller")
			s, cdrs := startServer(t, tortureConfig(member.uri("m")), caller, member)
			caller.invite("600")
			inv := member.request(sipmsg.INVITE, wait)
			id := sipmsg.GenerateTagN(8)
			raw := fill(m.raw, map[string]string{
				"VIA": inv.Via().Value(), "FROM": inv.From().Value(), "TO": inv.To().Value(),
				"CALLID": inv.CallID().Value(), "CSEQ": strconv.Itoa(int(inv.CSeq().SeqNo)), "ID": id,
			})
			if _, err := member.conn.WriteToUDP(raw, member.to); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			member.reply(inv, 603, "m-"+id, "")
			if got := caller.next("final response", isFinalNot100, wait).(*sipmsg.Response); got.StatusCode < 400 {
				t.Errorf("caller got %d for a member that refused", got.StatusCode)
			}
			rec := cdrs.wait(t, 1)[0]
			if len(rec.Legs) != 1 || rec.Legs[0].Code != want.code {
				t.Errorf("leg CDR %+v, want the member's %d", rec.Legs, want.code)
			}
			udpWire(caller).options(t, caller.to.String())
			noLiveCalls(t, s, 5*time.Second)
		})
	}
}
