package sip

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/ringroute/ringroute/config"
)

// tlsPeer is a caller on a TLS connection to ringroute's tls:// listener.
// It trusts only the certificate it is given, so a handshake that succeeds
// proves which certificate ringroute presented. What it reads goes to the
// embedded peer, so next, response and request work as for UDP peers.
type tlsPeer struct {
	*peer
	conn *tls.Conn
}

func certPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", file)
	}
	return pool
}

func dialTLS(t *testing.T, addr, trust string) (*tls.Conn, error) {
	t.Helper()
	return tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: certPool(t, trust), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
}

func newTLSPeer(t *testing.T, addr, trust string) *tlsPeer {
	t.Helper()
	c, err := dialTLS(t, addr, trust)
	if err != nil {
		t.Fatalf("TLS handshake with ringroute: %v", err)
	}
	p := &tlsPeer{peer: &peer{t: t, name: "tls caller", in: make(chan sipmsg.Message, 64)}, conn: c}
	closed := streamInto(t, c, p.peer)
	t.Cleanup(func() { c.Close(); <-closed })
	return p
}

func (p *tlsPeer) local() string { return p.conn.LocalAddr().String() }

func (p *tlsPeer) send(msg string) {
	p.t.Helper()
	head, body, _ := strings.Cut(msg, "\n\n")
	head = strings.TrimLeft(head, "\n")
	text := strings.ReplaceAll(head, "\n", "\r\n") + fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", len(body)) + body
	if _, err := p.conn.Write([]byte(text)); err != nil {
		p.t.Fatal(err)
	}
}

func tlsConfig(member, cert, key string) string {
	return fmt.Sprintf(`
listen: [udp://127.0.0.1:%%UDP%%, tls://127.0.0.1:%%UDP%%]
tls: {cert: %s, key: %s}
media: {mode: direct}
admin: {listen: ""}
cdr: {path: ""}
registrar: {state_file: ""}
trunks: [{name: local, from: [127.0.0.1/32]}]
groups:
  - name: sales
    extension: "600"
    strategy: all
    timeout: 3s
    member_timeout: 2s
    members: [{uri: %q}]
`, cert, key, member)
}

