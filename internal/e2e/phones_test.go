//go:build unix

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Phones (issue 6, "Tests that must exist and pass"): SIPp phones register
// with digest authentication, a group's user member rings every phone the
// user registered, callers that are not trunks authenticate (407/403), and
// a colleague picks up a ringing call with *8 or 88<group>.
//
// A phone is an address (127.0.0.2 or 127.0.0.3, never a trunk: the trunk
// is 127.0.0.1/32) and a port. It first runs a reg_*.xml scenario in client
// mode from that address and port, and once SIPp has exited, a member
// scenario in server mode on the same address and port: the registrar sends
// INVITEs to where the REGISTER came from. A SIPp client cannot take an
// INVITE itself (a new Call-ID is not one of its calls), hence the two runs.
//
// SIPp 3.6.1 gotchas met here (the others are in harness_test.go):
//   - "[authentication username=[phone] password=...]" is cut at the first
//     "]" (the REGISTER went out with "alice[authentication username=
//     password=...]" in it): no keyword can go inside it. The scenarios use
//     a bare [authentication]; username and password come from -au and -ap.
//   - [authentication] answers the last challenge received with auth="true"
//     (401 -> Authorization, 407 -> Proxy-Authorization), MD5 only, with
//     qop=auth and nc=00000001. Every scenario starts without credentials,
//     so each attempt answers a nonce of its own.
//   - The status of a <recv response> cannot come from -key either, so the
//     expected outcome is one scenario file each (reg_auth.xml 200,
//     reg_auth_403.xml, reg_auth_423.xml).
//   - A 407 is ACKed on the INVITE's branch, captured with <ereg> (SIPp's
//     [branch] changes with every message), as RFC 3261 section 17.1.1.3
//     wants for a non-2xx; TestPhoneScenarioPairs checks it.
//   - The message logs of two SIPp instances are stamped by clocks read
//     once per event loop, so comparing times across instances needs some
//     milliseconds of slack.
//
// The scenarios are proved sipp to sipp by TestPhoneScenarioPairs against
// peers written there; those peers do not check a digest (that needs
// ringroute), they only require the header, so the digest itself is proved
// by the daemon cases alone.

const (
	phRealm    = "phones.test"
	phMinExp   = 60 // registrar.min_expires, seconds
	phAlicePw  = "alice-pw-1"
	phBobPw    = "bob-pw-2"
	phCarolPw  = "carol-pw-3"
	phPrivate  = "192.168.77.7:5062" // a Contact host:port that is not where the phone is (NAT)
	phSalesExt = "600"
)

// phoneLab is one daemon with users alice (two phones), bob (may pick up in
// sales) and carol (may pick up nowhere), a group sales ({user: alice})
// and whatever else the case adds, and every SIPp instance of the case.
type phoneLab struct {
	t     *testing.T
	tr    string
	dir   string
	d     *daemon
	sipps []*sipp
	n     int
}

// phConfig renders the lab's config; extra is more group entries.
func phConfig(sipPort, adminPort int, cdr, extra string) string {
	return fmt.Sprintf(`listen: [udp://127.0.0.1:%[1]d, tcp://127.0.0.1:%[1]d]
realm: %[4]s
drain_timeout: 1s
media: {mode: relay, address: 127.0.0.1, ports: 40000-59999}
admin: {listen: 127.0.0.1:%[2]d}
log: {level: debug, format: json}
cdr: {path: %[3]q}
registrar: {state_file: "", min_expires: %[5]ds, max_expires: 1h}
limits: {requests_per_source: 0}
trunks: [{name: local, from: [127.0.0.1/32]}]
users:
  - {name: alice, password: %[6]q}
  - {name: bob, password: %[7]q, pickup_groups: [sales]}
  - {name: carol, password: %[8]q}
pickup: {any: "*8", group_prefix: "88"}
groups:
  - name: sales
    extension: %[9]q
    strategy: all
    timeout: 8s
    member_timeout: 6s
    members: [{user: alice}]
%[10]s`, sipPort, adminPort, cdr, phRealm, phMinExp, phAlicePw, phBobPw, phCarolPw, phSalesExt, extra)
}

