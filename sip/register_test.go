package sip

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

const phoneConfig = `
listen: [udp://127.0.0.1:%UDP%]
realm: test.example
media: {mode: direct}
admin: {listen: ""}
cdr: {path: ""}
registrar: {state_file: %STATE%, min_expires: 60s, max_expires: 1h}
trunks: [{name: local, from: [127.0.0.1/32]}]
users:
  - {name: alice, password: s3cret, extension: "1001"}
  - {name: bob, password: hunter2}
groups:
  - name: sales
    extension: "600"
    strategy: all
    timeout: 3s
    member_timeout: 2s
    retry_delay: 0s
    members: [{user: alice}]
`

func phoneServer(t *testing.T, state string, peers ...*peer) (*Server, *cdrRecorder) {
	t.Helper()
	if state == "" {
		state = `""`
	}
	return startServer(t, strings.Replace(phoneConfig, "%STATE%", state, 1), peers...)
}

// digestHeader answers a challenge the way a phone does.
func digestHeader(t *testing.T, challenge, method, uri, user, password string, nc int) string {
	t.Helper()
	chal, err := digest.ParseChallenge(challenge)
	if err != nil {
		t.Fatalf("challenge %q: %v", challenge, err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: method, URI: uri, Username: user, Password: password, Count: nc, Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

// challenges are the algorithms of a 401/407's challenges, in order, and
// the challenge of each.
func challenges(t *testing.T, res *sipmsg.Response, name string) ([]string, map[string]string) {
	t.Helper()
	var order []string
	by := map[string]string{}
	for _, h := range res.GetHeaders(name) {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatalf("%s %q: %v", name, h.Value(), err)
		}
		order = append(order, c.Algorithm)
		by[c.Algorithm] = h.Value()
	}
	return order, by
}

// md5Challenge is the MD5 challenge of a 401/407 (the default
// digest_algorithms offers only MD5).
func md5Challenge(t *testing.T, res *sipmsg.Response, name string) string {
	t.Helper()
	_, by := challenges(t, res, name)
	if by["MD5"] == "" {
		t.Fatalf("%d has no MD5 challenge: %v", res.StatusCode, res.GetHeaders(name))
	}
	return by["MD5"]
}

// register sends a REGISTER for user; auth is an Authorization value or "".
func (p *peer) register(user string, cseq int, contact, expires, auth string) {
	p.t.Helper()
	extra := ""
	if auth != "" {
		extra = "Authorization: " + auth + "\n"
	}
	if expires != "" {
		extra += "Expires: " + expires + "\n"
	}
	p.send(fmt.Sprintf(`REGISTER sip:127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-reg-%s
From: <sip:%s@test.example>;tag=r%s
To: <sip:%s@test.example>
Call-ID: reg-%s-%d@%s
CSeq: %d REGISTER
Max-Forwards: 70
Contact: %s
%s
`, p.to.Port, p.ip(), p.port(), sipmsg.GenerateTagN(8), user, p.name, user, p.name, p.port(), p.ip(), cseq, contact, extra))
}

// login registers user from p with the password, answering the challenge.
func (p *peer) login(user, password string, contact string) *sipmsg.Response {
	p.t.Helper()
	p.register(user, 1, contact, "", "")
	chal := md5Challenge(p.t, p.response(401, wait), "WWW-Authenticate")
	uri := fmt.Sprintf("sip:127.0.0.1:%d", p.to.Port)
	p.register(user, 2, contact, "", digestHeader(p.t, chal, "REGISTER", uri, user, password, 1))
	return p.next("REGISTER answer", func(m sipmsg.Message) bool {
		r, ok := m.(*sipmsg.Response)
		return ok && r.CSeq().MethodName == sipmsg.REGISTER && r.CSeq().SeqNo == 2
	}, wait).(*sipmsg.Response)
}

// SPEC "Registrar": digest with a wrong password never gets 200; the right
// one does and lists the binding with its expires.
func TestRegisterWithDigest(t *testing.T) {
	phone := newPeerAt(t, "alice1", net.IPv4(127, 0, 0, 2))
	s, _ := phoneServer(t, "", phone)

	contact := fmt.Sprintf("<sip:alice@%s:%d>", phone.ip(), phone.port())
	phone.register("alice", 1, contact, "", "")
	chal := md5Challenge(t, phone.response(401, wait), "WWW-Authenticate")
	uri := fmt.Sprintf("sip:127.0.0.1:%d", phone.to.Port)
	phone.register("alice", 2, contact, "", digestHeader(t, chal, "REGISTER", uri, "alice", "wrong", 1))
	phone.response(403, wait)
	if n := len(s.reg.Contacts("alice")); n != 0 {
		t.Fatalf("%d bindings after a wrong password", n)
	}
	// Bob's password does not register alice.
	phone.register("alice", 3, contact, "", digestHeader(t, chal, "REGISTER", uri, "bob", "hunter2", 1))
	phone.response(403, wait)

	ok := phone.login("alice", "s3cret", contact)
	if ok.StatusCode != 200 {
		t.Fatalf("REGISTER with the right password got %d", ok.StatusCode)
	}
	if ct := ok.GetHeader("Contact"); ct == nil || !strings.Contains(ct.Value(), "expires=3600") {
		t.Errorf("200 Contact = %v, want the binding with expires=3600 (the default, capped at max_expires)", ct)
	}
	if n := len(s.reg.Contacts("alice")); n != 1 {
		t.Fatalf("%d bindings after REGISTER", n)
	}
}

// RFC 8760: with digest_algorithms [SHA-256, MD5] the challenge offers both,
// SHA-256 first, and a SHA-256 response registers; by default only MD5 is
// offered (old SIP stacks fail on a SHA-256 challenge).
func TestRegisterSHA256(t *testing.T) {
	phone := newPeerAt(t, "alice1", net.IPv4(127, 0, 0, 2))
	cfg := strings.Replace(strings.Replace(phoneConfig, "%STATE%", `""`, 1), "realm: test.example", "realm: test.example\ndigest_algorithms: [SHA-256, MD5]", 1)
	s, _ := startServer(t, cfg, phone)
	contact := fmt.Sprintf("<sip:alice@%s:%d>", phone.ip(), phone.port())
	phone.register("alice", 1, contact, "", "")
	order, by := challenges(t, phone.response(401, wait), "WWW-Authenticate")
	if strings.Join(order, ",") != "SHA-256,MD5" {
		t.Fatalf("challenges %v, want SHA-256 then MD5", order)
	}
	uri := fmt.Sprintf("sip:127.0.0.1:%d", phone.to.Port)
	phone.register("alice", 2, contact, "", digestHeader(t, by["SHA-256"], "REGISTER", uri, "alice", "s3cret", 1))
	phone.response(200, wait)
	if n := len(s.reg.Contacts("alice")); n != 1 {
		t.Fatalf("%d bindings", n)
	}
}

// The default: MD5 only.
func TestDefaultDigestIsMD5(t *testing.T) {
	phone := newPeerAt(t, "alice1", net.IPv4(127, 0, 0, 2))
	phoneServer(t, "", phone)
	phone.register("alice", 1, fmt.Sprintf("<sip:alice@%s:%d>", phone.ip(), phone.port()), "", "")
	if order, _ := challenges(t, phone.response(401, wait), "WWW-Authenticate"); strings.Join(order, ",") != "MD5" {
		t.Fatalf("default challenges %v, want MD5 only", order)
	}
}

// Expires below min_expires: 423 with Min-Expires (RFC 3261 §10.3).
func TestRegisterIntervalTooBrief(t *testing.T) {
	phone := newPeerAt(t, "alice1", net.IPv4(127, 0, 0, 2))
	phoneServer(t, "", phone)
	contact := fmt.Sprintf("<sip:alice@%s:%d>", phone.ip(), phone.port())
	phone.register("alice", 1, contact, "30", "")
	chal := md5Challenge(t, phone.response(401, wait), "WWW-Authenticate")
	uri := fmt.Sprintf("sip:127.0.0.1:%d", phone.to.Port)
	phone.register("alice", 2, contact, "30", digestHeader(t, chal, "REGISTER", uri, "alice", "s3cret", 1))
	r := phone.response(423, wait)
	if h := r.GetHeader("Min-Expires"); h == nil || h.Value() != "60" {
		t.Errorf("423 Min-Expires = %v, want 60", h)
	}
}

// SPEC "One call" 4: a user member rings every registered phone at once, at
// the address its REGISTER came from (the Contact says a port nobody
// listens on, as behind a NAT); the one that does not answer is
// CANCELled. Unregistering with * stops the ringing.
func TestUserMemberRingsEveryPhone(t *testing.T) {
	caller := newPeer(t, "caller")
	p1 := newPeerAt(t, "alice1", net.IPv4(127, 0, 0, 2))
	p2 := newPeerAt(t, "alice2", net.IPv4(127, 0, 0, 3))
	_, cdrs := phoneServer(t, "", caller, p1, p2)
	if r := p1.login("alice", "s3cret", fmt.Sprintf("<sip:alice@%s:5999>", p1.ip())); r.StatusCode != 200 {
		t.Fatalf("phone 1: %d", r.StatusCode)
	}
	if r := p2.login("alice", "s3cret", fmt.Sprintf("<sip:alice@%s:%d>", p2.ip(), p2.port())); r.StatusCode != 200 {
		t.Fatalf("phone 2: %d", r.StatusCode)
	}

	caller.invite("600")
	i1 := p1.request(sipmsg.INVITE, wait)
	i2 := p2.request(sipmsg.INVITE, wait)
	if !strings.Contains(i1.Recipient.String(), ":5999") {
		t.Errorf("phone 1's INVITE is for %s, want its registered Contact", i1.Recipient.String())
	}
	p1.reply(i1, 180, "p1", "")
	p2.reply(i2, 180, "p2", "")
	p1.reply(i1, 200, "p1", sdp)
	p1.request(sipmsg.ACK, wait)
	c := p2.request(sipmsg.CANCEL, wait)
	p2.reply(c, 200, "", "")
	p2.reply(i2, 487, "p2", "")
	ok := caller.response(200, wait)
	caller.ackFor(ok)
	caller.inDialogBye(ok, 2)
	b := p1.request(sipmsg.BYE, wait)
	p1.reply(b, 200, "", "")
	if r := cdrs.wait(t, 1)[0]; r.AnsweredBy != "user:alice" {
		t.Errorf("answered_by %q", r.AnsweredBy)
	}

	// * with Expires 0 removes every binding of alice: nothing rings.
	uri := fmt.Sprintf("sip:127.0.0.1:%d", p2.to.Port)
	p2.register("alice", 10, "*", "0", "")
	chal := md5Challenge(t, p2.response(401, wait), "WWW-Authenticate")
	p2.register("alice", 11, "*", "0", digestHeader(t, chal, "REGISTER", uri, "alice", "s3cret", 1))
	if r := p2.response(200, wait); r.GetHeader("Contact") != nil {
		t.Errorf("200 after * still lists bindings: %v", r.GetHeaders("Contact"))
	}
	caller.invite("600")
	caller.response(480, wait)
	p1.quiet("INVITE after unregister", isReq(sipmsg.INVITE), 200*time.Millisecond)
	p2.quiet("INVITE after unregister", isReq(sipmsg.INVITE), 10*time.Millisecond)
}

// SPEC "One call" 1: a caller that is not a trunk is challenged with 407;
// wrong credentials get 403; a user's right ones are routed, to a group or
// to another user's extension.
func TestAuthenticatedCaller(t *testing.T) {
	phone := newPeerAt(t, "bob", net.IPv4(127, 0, 0, 2))
	alice := newPeerAt(t, "alice1", net.IPv4(127, 0, 0, 3))
	_, cdrs := phoneServer(t, "", phone, alice)
	if r := alice.login("alice", "s3cret", fmt.Sprintf("<sip:alice@%s:%d>", alice.ip(), alice.port())); r.StatusCode != 200 {
		t.Fatalf("alice: %d", r.StatusCode)
	}

	cid := phone.invite("1001") // alice's extension
	chal := md5Challenge(t, phone.response(407, wait), "Proxy-Authenticate")
	alice.quiet("INVITE before authentication", isReq(sipmsg.INVITE), 100*time.Millisecond)
	uri := fmt.Sprintf("sip:1001@127.0.0.1:%d", phone.to.Port)
	phone.inviteWith(cid, 2, "1001", "Proxy-Authorization: "+digestHeader(t, chal, "INVITE", uri, "bob", "wrong", 1))
	phone.response(403, wait)
	alice.quiet("INVITE after wrong credentials", isReq(sipmsg.INVITE), 100*time.Millisecond)

	phone.inviteWith(cid, 3, "1001", "Proxy-Authorization: "+digestHeader(t, chal, "INVITE", uri, "bob", "hunter2", 2))
	inv := alice.request(sipmsg.INVITE, wait)
	// The member sees who authenticated, not what the phone's From claims.
	if got := inv.From().Address.User; got != "bob" {
		t.Errorf("From user toward the member = %q, want the authenticated user bob", got)
	}
	alice.reply(inv, 486, "a", "")
	phone.response(486, wait)
	recs := cdrs.wait(t, 2)
	if r := recs[0]; r.Outcome != "rejected" || r.Code != 403 {
		t.Errorf("the refused attempt's CDR: %s %d", r.Outcome, r.Code)
	}
	if r := recs[1]; r.Caller != "sip:bob@test.example" || r.Group != "user:alice" {
		t.Errorf("CDR caller %q group %q, want the authenticated user and the dialled user", r.Caller, r.Group)
	}
}

// Bindings survive a restart (registrar.state_file).
func TestRegistrationsSurviveRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "registrations.json")
	phone := newPeerAt(t, "alice1", net.IPv4(127, 0, 0, 2))
	s1, _ := phoneServer(t, fmt.Sprintf("%q", state), phone)
	if r := phone.login("alice", "s3cret", fmt.Sprintf("<sip:alice@%s:%d>", phone.ip(), phone.port())); r.StatusCode != 200 {
		t.Fatalf("register: %d", r.StatusCode)
	}
	s1.Close()
	s2, _ := phoneServer(t, fmt.Sprintf("%q", state))
	if got := s2.Contacts("alice"); len(got) != 1 || got[0].Destination != fmt.Sprintf("%s:%d", phone.ip(), phone.port()) {
		t.Fatalf("after restart alice has %+v", got)
	}
}