// A trunk calling over TLS is answered on its connection, the member is
// rung over UDP, and ringroute's own BYE reaches the caller over the
// connection the caller opened (its Contact is not reachable, as for any
// TLS client behind NAT).
func TestTLSCaller(t *testing.T) {
	member := newPeer(t, "m1")
	s, cdrs := startServer(t, tlsConfig(member.uri("m1"), "../testdata/tls/a.crt", "../testdata/tls/a.key"), member)
	ap, ok := s.Addr("tls")
	if !ok {
		t.Fatal("no tls listener")
	}
	caller := newTLSPeer(t, ap.String(), "../testdata/tls/a.crt")
	if cn := caller.conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "ringroute test a" {
		t.Fatalf("ringroute presented %q, want the configured certificate", cn)
	}

	cid := "tls-" + sipmsg.GenerateTagN(10)
	caller.send(fmt.Sprintf(`INVITE sip:600@127.0.0.1:%d;transport=tls SIP/2.0
Via: SIP/2.0/TLS %s;branch=z9hG4bK-tls1
From: "Alice" <sip:+15551234@127.0.0.1>;tag=caller1
To: <sip:600@127.0.0.1>
Call-ID: %s
CSeq: 1 INVITE
Max-Forwards: 70
Contact: <sip:caller@192.0.2.1:5061;transport=tls>
Content-Type: application/sdp

%s`, ap.Port(), caller.local(), cid, sdp))
	caller.response(100, wait)
	inv := member.request(sipmsg.INVITE, wait)
	if !strings.Contains(inv.Via().Value(), "SIP/2.0/UDP") {
		t.Errorf("member leg Via = %q, want UDP (the member's URI)", inv.Via().Value())
	}
	member.reply(inv, 180, "m1tag", "")
	caller.response(180, wait)
	member.reply(inv, 200, "m1tag", sdp)
	member.request(sipmsg.ACK, wait)
	okRes := caller.response(200, wait)
	ct := okRes.Contact()
	if ct == nil {
		t.Fatal("200 without Contact")
	}
	if tr, _ := ct.Address.UriParams.Get("transport"); !strings.EqualFold(tr, "tls") || ct.Address.Port != int(ap.Port()) {
		t.Errorf("200 Contact = %s, want ringroute's tls listener with transport=tls", ct.Address.String())
	}
	caller.send(fmt.Sprintf(`ACK %s SIP/2.0
Via: SIP/2.0/TLS %s;branch=z9hG4bK-tlsack
From: %s
To: %s
Call-ID: %s
CSeq: 1 ACK
Max-Forwards: 70

`, ct.Address.String(), caller.local(), okRes.From().Value(), okRes.To().Value(), cid))

	// The member hangs up: the BYE toward the caller must use the TLS
	// connection, not the unreachable Contact address.
	member.send(fmt.Sprintf(`BYE %s SIP/2.0
Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-mbye
From: %s
To: %s
Call-ID: %s
CSeq: 2 BYE
Max-Forwards: 70

`, inv.Contact().Address.String(), member.ip(), member.port(), inv.To().Value()+";tag=m1tag", inv.From().Value(), inv.CallID().Value()))
	member.response(200, wait)
	bye := caller.request(sipmsg.BYE, wait)
	if bye.CallID().Value() != cid {
		t.Errorf("BYE Call-ID %q, want the caller's", bye.CallID().Value())
	}
	if !strings.Contains(bye.Via().Value(), "SIP/2.0/TLS") {
		t.Errorf("BYE to the TLS caller has Via %q, want TLS", bye.Via().Value())
	}
	res := sipmsg.NewResponseFromRequest(bye, 200, "OK", nil)
	caller.send(strings.ReplaceAll(strings.TrimSuffix(res.String(), "\r\n\r\n"), "Content-Length: 0\r\n", "") + "\n\n")
	recs := cdrs.wait(t, 1)
	if recs[0].Outcome != "answered" {
		t.Errorf("CDR outcome %q, want answered", recs[0].Outcome)
	}
}