// newPhoneLab starts the lab's daemon over transport tr (the daemon
// listens on UDP and TCP; tr is what the phones use).
func newPhoneLab(t *testing.T, tr, extraGroups string) *phoneLab {
	t.Helper()
	bin := needDaemon(t)
	l := &phoneLab{t: t, tr: tr, dir: workDir(t)}
	// Registered before any process, so it runs after they are stopped and
	// their logs are complete.
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range l.sipps {
				t.Log(s.report())
			}
		}
	})
	base := portBlock(t)
	d := &daemon{
		dir:       l.dir,
		config:    l.dir + "/ringroute.yaml",
		cdr:       l.dir + "/cdr.jsonl",
		log:       l.dir + "/ringroute.log",
		sipPort:   base,
		adminPort: base + 1,
	}
	if err := os.WriteFile(d.config, []byte(phConfig(d.sipPort, d.adminPort, d.cdr, extraGroups)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.proc = startProc(t, "ringroute", l.dir, d.log, bin, "run", "-c", d.config)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ringroute config %s:\n%s", d.config, readFile(d.config))
			t.Logf("ringroute log %s:\n%s", d.log, tail(d.log, 200))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !optionsOK(d.sipAddr(), 200*time.Millisecond) || !tcpOK(d.sipAddr()) {
		if d.exited() || time.Now().After(deadline) {
			t.Fatalf("ringroute not up on %s:\n%s", d.sipAddr(), tail(d.log, 50))
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.d = d
	return l
}

// phPhone is an address a user's phone registers from and then listens on.
type phPhone struct {
	name, user, ip string
	port           int
}

// phone allocates a port for a phone of user at ip.
func (l *phoneLab) phone(name, user, ip string) *phPhone {
	return &phPhone{name: name, user: user, ip: ip, port: portBlock(l.t)}
}

// contact is the Contact the phone registers: where it really is.
func (p *phPhone) contact(tr string) string {
	c := fmt.Sprintf("sip:%s@%s:%d", p.user, p.ip, p.port)
	if tr == "tcp" {
		c += ";transport=tcp"
	}
	return c
}

// sipp allocates an instance; port, when not 0, replaces its own (the
// block newSipp took then goes unused).
func (l *phoneLab) sipp(spec sippSpec, port int) *sipp {
	l.n++
	spec.name = fmt.Sprintf("%02d-%s", l.n, spec.name)
	if spec.transport == "" {
		spec.transport = l.tr
	}
	s := newSipp(l.t, l.dir, spec)
	if port != 0 {
		s.port = port
	}
	l.sipps = append(l.sipps, s)
	return s
}

// register runs a reg_*.xml scenario from p's address as p's user, with
// the digest credentials authUser/pass, the Contact value contact and that
// Expires, and requires SIPp to exit 0 (the scenario got the final
// response it expects). It returns the messages.
func (l *phoneLab) register(p *phPhone, scenario, authUser, pass, contact string, expires int) []sipMsg {
	t := l.t
	t.Helper()
	s := l.sipp(sippSpec{name: p.name + "-reg", scenario: scenario, ip: p.ip, remote: l.d.sipAddr(), timeout: 10 * time.Second,
		keys:  map[string]string{"phone": p.user, "contact": contact, "expires": strconv.Itoa(expires)},
		extra: []string{"-au", authUser, "-ap", pass}}, p.port)
	s.start(t)
	l.mustExit0(s, 15*time.Second)
	return s.messages(t)
}

// listen starts a member scenario on p's address and port.
func (l *phoneLab) listen(p *phPhone, scenario string, calls int, pause time.Duration) *sipp {
	s := l.sipp(sippSpec{name: p.name, scenario: scenario, ip: p.ip, calls: calls, pause: pause}, p.port)
	s.start(l.t)
	return s
}

// dial starts a caller from ip dialling service, pause its -d. For the
// uac_auth_*.xml scenarios, from is the From user (-key phone) and
// authUser/pass, when set, its digest credentials (-au, -ap).
func (l *phoneLab) dial(name, scenario, ip, service string, pause time.Duration, from, authUser, pass string) *sipp {
	var extra []string
	if authUser != "" {
		extra = []string{"-au", authUser, "-ap", pass}
	}
	if from == "" {
		from = "nobody"
	}
	s := l.sipp(sippSpec{name: name, scenario: scenario, ip: ip, remote: l.d.sipAddr(), service: service, pause: pause,
		keys: map[string]string{"phone": from}, extra: extra}, 0)
	s.start(l.t)
	return s
}

// mustExit0 waits up to d for s and fails the test unless it exited 0.
func (l *phoneLab) mustExit0(s *sipp, d time.Duration) {
	t := l.t
	t.Helper()
	code, ok := s.wait(d)
	if !ok {
		s.stop(time.Second)
		t.Fatalf("sipp %s (%s) still running after %v", s.spec.name, shortName(s), d)
	}
	if code != 0 {
		t.Fatalf("sipp %s (%s) exited %d, want 0", s.spec.name, shortName(s), code)
	}
}

// phCDR is a CDR line with the notes (read here so as not to depend on
// the harness's record type growing them).
type phCDR struct {
	cdrRecord
	Notes []string `json:"notes"`
}

// cdrs checks the CDR file holds exactly want lines (the harness's check)
// and returns them.
func (l *phoneLab) cdrs(want int) []phCDR {
	t := l.t
	t.Helper()
	l.d.cdrs(t, want)
	var out []phCDR
	for _, line := range nonEmptyLines(l.d.cdr) {
		var r phCDR
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("CDR line %q: %v", line, err)
		}
		out = append(out, r)
	}
	if len(out) != want {
		t.FailNow()
	}
	return out
}

// phCDRFor returns the CDR line of the call with this Call-ID.
func phCDRFor(t *testing.T, recs []phCDR, callID string) phCDR {
	t.Helper()
	for _, r := range recs {
		if r.CallID == callID {
			return r
		}
	}
	t.Fatalf("no CDR line for Call-ID %s", callID)
	return phCDR{}
}

// phFinal returns the final response received for CSeq n METHOD.
func phFinal(t *testing.T, who string, msgs []sipMsg, n int, method string) sipMsg {
	t.Helper()
	for _, m := range received(msgs) {
		if c, meth := m.cseq(); m.code() >= 200 && c == n && meth == method {
			return m
		}
	}
	t.Fatalf("%s: no final response to CSeq %d %s", who, n, method)
	return sipMsg{}
}

// phSent returns the request sent with CSeq n METHOD.
func phSent(t *testing.T, who string, msgs []sipMsg, n int, method string) sipMsg {
	t.Helper()
	for _, m := range sentMsgs(msgs) {
		if c, meth := m.cseq(); m.method() == method && c == n && meth == method {
			return m
		}
	}
	t.Fatalf("%s: sent no CSeq %d %s", who, n, method)
	return sipMsg{}
}

var phNonce = regexp.MustCompile(`nonce="([^"]+)"`)

// phCheckChallenge checks the first exchange of a reg_*/uac_auth_* run: the
// request without credentials (CSeq 1) got a digest challenge (401
// WWW-Authenticate for REGISTER, 407 Proxy-Authenticate otherwise) for our
// realm, MD5 and qop=auth; and, when retried, the retry (CSeq 2) answered
// that very nonce as authUser.
func phCheckChallenge(t *testing.T, who string, msgs []sipMsg, method, authUser string, retried bool) {
	t.Helper()
	code, chal, cred := 407, "proxy-authenticate", "proxy-authorization"
	if method == "REGISTER" {
		code, chal, cred = 401, "www-authenticate", "authorization"
	}
	if first := phSent(t, who, msgs, 1, method); first.header(cred) != "" {
		t.Errorf("%s: the first %s already carried credentials", who, method)
	}
	r := phFinal(t, who, msgs, 1, method)
	if r.code() != code {
		t.Fatalf("%s: first %s answered %q, want %d", who, method, r.first, code)
	}
	hs := r.headers(chal)
	if len(hs) != 1 {
		t.Fatalf("%s: %d %s headers %q, want one (digest_algorithms default [MD5])", who, len(hs), chal, hs)
	}
	h := hs[0]
	for _, want := range []string{"Digest ", `realm="` + phRealm + `"`, "algorithm=MD5", `qop="auth"`} {
		if !strings.Contains(h, want) {
			t.Errorf("%s: %s %q lacks %s", who, chal, h, want)
		}
	}
	nonce := phNonce.FindStringSubmatch(h)
	if nonce == nil {
		t.Fatalf("%s: %s %q has no nonce", who, chal, h)
	}
	if !retried {
		return
	}
	c := phSent(t, who, msgs, 2, method).header(cred)
	for _, want := range []string{`username="` + authUser + `"`, `realm="` + phRealm + `"`, `nonce="` + nonce[1] + `"`, "qop=auth", "nc=00000001"} {
		if !strings.Contains(c, want) {
			t.Errorf("%s: retry %s %q lacks %s", who, cred, c, want)
		}
	}
}

var phContactExpires = regexp.MustCompile(`^<([^>]+)>;expires=(\d+)$`)

// phBindings returns the Contact headers of a REGISTER's 200 as URI ->
// expires, failing on a Contact without ;expires=.
func phBindings(t *testing.T, who string, ok sipMsg) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, c := range ok.headers("contact") {
		for _, v := range strings.Split(c, ",") {
			m := phContactExpires.FindStringSubmatch(strings.TrimSpace(v))
			if m == nil {
				t.Errorf("%s: 200 Contact %q is not <uri>;expires=N", who, v)
				continue
			}
			n, _ := strconv.Atoi(m[2])
			out[m[1]] = n
		}
	}
	return out
}

// TestPhonesRegister: sipp REGISTER with [authentication] over UDP and TCP.
// Wrong credentials never get 200 (403, nothing registered), Expires below
// registrar.min_expires gets 423 with Min-Expires, the right password gets
// 200 listing every binding of the user with ;expires=, and Contact: *
// with Expires: 0 removes them all.
func TestPhonesRegister(t *testing.T) {
	t.Parallel()
	needDaemon(t)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			l := newPhoneLab(t, tr, "")
			a := l.phone("alice-a", "alice", "127.0.0.2")
			b := l.phone("alice-b", "alice", "127.0.0.3")

			// A wrong password: challenged, then 403, never 200.
			msgs := l.register(a, "reg_auth_403.xml", "alice", "not-"+phAlicePw, "<"+a.contact(tr)+">", 120)
			phCheckChallenge(t, "wrong password", msgs, "REGISTER", "alice", true)
			if n := len(responses(received(msgs), 200, "REGISTER")); n != 0 {
				t.Errorf("wrong password: %d 200s to REGISTER", n)
			}
			// Bob's right credentials for alice's address of record: 403
			// (or bob could register his phone as alice's).
			msgs = l.register(a, "reg_auth_403.xml", "bob", phBobPw, "<"+a.contact(tr)+">", 120)
			phCheckChallenge(t, "bob as alice", msgs, "REGISTER", "bob", true)
			if !l.logHas("REGISTER for another user refused", `"user":"bob"`, `"to":"alice"`) {
				t.Error(`ringroute did not log "REGISTER for another user refused" for bob's credentials in alice's REGISTER`)
			}

			// Too brief: 423 with the configured Min-Expires.
			msgs = l.register(a, "reg_auth_423.xml", "alice", phAlicePw, "<"+a.contact(tr)+">", phMinExp/2)
			phCheckChallenge(t, "brief", msgs, "REGISTER", "alice", true)
			if me := phFinal(t, "brief", msgs, 2, "REGISTER").header("min-expires"); me != strconv.Itoa(phMinExp) {
				t.Errorf("423 Min-Expires %q, want %d", me, phMinExp)
			}

			// The right password: 200 listing the one binding (none of the
			// refused attempts left one behind).
			msgs = l.register(a, "reg_auth.xml", "alice", phAlicePw, "<"+a.contact(tr)+">", 120)
			phCheckChallenge(t, "register a", msgs, "REGISTER", "alice", true)
			got := phBindings(t, "register a", phFinal(t, "register a", msgs, 2, "REGISTER"))
			if len(got) != 1 || got[a.contact(tr)] < 118 || got[a.contact(tr)] > 120 {
				t.Errorf("200 to alice's first REGISTER lists %v, want only %s with expires ~120", got, a.contact(tr))
			}
			// A second phone: the 200 lists both.
			msgs = l.register(b, "reg_auth.xml", "alice", phAlicePw, "<"+b.contact(tr)+">", 300)
			got = phBindings(t, "register b", phFinal(t, "register b", msgs, 2, "REGISTER"))
			if len(got) != 2 || got[a.contact(tr)] < 115 || got[a.contact(tr)] > 120 || got[b.contact(tr)] < 298 || got[b.contact(tr)] > 300 {
				t.Errorf("200 to alice's second REGISTER lists %v, want %s (~120) and %s (~300)", got, a.contact(tr), b.contact(tr))
			}
			// Contact: * with Expires: 0 removes both: a 200 without Contact.
			msgs = l.register(b, "reg_auth.xml", "alice", phAlicePw, "*", 0)
			if cs := phFinal(t, "unregister", msgs, 2, "REGISTER").headers("contact"); len(cs) != 0 {
				t.Errorf("200 to Contact: * / Expires: 0 still lists %q", cs)
			}
			// Then registering again lists only the new binding.
			msgs = l.register(a, "reg_auth.xml", "alice", phAlicePw, "<"+a.contact(tr)+">", 120)
			if got = phBindings(t, "register again", phFinal(t, "register again", msgs, 2, "REGISTER")); len(got) != 1 {
				t.Errorf("200 after unregistering lists %v, want only %s", got, a.contact(tr))
			}
			// REGISTER is no call: no CDR line.
			l.cdrs(0)
			l.d.alive(t)
			l.d.terminate(t)
		})
	}
}

