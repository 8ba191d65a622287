package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// scenario is a ring group the bench calls. Member 1 answers 200 ms after
// its INVITE; members 2 and 3 ring until they are cancelled.
type scenario struct {
	name string
	ext  string
	// ring is the nominal INVITE→200: what the members make the caller
	// wait, before any work of the system under test.
	ring time.Duration
	// before is the part of ring spent on members tried before the one
	// that answers (the linear group's two 500 ms attempts).
	before time.Duration
}

var scenarios = map[string]*scenario{
	// All three ring at once; member 1 answers after 200 ms, the other
	// two are cancelled.
	"parallel": {name: "parallel", ext: "600", ring: 200 * time.Millisecond},
	// Member 2 rings 500 ms, then member 3 rings 500 ms (both are
	// cancelled when their time is up), then member 1 rings and answers
	// after 200 ms.
	"linear": {name: "linear", ext: "601", ring: 1200 * time.Millisecond, before: 1000 * time.Millisecond},
}

const (
	answerDelay   = 200 * time.Millisecond // member 1's ring time
	linearAttempt = 500 * time.Millisecond // members 2 and 3 in the linear group
)

// ports are the loopback ports of one bench run, all from -ports.
type ports struct {
	ringroute, kamailio, admin, caller, m1, m2, m3, ng int
	rrMediaLo, rrMediaHi                               int // ringroute's relay pool
	rtpeLo, rtpeHi                                     int // rtpengine's
}

func newPorts(base int) ports {
	return ports{
		ringroute: base + 60, kamailio: base + 62, admin: base + 81, caller: base + 80,
		m1: base + 71, m2: base + 72, m3: base + 73, ng: base + 222,
		// 10000 RTP/RTCP pairs: a relayed call takes two, so 5000 calls at
		// once (the linear group at 2900/s; with 3500 pairs ringroute's
		// relay knees were set by its 503s for an empty pool, at 0.54 of
		// its core in the linear group). ringroute and rtpengine never
		// run at the same time, so they share the range. It must not hold
		// the SIP ports above: rtpengine binds with SO_REUSEADDR, as
		// Kamailio does, and a media socket on Kamailio's SIP port takes
		// its datagrams (calls then stop after a few hundred).
		rrMediaLo: base + 1000, rrMediaHi: base + 20999,
		rtpeLo: base + 1000, rtpeHi: base + 20999,
	}
}

func (p ports) sip() []int {
	return []int{p.ringroute, p.kamailio, p.caller, p.m1, p.m2, p.m3, p.ng}
}

// sutOpts is how a system under test is set up for a step.
type sutOpts struct {
	media string // direct or relay
	sc    *scenario
	// hold: the scale run; members never answer, every timer is long.
	hold bool
	// users: generated registrar users (ringroute), each u<N> with
	// password "bench".
	users int
}

// sut is a running system under test: ringroute, or Kamailio (plus
// rtpengine for relayed media).
type sut struct {
	kind  string
	port  int
	main  *proc
	extra []*proc // rtpengine
	admin string  // ringroute's admin listener
}

func (s *sut) roots() []int {
	r := []int{s.main.pid()}
	for _, p := range s.extra {
		r = append(r, p.pid())
	}
	return r
}

func (s *sut) stop() {
	s.main.stop(3 * time.Second)
	for _, p := range s.extra {
		p.stop(3 * time.Second)
	}
}

func (s *sut) alive() bool {
	if s.main.exited() {
		return false
	}
	for _, p := range s.extra {
		if p.exited() {
			return false
		}
	}
	return true
}

func startSUT(e *env, kind, dir string, o sutOpts) (*sut, error) {
	switch kind {
	case "ringroute":
		return startRingroute(e, dir, o)
	case "kamailio":
		return startKamailio(e, dir, o)
	}
	return nil, fmt.Errorf("unknown system under test %q (ringroute or kamailio)", kind)
}

// ringrouteConfig is the daemon's config for the bench: UDP on loopback,
// the caller's address a trunk (no digest for INVITEs), no rate limits, log
// level warn, CDRs on (they are part of a call's work), and both groups.
func ringrouteConfig(e *env, o sutOpts) string {
	p := e.ports
	var b strings.Builder
	fmt.Fprintf(&b, "listen: [udp://127.0.0.1:%d]\n", p.ringroute)
	b.WriteString("realm: bench\ndrain_timeout: 0s\n")
	if o.media == "relay" {
		fmt.Fprintf(&b, "media: {mode: relay, address: 127.0.0.1, ports: %d-%d}\n", p.rrMediaLo, p.rrMediaHi)
	} else {
		b.WriteString("media: {mode: direct}\n")
	}
	fmt.Fprintf(&b, "admin: {listen: 127.0.0.1:%d}\n", p.admin)
	b.WriteString("log: {level: warn, format: json}\n")
	b.WriteString("cdr: {path: cdr.jsonl}\n")
	b.WriteString("registrar: {state_file: \"\"}\n")
	b.WriteString("limits: {requests_per_source: 0, auth_failures_per_source: 0}\n")
	b.WriteString("trunks: [{name: bench, from: [127.0.0.1/32]}]\n")
	if o.users > 0 {
		b.WriteString("users:\n")
		for i := range o.users {
			fmt.Fprintf(&b, "  - {name: %s, password: %s}\n", userName(i), benchPassword)
		}
	}
	groupTimeout, memberTimeout := "60s", "30s"
	if o.hold {
		groupTimeout, memberTimeout = "900s", "600s"
	}
	m := func(port, n int) string { return fmt.Sprintf("sip:m%d@127.0.0.1:%d", n, port) }
	fmt.Fprintf(&b, `groups:
  - name: parallel
    extension: "600"
    strategy: all
    timeout: %s
    member_timeout: %s
    retry_delay: 0s
    members:
      - uri: %s
      - uri: %s
      - uri: %s
  - name: linear
    extension: "601"
    strategy: linear
    timeout: 60s
    member_timeout: %s
    retry_delay: 0s
    members:
      - uri: %s
      - uri: %s
      - {uri: %s, timeout: 30s}
`, groupTimeout, memberTimeout, m(p.m1, 1), m(p.m2, 2), m(p.m3, 3), linearAttempt, m(p.m2, 2), m(p.m3, 3), m(p.m1, 1))
	return b.String()
}