// inviteWith re-sends an INVITE of the same call with a new CSeq and an
// extra header (credentials).
func (p *peer) inviteWith(cid string, cseq int, number, header string) {
	p.t.Helper()
	p.send(fmt.Sprintf(`INVITE sip:%s@127.0.0.1:%d SIP/2.0
Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-%s
From: "Bob" <sip:front-desk@%s:%d>;tag=caller1
To: <sip:%s@127.0.0.1:%d>
Call-ID: %s
CSeq: %d INVITE
Max-Forwards: 70
Contact: <sip:bob@%s:%d>
%s
Content-Type: application/sdp

%s`, number, p.to.Port, p.ip(), p.port(), sipmsg.GenerateTagN(8), p.ip(), p.port(), number, p.to.Port, cid, cseq, p.ip(), p.port(), header, sdp))
}

// inDialogBye hangs up the caller's side of ok.
func (p *peer) inDialogBye(ok *sipmsg.Response, cseq int) {
	p.t.Helper()
	p.send(fmt.Sprintf(`BYE %s SIP/2.0
Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-%s
From: %s
To: %s
Call-ID: %s
CSeq: %d BYE
Max-Forwards: 70

`, ok.Contact().Address.String(), p.ip(), p.port(), sipmsg.GenerateTagN(8), ok.From().Value(), ok.To().Value(), ok.CallID().Value(), cseq))
}