// registerPhone registers p for its user with the right password (Contact
// contact) and checks the 200 lists it.
func (l *phoneLab) registerPhone(p *phPhone, pass, contact string) {
	t := l.t
	t.Helper()
	msgs := l.register(p, "reg_auth.xml", p.user, pass, "<"+contact+">", 300)
	if got := phBindings(t, p.name, phFinal(t, p.name, msgs, 2, "REGISTER")); got[contact] == 0 {
		t.Fatalf("%s: 200 lists %v, without %s", p.name, got, contact)
	}
}

// phInvites returns the initial INVITEs a member got, retransmissions
// left out.
func phInvites(msgs []sipMsg) []sipMsg {
	var out []sipMsg
	seen := map[string]bool{}
	for _, m := range initialInvites(received(msgs)) {
		if k := m.callID() + "/" + m.branch(); !seen[k] {
			seen[k] = true
			out = append(out, m)
		}
	}
	return out
}

// TestPhonesRingAll: two phones of alice ring at once on a call to a group
// whose member is {user: alice}; the one that answers wins, the other gets
// CANCEL with the answered-elsewhere Reason. Phone B registers a private
// Contact (192.168.77.7) and is reached at the address its REGISTER came
// from. Then Contact: * with Expires: 0 unregisters alice and a call to the
// group rings nobody: 480 at once, the CDR saying why.
func TestPhonesRingAll(t *testing.T) {
	t.Parallel()
	l := newPhoneLab(t, "udp", "")
	a := l.phone("alice-a", "alice", "127.0.0.2")
	b := l.phone("alice-b", "alice", "127.0.0.3")
	l.registerPhone(a, phAlicePw, a.contact("udp"))
	privateB := "sip:alice@" + phPrivate
	l.registerPhone(b, phAlicePw, privateB)

	pa := l.listen(a, "uas_answer.xml", 1, 500*ms)                                       // answers after 500 ms of ringing
	pb := l.listen(b, "uas_ring_cancel_reason.xml", 1, 0)                                // rings until CANCELled
	c := l.dial("caller", "uac_answer.xml", "127.0.0.1", phSalesExt, 300*ms, "", "", "") // a trunk
	l.mustExit0(c, 20*time.Second)
	l.mustExit0(pa, 10*time.Second)
	l.mustExit0(pb, 10*time.Second)

	am, bm := pa.messages(t), pb.messages(t)
	ia, ib := phInvites(am), phInvites(bm)
	if len(ia) != 1 || len(ib) != 1 {
		t.Fatalf("INVITEs: phone a %d, phone b %d; want one each (both of alice's phones ring)", len(ia), len(ib))
	}
	if ia[0].requestURI() != a.contact("udp") {
		t.Errorf("phone a's INVITE is for %q, want its Contact %s", ia[0].requestURI(), a.contact("udp"))
	}
	// NAT: the request-URI is the registered Contact, the packet went to
	// where the REGISTER came from (pb listens there, not at 192.168.77.7).
	if ib[0].requestURI() != privateB {
		t.Errorf("phone b's INVITE is for %q, want its registered Contact %s", ib[0].requestURI(), privateB)
	}
	if d := ia[0].at.Sub(ib[0].at).Abs(); d > 200*ms {
		t.Errorf("phone a's and b's INVITEs %v apart; a user member rings all its contacts at once", d.Round(ms))
	}
	if n := len(requests(received(am), "CANCEL")); n != 0 {
		t.Errorf("the phone that answered got %d CANCELs", n)
	}
	rs := cancelReasons(bm)
	if len(rs) != 1 || !isElsewhere(rs[0]) {
		t.Errorf("phone b got CANCELs with Reason %q, want one with SIP;cause=200;text=\"Call completed elsewhere\"", rs)
	}
	checkCancelMatchesInvite(t, "phone b", bm)
	if oks := responses(received(c.messages(t)), 200, "INVITE"); len(oks) == 0 || len(distinctTo(oks)) != 1 {
		t.Errorf("caller got %d 200s to its INVITE with To-tags %v, want one answer", len(oks), distinctTo(oks))
	}

	rec := phCDRFor(t, l.cdrs(1), callerCallID(t, c))
	expectCDR(t, rec.cdrRecord, "answered", 200)
	if rec.AnsweredBy != "user:alice" || rec.AnsweredURI != a.contact("udp") {
		t.Errorf("CDR answered_by %q answered_uri %q, want user:alice at %s", rec.AnsweredBy, rec.AnsweredURI, a.contact("udp"))
	}
	legs := map[string]cdrLeg{}
	for _, lg := range rec.Legs {
		if lg.Member != "user:alice" {
			t.Errorf("CDR leg %d member %q, want user:alice", lg.Leg, lg.Member)
		}
		legs[lg.URI] = lg
	}
	if len(rec.Legs) != 2 || legs[a.contact("udp")].Code != 200 || legs[privateB].Code != 487 || legs[privateB].Reason != "answered elsewhere" {
		t.Errorf("CDR legs %+v, want %s 200 and %s 487 answered elsewhere", rec.Legs, a.contact("udp"), privateB)
	}

	// Unregister every binding of alice (from phone a's address; any
	// authenticated REGISTER of alice's may).
	msgs := l.register(a, "reg_auth.xml", "alice", phAlicePw, "*", 0)
	if cs := phFinal(t, "unregister", msgs, 2, "REGISTER").headers("contact"); len(cs) != 0 {
		t.Errorf("200 to Contact: * / Expires: 0 still lists %q", cs)
	}
	// Both phones listen again; nothing may reach them.
	ida := l.listen(a, "uas_answer.xml", 1, 0)
	idb := l.listen(b, "uas_answer.xml", 1, 0)
	c2 := l.dial("caller2", "uac_480.xml", "127.0.0.1", phSalesExt, 0, "", "", "")
	l.mustExit0(c2, 15*time.Second)
	cm := c2.messages(t)
	inv := at(cm, func(m sipMsg) bool { return m.sent && m.method() == "INVITE" })
	fin := at(cm, func(m sipMsg) bool { return !m.sent && m.code() == 480 })
	within(t, "480 after the INVITE (nothing to ring: at once, not after member_timeout)", fin.Sub(inv), 0, time.Second)
	time.Sleep(200 * ms) // a late INVITE would show
	ida.stop(time.Second)
	idb.stop(time.Second)
	for _, s := range []*sipp{ida, idb} {
		if got := s.messages(t); len(got) != 0 {
			t.Errorf("%s got %d messages after alice unregistered, first %q; want none", s.spec.name, len(got), got[0].first)
		}
	}
	recs := l.cdrs(2)
	r2 := phCDRFor(t, recs, callerCallID(t, c2))
	if r2.Outcome != "noanswer" || r2.Code != 480 || len(r2.Legs) != 0 || r2.AnsweredBy != "" {
		t.Errorf("CDR of the call after unregistering: outcome %q code %d legs %d answered_by %q; want noanswer 480, no legs", r2.Outcome, r2.Code, len(r2.Legs), r2.AnsweredBy)
	}
	if !phHasNote(r2.Notes, "user:alice skipped: no registered contacts") {
		t.Errorf("CDR notes %q, want one saying user:alice was skipped: no registered contacts", r2.Notes)
	}
	l.d.checkNoLeaks(t)
	l.d.terminate(t)
}