const benchPassword = "bench"

func userName(i int) string { return fmt.Sprintf("u%05d", i) }

func startRingroute(e *env, dir string, o sutOpts) (*sut, error) {
	cfg := filepath.Join(dir, "ringroute.yaml")
	if err := os.WriteFile(cfg, []byte(ringrouteConfig(e, o)), 0o644); err != nil {
		return nil, err
	}
	p, err := start("ringroute", cpuSUT, dir, nil, e.rrBin, "run", "-c", cfg)
	if err != nil {
		return nil, err
	}
	s := &sut{kind: "ringroute", port: e.ports.ringroute, main: p, admin: fmt.Sprintf("127.0.0.1:%d", e.ports.admin)}
	if err := waitSIP(s, 15*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("ringroute: %w; log %s:\n%s", err, p.log, tail(p.log, 20))
	}
	return s, nil
}

// kamailioCfg is a record-routing stateful proxy (tm) that forks a call to
// the three members: in parallel (append_branch), or one after another
// (failure_route chain, each of the first two with a 500 ms fr_inv_timer).
// With relayed media every INVITE's SDP goes through rtpengine (offer on
// the INVITE, answer on a reply with SDP, delete on BYE and CANCEL).
const kamailioCfg = `#!KAMAILIO
# written by bench/sip; Kamailio {{.Version}}
debug=0
log_stderror=yes
children={{.Children}}
{{- range .Core}}
{{.}}
{{- end}}
listen=udp:127.0.0.1:{{.Port}}
disable_tcp=yes
dns=no
rev_dns=no
use_dns_cache=off
auto_aliases=no
alias="127.0.0.1:{{.Port}}"
mpath="{{.ModPath}}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "textops.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "corex.so"
{{- if .Relay}}
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:{{.NG}}")
{{- end}}

modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", {{.FrInv}})
modparam("tm", "max_inv_lifetime", {{.MaxInv}})

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) {
{{- if .Relay}}
			rtpengine_delete();
{{- end}}
			t_relay();
		}
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
{{- if .Relay}}
			if (is_method("BYE")) {
				rtpengine_delete();
			}
{{- end}}
			t_relay();
			exit;
		}
		if (is_method("ACK")) {
			if (t_check_trans()) {
				t_relay();
			}
			exit;
		}
		sl_send_reply("404", "Not here");
		exit;
	}
	if (!is_method("INVITE")) {
		sl_send_reply("405", "Method Not Allowed");
		exit;
	}
	record_route();
{{- if .Relay}}
	rtpengine_offer();
	t_on_reply("MEDIA");
{{- end}}
{{- if .Linear}}
	$ru = "sip:m2@127.0.0.1:{{.M2}}";
	t_set_fr({{.Attempt}}, 2000);
	t_on_failure("SECOND");
{{- else}}
	$ru = "sip:m1@127.0.0.1:{{.M1}}";
	append_branch("sip:m2@127.0.0.1:{{.M2}}");
	append_branch("sip:m3@127.0.0.1:{{.M3}}");
{{- end}}
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
{{- if .Linear}}

failure_route[SECOND] {
	if (t_is_canceled()) {
		exit;
	}
	$ru = "sip:m3@127.0.0.1:{{.M3}}";
	t_set_fr({{.Attempt}}, 2000);
	t_on_failure("THIRD");
{{- if .Relay}}
	t_on_reply("MEDIA");
{{- end}}
	t_relay();
}

failure_route[THIRD] {
	if (t_is_canceled()) {
		exit;
	}
	$ru = "sip:m1@127.0.0.1:{{.M1}}";
	t_set_fr(30000, 5000);
{{- if .Relay}}
	t_on_reply("MEDIA");
{{- end}}
	t_relay();
}
{{- end}}
{{- if .Relay}}

onreply_route[MEDIA] {
	if (has_body("application/sdp")) {
		rtpengine_answer();
	}
}
{{- end}}
`