const pickupConfig = `
listen: [udp://127.0.0.1:%UDP%]
realm: test.example
media: {mode: direct}
admin: {listen: ""}
cdr: {path: ""}
registrar: {state_file: ""}
trunks: [{name: local, from: [127.0.0.1/32]}]
pickup: {any: "*8", group_prefix: "88"}
users:
  - {name: alice, password: s3cret, pickup_groups: [sales]}
  - {name: bob, password: hunter2}
groups:
  - name: sales
    extension: "600"
    strategy: all
    timeout: 10s
    member_timeout: 10s
    retry_delay: 0s
    answered_elsewhere: false
    members: [%MEMBERS%]
`

// dialAuth dials number from p as user, answering the 407.
func (p *peer) dialAuth(number, user, password string) string {
	p.t.Helper()
	cid := p.invite(number)
	chal := md5Challenge(p.t, p.response(407, wait), "Proxy-Authenticate")
	uri := fmt.Sprintf("sip:%s@127.0.0.1:%d", number, p.to.Port)
	p.inviteWith(cid, 2, number, "Proxy-Authorization: "+digestHeader(p.t, chal, "INVITE", uri, user, password, 1))
	return cid
}

// SPEC "Registrar and pickup": *8 and 88<group> connect the picker to the
// oldest call ringing in a group it may pick up; the members' legs are
// CANCELled as answered elsewhere; others get 403 or 404.
func TestPickup(t *testing.T) { eachP(t, testPickup) }