// phHasNote reports whether a CDR note contains sub.
func phHasNote(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// logHas reports whether ringroute logged a JSON line with msg and every
// "key":value pair of fields (values as they appear in JSON).
func (l *phoneLab) logHas(msg string, fields ...string) bool {
	for _, line := range strings.Split(readFile(l.d.log), "\n") {
		if !strings.Contains(line, `"msg":"`+msg+`"`) {
			continue
		}
		ok := true
		for _, f := range fields {
			ok = ok && strings.Contains(line, f)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestPhonesAuthCaller: an INVITE from a source that is not a trunk
// (127.0.0.2) is challenged with 407 and nothing is rung without
// credentials; with a wrong password it gets 403 (a CDR line: a refused
// attempt); with the right one it is routed, and the CDR names the
// authenticated user (sip:bob@REALM) as the caller, not its From.
func TestPhonesAuthCaller(t *testing.T) {
	t.Parallel()
	needDaemon(t)
	mPort := portBlock(t)
	l := newPhoneLab(t, "udp", fmt.Sprintf(`  - name: team
    extension: "601"
    strategy: all
    timeout: 6s
    member_timeout: 5s
    members: [{uri: "sip:m1@127.0.0.1:%d"}]
`, mPort))
	m := l.sipp(sippSpec{name: "m1", scenario: "uas_answer.xml", ip: "127.0.0.1", pause: 200 * ms}, mPort)
	m.start(t)

	noCreds := l.dial("nocreds", "uac_auth_407.xml", "127.0.0.2", "601", 0, "bob", "", "")
	l.mustExit0(noCreds, 10*time.Second)
	phCheckChallenge(t, "no credentials", noCreds.messages(t), "INVITE", "", false)

	wrong := l.dial("wrongpw", "uac_auth_403.xml", "127.0.0.2", "601", 0, "bob", "bob", "not-"+phBobPw)
	l.mustExit0(wrong, 10*time.Second)
	phCheckChallenge(t, "wrong password", wrong.messages(t), "INVITE", "bob", true)
	if !l.logHas("authentication failed", `"user":"bob"`) {
		t.Error(`ringroute did not log "authentication failed" for bob's wrong password`)
	}

	// The From says front-desk; the credentials are bob's.
	right := l.dial("bob", "uac_auth_answer.xml", "127.0.0.2", "601", 300*ms, "front-desk", "bob", phBobPw)
	l.mustExit0(right, 15*time.Second)
	l.mustExit0(m, 10*time.Second)
	rm := right.messages(t)
	phCheckChallenge(t, "right password", rm, "INVITE", "bob", true)
	if ok := phFinal(t, "right password", rm, 2, "INVITE"); ok.code() != 200 {
		t.Errorf("authenticated INVITE answered %q, want 200", ok.first)
	}
	// Only the authenticated attempt rang the member.
	if inv := phInvites(m.messages(t)); len(inv) != 1 {
		t.Errorf("member got %d INVITEs, want 1 (the 407 and 403 attempts must ring nobody)", len(inv))
	}

	recs := l.cdrs(2)
	for _, r := range recs {
		if r.CallID == callerCallID(t, noCreds) {
			t.Errorf("the challenged attempt has a CDR line: %+v", r)
		}
	}
	r403 := phCDRFor(t, recs, callerCallID(t, wrong))
	expectCDR(t, r403.cdrRecord, "rejected", 403)
	if len(r403.Legs) != 0 {
		t.Errorf("refused attempt rang %d legs", len(r403.Legs))
	}
	r := phCDRFor(t, recs, callerCallID(t, right))
	expectCDR(t, r.cdrRecord, "answered", 200)
	if r.Caller != "sip:bob@"+phRealm {
		t.Errorf("CDR caller %q, want the authenticated user sip:bob@%s", r.Caller, phRealm)
	}
	if want := "uri:" + fmt.Sprintf("sip:m1@127.0.0.1:%d", mPort); r.AnsweredBy != want || r.Group != "team" {
		t.Errorf("CDR group %q answered_by %q, want team, %s", r.Group, r.AnsweredBy, want)
	}
	l.d.checkNoLeaks(t)
	l.d.terminate(t)
}

// waitFor polls cond until it holds, failing the test after d.
func (l *phoneLab) waitFor(what string, d time.Duration, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * ms)
	}
}

// TestPhonesPickup: while a call to sales rings both of alice's phones,
// bob (pickup_groups: [sales]) dials *8 or 88sales from 127.0.0.2 and
// authenticates: he gets 200 with the caller's offer, the caller gets 200
// with his, and both phones get CANCEL with the answered-elsewhere Reason.
// Carol, whose pickup_groups are empty, gets 403 for 88sales and the call
// keeps ringing; with nothing ringing any more *8 gets 404.
func TestPhonesPickup(t *testing.T) {
	t.Parallel()
	needDaemon(t)
	for _, tc := range []struct{ name, code string }{{"any", "*8"}, {"group", "88sales"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			phPickupCase(t, tc.code)
		})
	}
}

// phPickupCase is one TestPhonesPickup case, dialling code.
func phPickupCase(t *testing.T, code string) {
	l := newPhoneLab(t, "udp", "")
	a := l.phone("alice-a", "alice", "127.0.0.2")
	b := l.phone("alice-b", "alice", "127.0.0.3")
	l.registerPhone(a, phAlicePw, a.contact("udp"))
	l.registerPhone(b, phAlicePw, b.contact("udp"))
	pa := l.listen(a, "uas_ring_cancel_reason.xml", 1, 0)
	pb := l.listen(b, "uas_ring_cancel_reason.xml", 1, 0)
	c := l.dial("caller", "uac_wait_bye.xml", "127.0.0.1", phSalesExt, 0, "", "", "")
	ringing := func(s *sipp) bool { return len(responses(sentMsgs(s.messages(t)), 180, "INVITE")) > 0 }
	l.waitFor("both of alice's phones ring", 5*time.Second, func() bool { return ringing(pa) && ringing(pb) })

	var refused *sipp
	if code != "*8" {
		// Carol may pick up nowhere: right credentials, 403.
		refused = l.dial("carol", "uac_auth_403.xml", "127.0.0.2", code, 0, "carol", "carol", phCarolPw)
		l.mustExit0(refused, 10*time.Second)
		phCheckChallenge(t, "carol", refused.messages(t), "INVITE", "carol", true)
		if !l.logHas("pickup refused", `"code":403`, `"user":"carol"`) {
			t.Error(`ringroute did not log "pickup refused" 403 for carol (a 403 for her credentials instead?)`)
		}
		for _, s := range []*sipp{pa, pb} {
			if n := len(requests(received(s.messages(t)), "CANCEL")); n != 0 {
				t.Errorf("%s got CANCEL after carol's refused pickup", s.spec.name)
			}
		}
	}
	bob := l.dial("bob", "uac_auth_answer.xml", "127.0.0.2", code, 300*ms, "bob", "bob", phBobPw)
	l.mustExit0(bob, 15*time.Second)
	l.mustExit0(c, 10*time.Second)
	l.mustExit0(pa, 10*time.Second)
	l.mustExit0(pb, 10*time.Second)

	bm, cm := bob.messages(t), c.messages(t)
	phCheckChallenge(t, "bob", bm, "INVITE", "bob", true)
	bobOK := phFinal(t, "bob", bm, 2, "INVITE")
	if bobOK.code() != 200 {
		t.Fatalf("bob's pickup answered %q, want 200", bobOK.first)
	}
	// Connected: each side has the other's SDP (session name kept by the
	// relay, which rewrites c= and m=).
	if want := fmt.Sprintf("s=caller-%d", c.port); !strings.Contains(bobOK.body, want) {
		t.Errorf("bob's 200 lacks the caller's offer (%s):\n%s", want, bobOK.body)
	}
	oks := responses(received(cm), 200, "INVITE")
	if len(oks) == 0 || len(distinctTo(oks)) != 1 {
		t.Fatalf("caller got %d 200s with To-tags %v, want one answer", len(oks), distinctTo(oks))
	}
	if want := fmt.Sprintf("s=phone-%d", bob.port); !strings.Contains(oks[0].body, want) {
		t.Errorf("caller's 200 lacks bob's offer (%s):\n%s", want, oks[0].body)
	}
	if len(requests(received(cm), "BYE")) != 1 {
		t.Error("bob's BYE did not reach the caller")
	}
	// SIPp stamps its log with a clock it reads once per loop, so two
	// instances' times may be some ms off: hence the slack.
	bobInvite := phSent(t, "bob", bm, 1, "INVITE")
	for _, s := range []*sipp{pa, pb} {
		msgs := s.messages(t)
		rs := cancelReasons(msgs)
		if len(rs) != 1 || !isElsewhere(rs[0]) {
			t.Errorf("%s got CANCELs with Reason %q, want one with SIP;cause=200;text=\"Call completed elsewhere\"", s.spec.name, rs)
		}
		checkCancelMatchesInvite(t, s.spec.name, msgs)
		if cn := at(msgs, isReq("CANCEL")); cn.Before(bobInvite.at.Add(-50 * ms)) {
			t.Errorf("%s was CANCELled at %v, before bob dialled %s at %v", s.spec.name, cn.Format("15:04:05.000"), code, bobInvite.at.Format("15:04:05.000"))
		}
	}

	// Nothing rings any more: *8 gets 404.
	nothing := l.dial("bob-again", rewriteScenario(t, l.dir, "uac_auth_403.xml", `<recv response="403"`, `<recv response="404"`),
		"127.0.0.2", "*8", 0, "bob", "bob", phBobPw)
	l.mustExit0(nothing, 10*time.Second)

	want := 2 // the call, the 404
	if refused != nil {
		want++
	}
	recs := l.cdrs(want)
	r := phCDRFor(t, recs, callerCallID(t, c))
	expectCDR(t, r.cdrRecord, "answered", 200)
	if r.AnsweredBy != "pickup:user:bob" || !strings.HasPrefix(r.AnsweredURI, fmt.Sprintf("sip:bob@127.0.0.2:%d", bob.port)) {
		t.Errorf("CDR answered_by %q answered_uri %q, want pickup:user:bob at bob's Contact", r.AnsweredBy, r.AnsweredURI)
	}
	got := map[string]string{}
	for _, lg := range r.Legs {
		got[lg.Member+" "+lg.URI] = fmt.Sprintf("%d %s", lg.Code, lg.Reason)
	}
	wantLegs := map[string]string{
		"user:alice " + a.contact("udp"):   "487 picked up elsewhere",
		"user:alice " + b.contact("udp"):   "487 picked up elsewhere",
		"pickup:user:bob " + r.AnsweredURI: "200 picked up",
	}
	if len(r.Legs) != 3 || fmt.Sprint(got) != fmt.Sprint(wantLegs) {
		t.Errorf("CDR legs %v, want %v", got, wantLegs)
	}
	if !phHasNote(r.Notes, "picked up by bob") {
		t.Errorf("CDR notes %q, want \"picked up by bob\"", r.Notes)
	}
	r404 := phCDRFor(t, recs, callerCallID(t, nothing))
	expectCDR(t, r404.cdrRecord, "rejected", 404)
	if refused != nil {
		r403 := phCDRFor(t, recs, callerCallID(t, refused))
		expectCDR(t, r403.cdrRecord, "rejected", 403)
		if r403.Dialled != code {
			t.Errorf("CDR of carol's pickup: dialled %q, want %q", r403.Dialled, code)
		}
	}
	l.d.checkNoLeaks(t)
	l.d.terminate(t)
}

// phPeerRegistrar is a SIPp registrar for TestPhoneScenarioPairs: it
// challenges the first REGISTER and answers the second, which must carry
// an Authorization header (the digest itself is not checked: that takes
// ringroute), with STATUS and EXTRA headers.
const phPeerRegistrar = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ph_peer_registrar">
  <recv request="REGISTER" crlf="true" timeout="10000"/>
  <send>
    <![CDATA[

      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="phones.test", nonce="e2e[call_number]", algorithm=MD5, qop="auth"
      Content-Length: 0

    ]]>
  </send>
  <recv request="REGISTER" timeout="10000">
    <action>
      <ereg regexp="Digest .*username=" search_in="hdr" header="Authorization:" check_it="true" assign_to="_"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 STATUS
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
EXTRA      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// phPeerChallengeAnswer is the peer of uac_auth_answer.xml: 407, then the
// INVITE with Proxy-Authorization is answered like uas_answer.xml does.
const phPeerChallengeAnswer = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ph_peer_challenge_answer">
  <recv request="INVITE" crlf="true" timeout="10000"/>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 407 Proxy Authentication Required
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Proxy-Authenticate: Digest realm="phones.test", nonce="e2e[call_number]", algorithm=MD5, qop="auth"
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" timeout="10000"/>
  <recv request="INVITE" timeout="10000">
    <action>
      <ereg regexp="Digest .*username=" search_in="hdr" header="Proxy-Authorization:" check_it="true" assign_to="_"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag02[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:peer@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag02[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:peer@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=peer 1 1 IN IP[local_ip_type] [local_ip]
      s=peer-[local_port]
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK" timeout="10000"/>
  <recv request="BYE" timeout="10000"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// TestPhoneScenarioPairs proves the reg_* and uac_auth_* scenarios sipp
// to sipp, with no ringroute: each meets the peer it is written for, and
// the negative controls (the wrong final response) must fail it.
func TestPhoneScenarioPairs(t *testing.T) {
	t.Parallel()
	needSuite(t)
	type pair struct {
		name, caller, peer string // peer: a file in testdata/sipp, or "registrar NNN" / "challenge-answer"
		transports         []string
		wantCaller         int
		wantPeer           int // -1: don't care (stopped)
		check              func(t *testing.T, caller, peer []sipMsg)
	}
	both, udp := []string{"udp", "tcp"}, []string{"udp"}
	pairs := []pair{
		{name: "reg_200", caller: "reg_auth.xml", peer: "registrar 200", transports: both,
			check: func(t *testing.T, c, p []sipMsg) {
				regs := requests(received(p), "REGISTER")
				want(t, len(regs) == 2 && regs[0].header("authorization") == "" && strings.Contains(regs[1].header("authorization"), `username="alice"`),
					"the first REGISTER has no Authorization, the second one for alice")
				want(t, len(regs) == 2 && regs[1].header("contact") == "<sip:alice@127.0.0.1:5999>" && regs[1].header("expires") == "120",
					"the REGISTER carries the -key contact and expires")
			}},
		{name: "reg_403", caller: "reg_auth_403.xml", peer: "registrar 403 Forbidden", transports: both},
		{name: "reg_423", caller: "reg_auth_423.xml", peer: "registrar 423", transports: both},
		{name: "reg_gets_403_fails", caller: "reg_auth.xml", peer: "registrar 403 Forbidden", transports: both, wantCaller: 1, wantPeer: -1},
		{name: "reg_403_gets_200_fails", caller: "reg_auth_403.xml", peer: "registrar 200", transports: both, wantCaller: 1, wantPeer: -1},
		{name: "reg_423_gets_200_fails", caller: "reg_auth_423.xml", peer: "registrar 200", transports: both, wantCaller: 1, wantPeer: -1},
		{name: "auth_407", caller: "uac_auth_407.xml", peer: "peer_uas_challenge.xml", transports: udp, wantPeer: -1},
		{name: "auth_403", caller: "uac_auth_403.xml", peer: "peer_uas_challenge.xml", transports: udp,
			check: func(t *testing.T, c, p []sipMsg) {
				acks := requests(sentMsgs(c), "ACK")
				invs := requests(sentMsgs(c), "INVITE")
				want(t, len(acks) == 2 && len(invs) == 2 && acks[0].branch() == invs[0].branch() && acks[1].branch() == invs[1].branch(),
					"each ACK for a non-2xx has its INVITE's branch")
			}},
		{name: "auth_answer", caller: "uac_auth_answer.xml", peer: "challenge-answer", transports: udp,
			check: func(t *testing.T, c, p []sipMsg) {
				want(t, len(requests(received(p), "BYE")) == 1, "the peer got the BYE")
			}},
		{name: "auth_407_gets_200_fails", caller: "uac_auth_407.xml", peer: "uas_answer_now.xml", transports: udp, wantCaller: 1, wantPeer: -1},
		{name: "auth_403_gets_200_fails", caller: "uac_auth_403.xml", peer: "challenge-answer", transports: udp, wantCaller: 1, wantPeer: -1},
		{name: "auth_answer_gets_403_fails", caller: "uac_auth_answer.xml", peer: "peer_uas_challenge.xml", transports: udp, wantCaller: 1, wantPeer: -1},
	}
	for _, p := range pairs {
		for _, tr := range p.transports {
			t.Run(p.name+"/"+tr, func(t *testing.T) {
				t.Parallel()
				dir := workDir(t)
				peer := p.peer
				write := func(name, body string) string {
					path := dir + "/" + name
					if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
						t.Fatal(err)
					}
					return path
				}
				switch {
				case peer == "challenge-answer":
					peer = write("peer_challenge_answer.xml", phPeerChallengeAnswer)
				case strings.HasPrefix(peer, "registrar "):
					status := strings.TrimPrefix(peer, "registrar ")
					extra := ""
					switch status {
					case "200":
						status, extra = "200 OK", "      Contact: <sip:alice@127.0.0.1:5999>;expires=120\n"
					case "423":
						status, extra = "423 Interval Too Brief", "      Min-Expires: 60\n"
					}
					peer = write("peer_registrar.xml", strings.NewReplacer("STATUS", status, "EXTRA", extra).Replace(phPeerRegistrar))
				}
				m := newSipp(t, dir, sippSpec{name: "peer", scenario: peer, transport: tr, timeout: 10 * time.Second})
				m.start(t)
				c := newSipp(t, dir, sippSpec{name: "caller", scenario: p.caller, transport: tr, remote: fmt.Sprintf("127.0.0.1:%d", m.port),
					service: "600", timeout: 10 * time.Second,
					keys:  map[string]string{"phone": "alice", "contact": "<sip:alice@127.0.0.1:5999>", "expires": "120"},
					extra: []string{"-au", "alice", "-ap", "secret"}})
				c.start(t)
				t.Cleanup(func() {
					if t.Failed() {
						t.Log(c.report())
						t.Log(m.report())
					}
				})
				cc, ok := c.wait(15 * time.Second)
				if !ok {
					t.Fatal("caller still running after 15s")
				}
				if cc != p.wantCaller {
					t.Errorf("caller exit %d, want %d", cc, p.wantCaller)
				}
				if p.wantPeer < 0 {
					m.stop(time.Second)
					return
				}
				mc, ok := m.wait(10 * time.Second)
				if !ok {
					t.Fatal("peer still running 10s after the caller ended")
				}
				if mc != p.wantPeer {
					t.Errorf("peer exit %d, want %d", mc, p.wantPeer)
				}
				if p.check != nil {
					p.check(t, c.messages(t), m.messages(t))
				}
			})
		}
	}
}