// A reload reads the certificate files again: a renewed certificate is
// presented from the next handshake on, without a restart; a reload whose
// files cannot be used keeps the one being served.
func TestTLSCertificateReload(t *testing.T) {
	member := newPeer(t, "m1")
	s, _ := startServer(t, tlsConfig(member.uri("m1"), "../testdata/tls/a.crt", "../testdata/tls/a.key"), member)
	ap, _ := s.Addr("tls")

	reload := func(cert, key string) {
		t.Helper()
		udp, _ := s.Addr("udp")
		text := strings.ReplaceAll(tlsConfig(member.uri("m1"), cert, key), "%UDP%", fmt.Sprint(udp.Port()))
		cfg, err := config.Parse("reload.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		s.SetConfig(cfg)
	}
	served := func() string {
		t.Helper()
		for _, trust := range []string{"a", "b"} {
			c, err := dialTLS(t, ap.String(), "../testdata/tls/"+trust+".crt")
			if err == nil {
				c.Close()
				return trust
			}
		}
		t.Fatal("no handshake succeeds with either test certificate")
		return ""
	}

	if got := served(); got != "a" {
		t.Fatalf("serving %s at start, want a", got)
	}
	reload("../testdata/tls/b.crt", "../testdata/tls/b.key")
	if got := served(); got != "b" {
		t.Fatalf("after reload serving %s, want b", got)
	}
	// Config checks refuse a pair that does not load, but the files can
	// change between the check and the load: the served certificate
	// must stay.
	dir := t.TempDir()
	for _, f := range []string{"a.crt", "a.key"} {
		b, err := os.ReadFile("../testdata/tls/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/"+f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	udp, _ := s.Addr("udp")
	cfg, err := config.Parse("reload.yaml", []byte(strings.ReplaceAll(
		tlsConfig(member.uri("m1"), dir+"/a.crt", dir+"/a.key"), "%UDP%", fmt.Sprint(udp.Port()))))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/a.key", []byte("half-written renewal"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.SetConfig(cfg)
	if got := served(); got != "b" {
		t.Fatalf("after a failed reload serving %s, want b still", got)
	}
}

// A member reached over TLS (`;transport=tls`) gets its INVITE on a TLS
// connection ringroute opens, verified against the system roots (here
// SSL_CERT_FILE, as an operator with a private CA would set it), and the
// ACK for its final response on the same connection.
func TestTLSMember(t *testing.T) {
	c, member, caller := tlsMemberCall(t)
	inv, _ := member.next("INVITE", anyMsg, wait).(*sipmsg.Request)
	if inv == nil || inv.Method != sipmsg.INVITE || !strings.Contains(inv.Via().Value(), "SIP/2.0/TLS") {
		t.Fatalf("TLS member got %v, want an INVITE with a TLS Via", inv)
	}
	busy := sipmsg.NewResponseFromRequest(inv, 486, "Busy Here", nil)
	busy.To().Params.Add("tag", "m1tag")
	if _, err := c.Write([]byte(busy.String())); err != nil {
		t.Fatal(err)
	}
	if m := member.next("ACK for the member's 486 on its TLS connection", anyMsg, wait); !isReq(sipmsg.ACK)(m) {
		t.Fatalf("after 486 the member got %q, want the ACK", m.String())
	}
	caller.response(486, wait)
}

// A TLS member's leg is cancelled on the INVITE's connection, once (no
// retransmission over a stream, RFC 3261 §17.1.2.2), and its 487 ACKed
// there too.
func TestTLSMemberCancel(t *testing.T) {
	c, member, caller := tlsMemberCall(t)
	inv, _ := member.next("INVITE", anyMsg, wait).(*sipmsg.Request)
	if inv == nil || inv.Method != sipmsg.INVITE {
		t.Fatalf("TLS member got %v, want an INVITE", inv)
	}
	reply := func(req *sipmsg.Request, code int) {
		t.Helper()
		res := sipmsg.NewResponseFromRequest(req, code, reasonPhrase(code), nil)
		res.To().Params.Add("tag", "m1tag")
		if _, err := c.Write([]byte(res.String())); err != nil {
			t.Fatal(err)
		}
	}
	reply(inv, 180)
	caller.response(180, wait)
	// member_timeout (2 s) cancels the leg.
	cancel, _ := member.next("CANCEL on the TLS connection", anyMsg, 3*time.Second).(*sipmsg.Request)
	if cancel == nil || cancel.Method != sipmsg.CANCEL || viaBranch(cancel) != viaBranch(inv) {
		t.Fatalf("TLS member got %v, want a CANCEL with the INVITE's branch", cancel)
	}
	member.quiet("CANCEL again over TLS", isReq(sipmsg.CANCEL), sipmsg.T1+300*time.Millisecond)
	reply(cancel, 200)
	reply(inv, 487)
	if m := member.next("ACK for the 487 on its TLS connection", anyMsg, wait); !isReq(sipmsg.ACK)(m) {
		t.Fatalf("after 487 the member got %q, want the ACK", m.String())
	}
	caller.response(480, wait) // the group's noanswer fallback
}

func anyMsg(sipmsg.Message) bool { return true }

// tlsMemberCall starts ringroute with one TLS member and places a call to
// it: the member's end of the TLS connection, the member reading it, and
// the caller.
func tlsMemberCall(t *testing.T) (net.Conn, *peer, *peer) {
	t.Setenv("SSL_CERT_FILE", "../testdata/tls/a.crt")
	cert, err := tls.LoadX509KeyPair("../testdata/tls/a.crt", "../testdata/tls/a.key")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			conns <- c
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	caller := newPeer(t, "caller")
	startServer(t, tlsConfig(fmt.Sprintf("sip:m1@127.0.0.1:%d;transport=tls", port), "../testdata/tls/b.crt", "../testdata/tls/b.key"), caller)

	caller.invite("600")
	var c net.Conn
	select {
	case c = <-conns:
	case <-time.After(wait):
		t.Fatal("ringroute opened no TLS connection to the member")
	}
	member := &peer{t: t, name: "tls member", in: make(chan sipmsg.Message, 16)}
	closed := streamInto(t, c, member)
	t.Cleanup(func() { c.Close(); <-closed })
	return c, member, caller
}
