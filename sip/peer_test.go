package sip

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/routing"
)

// peer is a scripted SIP phone on a loopback UDP socket: the test reads
// what ringroute sends it and writes exactly what it should answer, so
// races (a 2xx crossing a CANCEL, a second 2xx with another tag) can be
// staged to the message.
type peer struct {
	t    *testing.T
	name string
	conn *net.UDPConn
	in   chan sipmsg.Message
	to   *net.UDPAddr // ringroute
	mu   sync.Mutex
	seen []sipmsg.Message
}

func newPeer(t *testing.T, name string) *peer {
	t.Helper()
	return newPeerAt(t, name, net.IPv4(127, 0, 0, 1))
}

// newPeerAt is a peer on another loopback address: 127.0.0.1 is the test
// configs' trunk, anything else is a phone that must authenticate.
func newPeerAt(t *testing.T, name string, ip net.IP) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, name: name, conn: c, in: make(chan sipmsg.Message, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := sipmsg.ParseMessage(append([]byte(nil), buf[:n]...))
			if err != nil {
				t.Errorf("%s: ringroute sent an unparsable message: %v\n%s", name, err, buf[:n])
				continue
			}
			p.mu.Lock()
			p.seen = append(p.seen, m)
			p.mu.Unlock()
			p.in <- m
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return p
}

func (p *peer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

func (p *peer) ip() string { return p.conn.LocalAddr().(*net.UDPAddr).IP.String() }

func (p *peer) uri(user string) string { return fmt.Sprintf("sip:%s@%s:%d", user, p.ip(), p.port()) }

// send writes a message; "\n" become CRLF and Content-Length is filled in.
func (p *peer) send(msg string) {
	p.t.Helper()
	head, body, _ := strings.Cut(msg, "\n\n")
	head = strings.TrimLeft(head, "\n")
	text := strings.ReplaceAll(head, "\n", "\r\n") + fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", len(body)) + body
	if _, err := p.conn.WriteToUDP([]byte(text), p.to); err != nil {
		p.t.Fatal(err)
	}
}

// sendMsg writes a sipgo message.
func (p *peer) sendMsg(m sipmsg.Message) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDP([]byte(m.String()), p.to); err != nil {
		p.t.Fatal(err)
	}
}

// next waits for the next message matching ok, skipping 100 Trying and
// retransmissions the test does not care about.
func (p *peer) next(what string, ok func(sipmsg.Message) bool, d time.Duration) sipmsg.Message {
	p.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-p.in:
			if ok(m) {
				return m
			}
		case <-deadline:
			p.t.Fatalf("%s: no %s within %v", p.name, what, d)
			return nil
		}
	}
}

func (p *peer) request(method sipmsg.RequestMethod, d time.Duration) *sipmsg.Request {
	p.t.Helper()
	return p.next(string(method), func(m sipmsg.Message) bool {
		r, ok := m.(*sipmsg.Request)
		return ok && r.Method == method
	}, d).(*sipmsg.Request)
}

func (p *peer) response(code int, d time.Duration) *sipmsg.Response {
	p.t.Helper()
	return p.next(fmt.Sprintf("%d response", code), func(m sipmsg.Message) bool {
		r, ok := m.(*sipmsg.Response)
		return ok && r.StatusCode == code
	}, d).(*sipmsg.Response)
}

// count is how many requests of method the peer received.
func (p *peer) count(method sipmsg.RequestMethod) int { return p.countOf(isReq(method)) }

// countOf is how many messages the peer received that ok accepts.
func (p *peer) countOf(ok func(sipmsg.Message) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.seen {
		if ok(m) {
			n++
		}
	}
	return n
}

// quiet asserts that nothing matching ok arrives for d.
func (p *peer) quiet(what string, ok func(sipmsg.Message) bool, d time.Duration) {
	p.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-p.in:
			if ok(m) {
				p.t.Fatalf("%s: unexpected %s:\n%s", p.name, what, m)
			}
		case <-deadline:
			return
		}
	}
}

// reply answers req as a member would: totag is the member's dialog tag.
func (p *peer) reply(req *sipmsg.Request, code int, totag string, body string) *sipmsg.Response {
	p.t.Helper()
	res := p.responseTo(req, code, totag, body)
	p.sendMsg(res)
	return res
}