func testPickup(t *testing.T) {
	for _, code := range []string{"*8", "88sales"} {
		t.Run(code, func(t *testing.T) {
			caller, m1, m2 := newPeer(t, "caller"), newPeer(t, "m1"), newPeer(t, "m2")
			alice := newPeerAt(t, "alice", net.IPv4(127, 0, 0, 2))
			bob := newPeerAt(t, "bob", net.IPv4(127, 0, 0, 3))
			cfg := strings.Replace(pickupConfig, "%MEMBERS%", fmt.Sprintf("{uri: %q}, {uri: %q}", m1.uri("m1"), m2.uri("m2")), 1)
			_, cdrs := startServer(t, cfg, caller, m1, m2, alice, bob)

			// Nothing rings yet: 404.
			alice.dialAuth(code, "alice", "s3cret")
			alice.response(404, wait)

			caller.invite("600")
			i1, i2 := m1.request(sipmsg.INVITE, wait), m2.request(sipmsg.INVITE, wait)
			m1.reply(i1, 180, "t1", "")
			m2.reply(i2, 180, "t2", "")
			caller.response(180, wait)

			// bob may not pick up sales.
			bob.dialAuth("88sales", "bob", "hunter2")
			bob.response(403, wait)

			alice.dialAuth(code, "alice", "s3cret")
			ok := alice.next("200 for the pickup", func(m sipmsg.Message) bool {
				r, isRes := m.(*sipmsg.Response)
				return isRes && r.StatusCode == 200 && r.CSeq().MethodName == sipmsg.INVITE
			}, wait).(*sipmsg.Response)
			if string(ok.Body()) != sdp {
				t.Errorf("picker's 200 should carry the caller's offer, got %q", ok.Body())
			}
			alice.ackFor(ok)
			for _, p := range []*peer{m1, m2} {
				inv := i1
				if p == m2 {
					inv = i2
				}
				c := p.request(sipmsg.CANCEL, wait)
				if r := c.GetHeader("Reason"); r == nil || !strings.Contains(r.Value(), "cause=200") {
					t.Errorf("%s: CANCEL Reason %v, want answered elsewhere (even with answered_elsewhere: false: a colleague answered)", p.name, r)
				}
				p.reply(c, 200, "", "")
				p.reply(inv, 487, "t", "")
			}
			cok := caller.response(200, wait)
			if string(cok.Body()) != sdp {
				t.Errorf("caller's 200 should carry the picker's offer, got %q", cok.Body())
			}
			caller.ackFor(cok)
			// The picker hangs up: the caller gets BYE.
			alice.inDialogBye(ok, 3)
			alice.response(200, wait)
			b := caller.request(sipmsg.BYE, wait)
			caller.reply(b, 200, "", "")
			var answered bool
			// Two refused pickups (404, 403) and the picked-up call; the
			// pickup that worked is part of the call it picked up.
			for _, r := range cdrs.wait(t, 3) {
				if r.Group == "sales" {
					answered = true
					if r.Outcome != "answered" || r.AnsweredBy != "pickup:user:alice" {
						t.Errorf("CDR outcome %q answered_by %q", r.Outcome, r.AnsweredBy)
					}
				}
			}
			if !answered {
				t.Error("no CDR for the picked-up call")
			}
		})
	}
}