// kamailioChildren is the number of UDP worker processes (-kamailio-children).
var kamailioChildren = 4

// kamailioCore are extra core settings (-kamailio-core "a=1;b=2"). The
// default gives Kamailio's UDP socket a 4 MiB receive buffer, as SIPp's
// have: with its own default (maxbuffer 256 KiB) SIPp's bursts overflow
// it from about 1200 calls/s, and the lost datagrams come back as 408s
// long before Kamailio runs out of CPU. That is one line any Kamailio
// under load has; ringroute's socket buffer is ringroute's own business
// (see the UDP drops column).
var kamailioCore = []string{"maxbuffer=4194304"}

func kamailioModPath() string {
	for _, d := range []string{"/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules"} {
		if _, err := os.Stat(filepath.Join(d, "tm.so")); err == nil {
			return d + "/"
		}
	}
	return "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
}

func writeKamailioCfg(e *env, path string, o sutOpts) error {
	t := template.Must(template.New("kamailio").Parse(kamailioCfg))
	frInv, maxInv := 30000, 180000
	if o.hold {
		frInv, maxInv = 600000, 900000
	}
	var b bytes.Buffer
	err := t.Execute(&b, map[string]any{
		"Version": e.kamVersion, "Children": kamailioChildren, "Core": kamailioCore, "Port": e.ports.kamailio,
		"ModPath": kamailioModPath(), "Relay": o.media == "relay", "NG": e.ports.ng,
		"FrInv": frInv, "MaxInv": maxInv, "Linear": o.sc != nil && o.sc.name == "linear",
		"M1": e.ports.m1, "M2": e.ports.m2, "M3": e.ports.m3, "Attempt": int(linearAttempt / time.Millisecond),
	})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func startKamailio(e *env, dir string, o sutOpts) (*sut, error) {
	cfg := filepath.Join(dir, "kamailio.cfg")
	if err := writeKamailioCfg(e, cfg, o); err != nil {
		return nil, err
	}
	s := &sut{kind: "kamailio", port: e.ports.kamailio}
	if o.media == "relay" {
		r, err := startRtpengine(e, dir)
		if err != nil {
			return nil, err
		}
		s.extra = append(s.extra, r)
	}
	shm := "256"
	if o.hold {
		shm = "2048"
	}
	// -DD: stay in the foreground (the workers are still forked), -E: log
	// to stderr; shared memory -m MiB, private -M MiB per process.
	p, err := start("kamailio", cpuSUT, dir, nil, "kamailio", "-DD", "-E", "-f", cfg, "-m", shm, "-M", "16", "-w", dir, "-Y", dir)
	if err != nil {
		s.stop()
		return nil, err
	}
	s.main = p
	if err := waitSIP(s, 15*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("kamailio: %w; log %s:\n%s", err, p.log, tail(p.log, 20))
	}
	return s, nil
}

// startRtpengine starts rtpengine in userspace only (--table=-1: no
// kernel forwarding), one worker thread, on the SUT's core, its ng control
// socket on loopback, sessions deleted at once on delete.
func startRtpengine(e *env, dir string) (*proc, error) {
	p, err := start("rtpengine", cpuSUT, dir, nil, "rtpengine", "--config-file=none", "--foreground", "--log-stderr",
		"--table=-1", "--interface=127.0.0.1", "--listen-ng=127.0.0.1:"+strconv.Itoa(e.ports.ng),
		"--port-min="+strconv.Itoa(e.ports.rtpeLo), "--port-max="+strconv.Itoa(e.ports.rtpeHi),
		"--num-threads=1", "--delete-delay=0", "--log-level=6")
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := dialNG(fmt.Sprintf("127.0.0.1:%d", e.ports.ng)); err == nil {
			_, err = c.call(map[string]any{"command": "ping"})
			c.close()
			if err == nil {
				return p, nil
			}
		}
		if p.exited() || time.Now().After(deadline) {
			p.stop(time.Second)
			return nil, fmt.Errorf("rtpengine did not answer ng ping; log %s:\n%s", p.log, tail(p.log, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSIP waits until the SUT answers an OPTIONS (any response will do:
// Kamailio's bench config answers 405).
func waitSIP(s *sut, d time.Duration) error {
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		if !s.alive() {
			return fmt.Errorf("exited before it answered SIP")
		}
		if sipPing(s.port, i) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to OPTIONS on 127.0.0.1:%d after %v", s.port, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sipPing(port, n int) bool {
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return false
	}
	defer c.Close()
	lp := c.LocalAddr().(*net.UDPAddr).Port
	msg := fmt.Sprintf("OPTIONS sip:ping@127.0.0.1:%d SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-bench-%d-%d\r\n"+
		"From: <sip:bench@127.0.0.1>;tag=bench%d\r\nTo: <sip:ping@127.0.0.1>\r\n"+
		"Call-ID: bench-ping-%d-%d@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		port, lp, os.Getpid(), n, n, os.Getpid(), n)
	if _, err := c.Write([]byte(msg)); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 4096)
	k, err := c.Read(buf)
	return err == nil && bytes.HasPrefix(buf[:k], []byte("SIP/2.0 "))
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