// responseTo is the response reply sends, not sent.
func (p *peer) responseTo(req *sipmsg.Request, code int, totag string, body string) *sipmsg.Response {
	res := sipmsg.NewResponseFromRequest(req, code, reasonPhrase(code), nil)
	if totag != "" {
		res.To().Params.Add("tag", totag)
	}
	if code >= 180 && code < 300 {
		res.AppendHeader(sipmsg.NewHeader("Contact", fmt.Sprintf("<sip:%s@%s:%d>", p.name, p.ip(), p.port())))
	}
	if body != "" {
		res.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	}
	res.SetBody([]byte(body))
	return res
}

// ackFor is the ACK a caller sends for a 2xx.
func (p *peer) ackFor(res *sipmsg.Response) {
	p.t.Helper()
	ct := res.Contact()
	p.send(fmt.Sprintf(`ACK %s SIP/2.0
Via: SIP/2.0/UDP `+p.ip()+`:%d;branch=z9hG4bK-ack-%s
From: %s
To: %s
Call-ID: %s
CSeq: %d ACK
Max-Forwards: 70

`, ct.Address.String(), p.port(), sipmsg.GenerateTagN(8), res.From().Value(), res.To().Value(), res.CallID().Value(), res.CSeq().SeqNo))
}

const sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

// invite sends a new INVITE from the caller peer to number and returns its
// Call-ID.
func (p *peer) invite(number string) string {
	p.t.Helper()
	cid := "test-" + sipmsg.GenerateTagN(10)
	p.send(p.inviteText(number, cid))
	return cid
}

// inviteText is the INVITE invite sends for Call-ID cid; sent again, it is
// a retransmission (same branch).
func (p *peer) inviteText(number, cid string) string {
	return fmt.Sprintf(`INVITE sip:%s@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP `+p.ip()+`:%d;branch=z9hG4bK-%s
From: "Alice" <sip:+15551234@`+p.ip()+`:%d>;tag=caller1
To: <sip:%s@127.0.0.1:%d>
Call-ID: %s
CSeq: 1 INVITE
Max-Forwards: 70
Contact: <sip:caller@`+p.ip()+`:%d>
Content-Type: application/sdp

%s`, number, p.to.Port, p.port(), cid, p.port(), number, p.to.Port, cid, p.port(), sdp)
}

// startServer runs ringroute on cfgText, with %UDP% replaced by a free
// loopback port, and returns it with the caller peer pointed at it.
func startServer(t *testing.T, cfgText string, peers ...*peer) (*Server, *cdrRecorder) {
	t.Helper()
	return startServerWith(t, cfgText, Options{}, peers...)
}

// startServerWith is startServer with options (Log and CDR are set here).
func startServerWith(t *testing.T, cfgText string, opts Options, peers ...*peer) (*Server, *cdrRecorder) {
	t.Helper()
	port := freeUDPPort(t)
	cfgText = strings.ReplaceAll(cfgText, "%UDP%", fmt.Sprint(port))
	cfg, err := config.Parse("test.yaml", []byte(cfgText))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	rec := &cdrRecorder{}
	baseline := runtime.NumGoroutine()
	opts.Log = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	opts.CDR = rec
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	ap, _ := s.Addr("udp")
	for _, p := range peers {
		p.to = net.UDPAddrFromAddrPort(ap)
	}
	t.Cleanup(func() {
		// No call, leg or goroutine of ours outlives the test's calls.
		deadline := time.Now().Add(10 * time.Second)
		for {
			calls, legs := s.Live()
			if calls == 0 && legs == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("leak: %d calls and %d legs still alive", calls, legs)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		s.Close()
		// Closing the server ends every transaction and socket: what was
		// started for the calls must be gone too.
		deadline = time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > baseline {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("leak: %d goroutines, %d before the server started\n%s",
					runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return s, rec
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		u.Close()
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

type cdrRecorder struct {
	mu   sync.Mutex
	recs []routing.Record
}

func (c *cdrRecorder) Write(r routing.Record) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}

// wait returns the CDRs once there are n.
func (c *cdrRecorder) wait(t *testing.T, n int) []routing.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		got := append([]routing.Record(nil), c.recs...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d CDRs, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func groupConfig(strategy string, members ...string) string {
	var ms []string
	for _, m := range members {
		ms = append(ms, fmt.Sprintf("{uri: %q}", m))
	}
	return fmt.Sprintf(`
listen: [udp://127.0.0.1:%%UDP%%]
media: {mode: direct}
admin: {listen: ""}
cdr: {path: ""}
registrar: {state_file: ""}
trunks: [{name: local, from: [127.0.0.1/32]}]
groups:
  - name: sales
    extension: "600"
    strategy: %s
    timeout: 3s
    member_timeout: 2s
    retry_delay: 0s
    members: [%s]
`, strategy, strings.Join(ms, ", "))
}
