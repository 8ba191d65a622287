//go:build linux

// Media through the relay, on the wire. SIPp plays RTP from a pcap (a cut
// of the Debian package's g711a.pcap, G.711 A-law, PT 8) and echoes what
// it receives (-rtp_echo); a packet socket on the loopback interface
// (wireTap) records every UDP datagram to or from ringroute's media pool
// and the SIPp media ports, so each case checks what each side actually
// sent and received, datagram by datagram, not only what ringroute says it
// relayed in its CDR.
//
// SIPp sends pcaps from a raw socket and the tap is a packet socket: both
// need CAP_NET_RAW (root). Without it the media cases are skipped, loudly.
package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The relay's port pool in configYAMLLevel.
const poolLo, poolHi = 40000, 59999

// clipPackets is how much of g711a.pcap the cases play: 25 packets of 20
// ms, 480 ms from the first to the last. The pauses after playback starts
// (-d 1200 ms) leave over 700 ms after it, so every packet is sent,
// relayed and echoed before the call moves on (BYE, or the 200 after early
// media), and the counts can be exact.
const clipPackets = 25

const g711aPcap = "/usr/share/sip-tester/g711a.pcap"

// pcapClip is the cut of g711aPcap the cases play: its path (for -key pcap)
// and the RTP datagrams in it (UDP payloads, in order).
type pcapClip struct {
	path string
	rtp  [][]byte
}

var (
	clipOnce sync.Once
	clip     *pcapClip
	clipErr  error
)

// needMedia skips unless SIPp can play pcaps and the tap can listen (both
// need CAP_NET_RAW), and returns the clip.
func needMedia(t *testing.T) *pcapClip {
	t.Helper()
	needSuite(t)
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, int(htons(syscall.ETH_P_IP)))
	if err != nil {
		t.Skipf("media cases need CAP_NET_RAW (run as root): SIPp plays pcaps from a raw socket and the wire tap is a packet socket: %v", err)
	}
	syscall.Close(fd)
	clipOnce.Do(func() { clip, clipErr = writeClip(filepath.Join(binDir, "g711a-clip.pcap"), clipPackets) })
	if clipErr != nil {
		t.Fatalf("%v (the pcap ships with sip-tester, which the suite needs)", clipErr)
	}
	return clip
}

// writeClip copies the first n packets of g711aPcap to path.
func writeClip(path string, n int) (*pcapClip, error) {
	b, err := os.ReadFile(g711aPcap)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		return nil, fmt.Errorf("%s: not a little-endian Ethernet pcap", g711aPcap)
	}
	c := &pcapClip{path: path}
	off := 24
	for range n {
		if off+16 > len(b) {
			return nil, fmt.Errorf("%s: fewer than %d packets", g711aPcap, n)
		}
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		if off+16+incl > len(b) {
			return nil, fmt.Errorf("%s: truncated packet at byte %d", g711aPcap, off)
		}
		frame := b[off+16 : off+16+incl]
		off += 16 + incl
		if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			return nil, fmt.Errorf("%s: packet %d is not IPv4", g711aPcap, len(c.rtp)+1)
		}
		_, _, payload, ok := parseUDP(frame[14:])
		if !ok || !isRTP(payload) || payload[1]&0x7f != 8 {
			return nil, fmt.Errorf("%s: packet %d is not RTP with PT 8", g711aPcap, len(c.rtp)+1)
		}
		c.rtp = append(c.rtp, payload)
	}
	if err := os.WriteFile(path, b[:off], 0o644); err != nil {
		return nil, err
	}
	return c, nil
}

// ---------------------------------------------------------------------------
// Cases

var mediaCases = []struct {
	name string
	run  func(e *env, clip *pcapClip)
}{
	{"relay_rtp_echo", relayRTPEcho},
	{"relay_early_media", relayEarlyMedia},
}

// TestMedia runs the media cases over UDP and TCP signalling (the media is
// UDP either way), each with its own daemon, like TestCalls.
func TestMedia(t *testing.T) {
	needDaemon(t)
	clip := needMedia(t)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			for _, c := range mediaCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					e := newEnv(t, tr)
					c.run(e, clip)
					e.done()
				})
			}
		})
	}
}

// The caller plays the clip after its ACK; the member echoes it. Each side
// must get SDP with ringroute's address and a pool port of its own, never
// the other side's port, and every datagram must go caller -> relay ->
// member -> relay -> caller, unchanged, from the ports the SDP announced.
func relayRTPEcho(e *env, clip *pcapClip) {
	t := e.t
	m1 := e.member("m1", "uas_media_answer.xml", 1, 100*ms, nil)
	m1.spec.extra = []string{"-rtp_echo"}
	e.daemon(sales("all", 4*time.Second, 3*time.Second, m1))
	tap := startTap(t, m1.mediaPort())
	c := e.call("caller", "uac_media_play.xml", "600", 1200*ms, withKey("pcap", clip.path))
	e.finish()
	w := tap.stop(t)

	cm, mm := c.messages(t), m1.messages(t)
	C, M := c.mediaPort(), m1.mediaPort()
	offer := sentSDP(t, "caller's INVITE", initialInvites(sentMsgs(cm)))
	answer := sentSDP(t, "member's 200", responses(sentMsgs(mm), 200, "INVITE"))
	if offer.port != C || answer.port != M {
		t.Fatalf("the scenarios' SDP announce ports %d (caller) and %d (member), want their -mp %d and %d", offer.port, answer.port, C, M)
	}
	// Y: the member side of the relay, X: the caller side.
	Y := relaySDP(t, "member's INVITE", initialInvites(received(mm)), C, M).port
	X := relaySDP(t, "caller's 200", responses(received(cm), 200, "INVITE"), C, M).port
	if X == Y {
		t.Errorf("the caller's 200 and the member's INVITE both announce relay port %d; each side needs its own", X)
	}
	t.Logf("media ports: caller %d, member %d; relay caller side %d, member side %d", C, M, X, Y)

	// On the wire, in order: the clip from the caller to X, from Y to the
	// member, the member's echo to Y, and from X back to the caller.
	sameDatagrams(t, "caller -> relay (the clip played to the caller's 200 SDP)", w.flow(C, X), clip.rtp)
	sameDatagrams(t, "relay -> member (relayed from the port in the member's INVITE)", w.flow(Y, M), clip.rtp)
	sameDatagrams(t, "member -> relay (the member's echo of what reached it)", w.flow(M, Y), clip.rtp)
	sameDatagrams(t, "relay -> caller (the echo relayed from the port in the caller's 200)", w.flow(X, C), clip.rtp)
	w.only(t, X, C, byeSent(t, cm))
	w.only(t, Y, M, byeSent(t, cm))
	w.noBypass(t, C, M)

	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	if r.AnsweredBy != key(m1) {
		t.Errorf("CDR answered_by %q, want %q", r.AnsweredBy, key(m1))
	}
	expectRTP(t, r, cdrRTP{FromCaller: uint64(len(w.flow(Y, M))), FromMember: uint64(len(w.flow(X, C)))})
	if r.RTP != nil && (r.RTP.FromCaller == 0 || r.RTP.FromMember == 0) {
		t.Errorf("CDR rtp %+v: want packets relayed both ways", *r.RTP)
	}
}

// The member answers 183 with SDP and plays the clip as early media, then
// answers 200 some 0.9 s after the clip ends. The caller gets 183 with
// ringroute's SDP (its pool port) and then 200 with the same address, and
// hears the clip through the relay before the 200; it echoes what it
// hears, and the relay must not pass that on to a member that has not
// answered.
func relayEarlyMedia(e *env, clip *pcapClip) {
	t := e.t
	m1 := e.member("m1", "uas_early_media.xml", 1, 1200*ms, map[string]string{"pcap": clip.path})
	e.daemon(sales("all", 5*time.Second, 4*time.Second, m1))
	tap := startTap(t, m1.mediaPort())
	c := e.call("caller", "uac_early_media.xml", "600", 300*ms, func(s *sippSpec) { s.extra = []string{"-rtp_echo"} })
	e.finish()
	w := tap.stop(t)

	cm, mm := c.messages(t), m1.messages(t)
	C, M := c.mediaPort(), m1.mediaPort()
	offer := sentSDP(t, "caller's INVITE", initialInvites(sentMsgs(cm)))
	early := sentSDP(t, "member's 183", responses(sentMsgs(mm), 183, "INVITE"))
	if offer.port != C || early.port != M {
		t.Fatalf("the scenarios' SDP announce ports %d (caller) and %d (member), want their -mp %d and %d", offer.port, early.port, C, M)
	}
	if n := len(responses(received(cm), 183, "INVITE")); n != 1 {
		t.Errorf("caller got %d 183, want exactly 1 (the member's early media)", n)
	}
	if n := len(responses(received(cm), 180, "INVITE")); n != 0 {
		t.Errorf("caller got %d 180 besides the 183 with SDP", n)
	}
	Y := relaySDP(t, "member's INVITE", initialInvites(received(mm)), C, M).port
	progress := relaySDP(t, "caller's 183", responses(received(cm), 183, "INVITE"), C, M)
	final := relaySDP(t, "caller's 200", responses(received(cm), 200, "INVITE"), C, M)
	X := progress.port
	if final.addr != progress.addr || final.port != progress.port {
		t.Errorf("caller's 200 SDP says %s:%d, its 183 said %s:%d: the media address must not move at the answer",
			final.addr, final.port, progress.addr, progress.port)
	}
	if X == Y {
		t.Errorf("the caller's 183 and the member's INVITE both announce relay port %d; each side needs its own", X)
	}
	t.Logf("media ports: caller %d, member %d; relay caller side %d, member side %d", C, M, X, Y)

	sameDatagrams(t, "member -> relay (the clip as early media, to the port in the member's INVITE)", w.flow(M, Y), clip.rtp)
	sameDatagrams(t, "relay -> caller (early media relayed from the port in the caller's 183)", w.flow(X, C), clip.rtp)
	sameDatagrams(t, "caller -> relay (the caller's echo of what reached it)", w.flow(C, X), clip.rtp)
	if n := len(w.flow(Y, M)); n != 0 {
		t.Errorf("relay -> member: %d datagrams; the caller's audio (its echo of the early media) must not reach a member before it answers, and after the answer there was nothing to echo", n)
	}
	w.only(t, X, C, byeSent(t, cm))
	w.only(t, Y, M, byeSent(t, cm))
	w.noBypass(t, C, M)
	if oks := responses(received(cm), 200, "INVITE"); len(oks) > 0 {
		answered := oks[0].at
		late := 0
		for _, p := range w.flow(X, C) {
			if !p.at.Before(answered) {
				late++
			}
		}
		if late > 0 || len(w.flow(X, C)) == 0 {
			t.Errorf("of %d datagrams relayed to the caller, %d arrived after its 200 (at %s): want all of them before, as early media",
				len(w.flow(X, C)), late, answered.Format("15:04:05.000000"))
		}
	}

	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
	expectRTP(t, r, cdrRTP{FromCaller: 0, FromMember: uint64(len(w.flow(X, C)))})
	if r.RTP != nil && r.RTP.FromMember == 0 {
		t.Errorf("CDR rtp.from_member 0: the early media was not relayed")
	}
}

func withKey(k, v string) func(*sippSpec) {
	return func(s *sippSpec) {
		if s.keys == nil {
			s.keys = map[string]string{}
		}
		s.keys[k] = v
	}
}

// expectRTP compares the CDR's rtp counters with what the wire showed.
func expectRTP(t *testing.T, r cdrRecord, want cdrRTP) {
	t.Helper()
	if r.RTP == nil {
		t.Errorf("CDR has no rtp (media mode relay): %+v", r)
		return
	}
	if *r.RTP != want {
		t.Errorf("CDR rtp %+v, want %+v (from_caller/from_member: datagrams the relay sent on, as seen on the wire)", *r.RTP, want)
	}
}

// ---------------------------------------------------------------------------
// The scenarios themselves, sipp to sipp

// TestMediaPairs checks the media scenarios against each other with no
// ringroute in between, as TestScenarioPairs does for the others: the clip
// goes out whole, -rtp_echo sends it back, early media flows before the
// 200, and the scenarios' own SDP checks can fail. UDP only: the
// signalling transport changes nothing for SIPp's media, and TestMedia
// runs both.
func TestMediaPairs(t *testing.T) {
	needSuite(t)
	clip := needMedia(t)
	type pair struct {
		name                     string
		caller, member           string
		callerExtra, memberExtra []string
		callerPause, memberPause time.Duration
		wantCaller, wantMember   int // exit codes; -1: don't care
		check                    func(t *testing.T, w wire, C, M int, c, m []sipMsg)
		callerPcap, memberPcap   bool
	}
	pairs := []pair{
		{name: "play_echo", caller: "uac_media_play.xml", member: "uas_media_answer.xml", callerPcap: true, memberExtra: []string{"-rtp_echo"},
			callerPause: 1200 * ms, memberPause: 100 * ms,
			check: func(t *testing.T, w wire, C, M int, c, m []sipMsg) {
				sameDatagrams(t, "caller -> member", w.flow(C, M), clip.rtp)
				sameDatagrams(t, "member -> caller (echo)", w.flow(M, C), clip.rtp)
				if oks, f := responses(received(c), 200, "INVITE"), w.flow(C, M); len(oks) > 0 && len(f) > 0 {
					want(t, f[0].at.After(oks[0].at), "the caller plays only after the 200")
				}
			}},
		// The tap's control: without -rtp_echo nothing comes back.
		{name: "play_no_echo", caller: "uac_media_play.xml", member: "uas_media_answer.xml", callerPcap: true,
			callerPause: 1200 * ms,
			check: func(t *testing.T, w wire, C, M int, c, m []sipMsg) {
				sameDatagrams(t, "caller -> member", w.flow(C, M), clip.rtp)
				want(t, len(w.flow(M, C)) == 0, "no datagram back from a member without -rtp_echo")
			}},
		{name: "early_media", caller: "uac_early_media.xml", member: "uas_early_media.xml", memberPcap: true, callerExtra: []string{"-rtp_echo"},
			callerPause: 300 * ms, memberPause: 1200 * ms,
			check: func(t *testing.T, w wire, C, M int, c, m []sipMsg) {
				sameDatagrams(t, "member -> caller (early media)", w.flow(M, C), clip.rtp)
				sameDatagrams(t, "caller -> member (echo)", w.flow(C, M), clip.rtp)
				oks := responses(received(c), 200, "INVITE")
				want(t, len(oks) == 1, "caller got the 200")
				if len(oks) > 0 {
					for _, p := range w.flow(M, C) {
						if !p.at.Before(oks[0].at) {
							t.Errorf("early media datagram at %s, after the caller's 200 at %s", p.at.Format("15:04:05.000000"), oks[0].at.Format("15:04:05.000000"))
							break
						}
					}
				}
			}},
		// Negative controls: the scenarios' own checks must fail.
		{name: "play_gets_pcmu_answer_fails", caller: "uac_media_play.xml", member: "uas_answer.xml", callerPcap: true, wantCaller: 1, wantMember: -1},
		{name: "media_answer_gets_pcmu_offer_fails", caller: "uac_answer.xml", member: "uas_media_answer.xml", wantCaller: 0, wantMember: 1},
		{name: "early_media_gets_180_fails", caller: "uac_early_media.xml", member: "uas_media_answer.xml", memberPause: 100 * ms, wantCaller: 1, wantMember: -1},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			dir := workDir(t)
			var mk, ck map[string]string
			if p.memberPcap {
				mk = map[string]string{"pcap": clip.path}
			}
			if p.callerPcap {
				ck = map[string]string{"pcap": clip.path}
			}
			m := newSipp(t, dir, sippSpec{name: "member", scenario: p.member, transport: "udp", pause: p.memberPause, keys: mk, extra: p.memberExtra, timeout: 10 * time.Second})
			m.start(t)
			c := newSipp(t, dir, sippSpec{name: "caller", scenario: p.caller, transport: "udp", remote: fmt.Sprintf("127.0.0.1:%d", m.port), service: "600",
				pause: p.callerPause, keys: ck, extra: p.callerExtra, timeout: 10 * time.Second})
			tap := startTap(t, c.mediaPort(), m.mediaPort())
			c.start(t)
			t.Cleanup(func() {
				if t.Failed() {
					t.Log(c.report())
					t.Log(m.report())
				}
			})
			cc, ok := c.wait(20 * time.Second)
			if !ok {
				t.Fatal("caller still running after 20s")
			}
			if cc != p.wantCaller {
				t.Errorf("caller exit %d, want %d", cc, p.wantCaller)
			}
			if p.wantMember < 0 {
				m.stop(time.Second) // a negative control: the member's fate is not the point
			} else if mc, ok := m.wait(10 * time.Second); !ok {
				t.Fatal("member still running 10s after the caller ended")
			} else if mc != p.wantMember {
				t.Errorf("member exit %d, want %d", mc, p.wantMember)
			}
			w := tap.stop(t)
			if p.check != nil {
				p.check(t, w, c.mediaPort(), m.mediaPort(), c.messages(t), m.messages(t))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// SDP in the message logs

type sdpAudio struct {
	addr string // c= for the audio stream (media level, else session level)
	port int
	pts  []string
}

// audioSDP reads the first m=audio of an SDP body.
func audioSDP(body string) (sdpAudio, error) {
	var a sdpAudio
	session, inAudio, seen := "", false, false
	for _, l := range strings.Split(body, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "m="):
			if seen {
				inAudio = false
				continue
			}
			f := strings.Fields(l[2:])
			if len(f) < 4 || f[0] != "audio" {
				continue
			}
			p, err := strconv.Atoi(f[1])
			if err != nil {
				return a, fmt.Errorf("bad m= line %q", l)
			}
			a.port, a.pts, inAudio, seen = p, f[3:], true, true
		case strings.HasPrefix(l, "c="):
			f := strings.Fields(l[2:])
			if len(f) != 3 || f[0] != "IN" {
				return a, fmt.Errorf("bad c= line %q", l)
			}
			if inAudio {
				a.addr = f[2]
			} else if !seen {
				session = f[2]
			}
		}
	}
	if !seen {
		return a, errors.New("no m=audio")
	}
	if a.addr == "" {
		a.addr = session
	}
	if a.addr == "" {
		return a, errors.New("no c= for the audio stream")
	}
	return a, nil
}

// sentSDP is the audio SDP of the first of msgs, which a scenario wrote.
func sentSDP(t *testing.T, what string, msgs []sipMsg) sdpAudio {
	t.Helper()
	if len(msgs) == 0 {
		t.Fatalf("no %s in the message log", what)
	}
	a, err := audioSDP(msgs[0].body)
	if err != nil {
		t.Fatalf("%s SDP: %v:\n%s", what, err, msgs[0].body)
	}
	return a
}

// relaySDP is the audio SDP of the first of msgs, which ringroute wrote:
// it must show ringroute's media address and a port from its pool, not
// either peer's own port, and keep PT 8.
func relaySDP(t *testing.T, what string, msgs []sipMsg, callerPort, memberPort int) sdpAudio {
	t.Helper()
	a := sentSDP(t, what, msgs)
	if a.addr != "127.0.0.1" {
		t.Errorf("%s SDP c= %s, want ringroute's media address 127.0.0.1", what, a.addr)
	}
	if a.port < poolLo || a.port > poolHi {
		t.Errorf("%s SDP m=audio port %d, want one of ringroute's pool %d-%d", what, a.port, poolLo, poolHi)
	}
	if a.port == callerPort || a.port == memberPort {
		t.Errorf("%s SDP m=audio port %d is a SIPp media port (caller %d, member %d): the SDP was not rewritten", what, a.port, callerPort, memberPort)
	}
	if len(a.pts) != 1 || a.pts[0] != "8" {
		t.Errorf("%s SDP payload types %v, want [8] as offered and answered", what, a.pts)
	}
	if t.Failed() {
		t.Logf("%s SDP:\n%s", what, msgs[0].body)
	}
	return a
}

// ---------------------------------------------------------------------------
// The wire tap

// wirePkt is one UDP datagram between two 127.0.0.1 ports, as it arrived
// on the loopback interface (kernel timestamp).
type wirePkt struct {
	src, dst int
	at       time.Time
	data     []byte // UDP payload
}

type wire []wirePkt

func (w wire) flow(src, dst int) wire {
	var out wire
	for _, p := range w {
		if p.src == src && p.dst == dst {
			out = append(out, p)
		}
	}
	return out
}

// only checks that everything sent from relay port src before the call
// ended went to dst: the relay sends each side's media to that side's
// peer alone. (After the end another daemon of the suite may have taken
// the port.)
func (w wire) only(t *testing.T, src, dst int, end time.Time) {
	t.Helper()
	other := map[int]int{}
	for _, p := range w {
		if p.src == src && p.dst != dst && p.at.Before(end) {
			other[p.dst]++
		}
	}
	if len(other) > 0 {
		t.Errorf("relay port %d sent datagrams to ports %v (port: count), want only to %d", src, other, dst)
	}
}

// byeSent is when the caller sent its BYE: the call's media session is
// open until then.
func byeSent(t *testing.T, caller []sipMsg) time.Time {
	t.Helper()
	end := at(caller, func(m sipMsg) bool { return m.sent && m.method() == "BYE" })
	if end.IsZero() {
		t.Fatal("the caller sent no BYE")
	}
	return end
}

// noBypass checks that the two SIPp media ports never talked directly.
func (w wire) noBypass(t *testing.T, c, m int) {
	t.Helper()
	if n, k := len(w.flow(c, m)), len(w.flow(m, c)); n+k > 0 {
		t.Errorf("%d datagrams caller -> member and %d member -> caller directly: media bypassed the relay", n, k)
	}
}

// sameDatagrams checks that got carries exactly want, in order, byte for
// byte (the relay passes RTP on unchanged).
func sameDatagrams(t *testing.T, what string, got wire, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d datagrams on the wire, want %d (the clip) %s", what, len(got), len(want), seqs(got))
		return
	}
	for i, p := range got {
		if !bytes.Equal(p.data, want[i]) {
			t.Errorf("%s: datagram %d (%d bytes, %s) differs from the clip's (%d bytes, seq %d)", what, i+1, len(p.data), seqs(got[i:i+1]), len(want[i]), rtpSeq(want[i]))
			return
		}
	}
}

func seqs(w wire) string {
	var b strings.Builder
	b.WriteString("seq [")
	for i, p := range w {
		if i > 0 {
			b.WriteByte(' ')
		}
		if isRTP(p.data) {
			fmt.Fprint(&b, rtpSeq(p.data))
		} else {
			fmt.Fprintf(&b, "non-RTP(%d bytes)", len(p.data))
		}
	}
	b.WriteString("]")
	return b.String()
}

func isRTP(b []byte) bool     { return len(b) >= 12 && b[0]>>6 == 2 }
func rtpSeq(b []byte) int     { return int(binary.BigEndian.Uint16(b[2:])) }
func htons(v uint16) uint16   { return v<<8 | v>>8 }
func u16(b []byte, i int) int { return int(binary.BigEndian.Uint16(b[i:])) }

// onLoopback: both addresses of an IPv4 header are 127.0.0.1.
func onLoopback(ip []byte) bool {
	lo := []byte{127, 0, 0, 1}
	return bytes.Equal(ip[12:16], lo) && bytes.Equal(ip[16:20], lo)
}

// parseUDP reads an IPv4 datagram: UDP ports and payload.
func parseUDP(b []byte) (src, dst int, payload []byte, ok bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != syscall.IPPROTO_UDP {
		return 0, 0, nil, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := u16(b, 2)
	if ihl < 20 || total > len(b) || total < ihl+8 || u16(b, 6)&0x1fff != 0 || b[6]&0x20 != 0 {
		return 0, 0, nil, false // short, or a fragment
	}
	u := b[ihl:total]
	return u16(u, 0), u16(u, 2), u[8:], true
}

// wireTap reads the loopback interface through an AF_PACKET socket whose
// kernel filter keeps only UDP with a port in ringroute's pool or one of
// the given ports, so the suite's other traffic costs it nothing.
type wireTap struct {
	fd     int
	stopAt atomic.Int64 // unix ns; 0 while running
	done   chan struct{}
	once   sync.Once

	mu   sync.Mutex
	pkts wire
	err  error
}

func startTap(t *testing.T, ports ...int) *wireTap {
	t.Helper()
	lo, err := loopback()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, int(htons(syscall.ETH_P_IP)))
	if err != nil {
		t.Fatalf("wire tap: %v", err)
	}
	w := &wireTap{fd: fd, done: make(chan struct{})}
	fail := func(what string, err error) {
		syscall.Close(fd)
		t.Fatalf("wire tap: %s: %v", what, err)
	}
	if err := attachFilter(fd, tapFilter(ports)); err != nil {
		fail("SO_ATTACH_FILTER", err)
	}
	// What was queued before the filter is read and thrown away below by
	// the port check; bind keeps it to the loopback interface.
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_IP), Ifindex: lo}); err != nil {
		fail("bind lo", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		fail("SO_TIMESTAMPNS", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 4<<20)
	tv := syscall.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		fail("SO_RCVTIMEO", err)
	}
	packetStats(fd) // reset the counters: drops from before the filter do not count
	go w.read()
	t.Cleanup(func() { w.halt() })
	return w
}

func loopback() (int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			return i.Index, nil
		}
	}
	return 0, errors.New("wire tap: no loopback interface")
}

func (w *wireTap) read() {
	defer close(w.done)
	buf := make([]byte, 1<<16)
	oob := make([]byte, 256)
	for {
		n, oobn, _, from, err := syscall.Recvmsg(w.fd, buf, oob, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				if w.stopAt.Load() != 0 {
					return // stopped and drained
				}
				continue
			}
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
		// Loopback shows each datagram twice, going out and coming in;
		// the incoming copy is the one delivered.
		if ll, ok := from.(*syscall.SockaddrLinklayer); !ok || ll.Pkttype != syscall.PACKET_HOST {
			continue
		}
		pkt := buf[:n]
		src, dst, payload, ok := parseUDP(pkt)
		if !ok || !onLoopback(pkt) {
			continue
		}
		at := time.Now()
		if cms, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if cm.Header.Level == syscall.SOL_SOCKET && cm.Header.Type == syscall.SO_TIMESTAMPNS && len(cm.Data) >= 16 {
					ts := (*syscall.Timespec)(unsafe.Pointer(&cm.Data[0]))
					at = time.Unix(ts.Unix())
				}
			}
		}
		if stop := w.stopAt.Load(); stop != 0 && at.UnixNano() > stop {
			return // what was queued before the stop is read
		}
		w.mu.Lock()
		w.pkts = append(w.pkts, wirePkt{src: src, dst: dst, at: at, data: bytes.Clone(payload)})
		w.mu.Unlock()
	}
}

// halt ends the reader once it has read what arrived before the call
// (the queue empty, or a datagram from after it) and closes the socket.
func (w *wireTap) halt() (drops uint32) {
	w.once.Do(func() {
		w.stopAt.Store(time.Now().UnixNano())
		<-w.done
		_, drops = packetStats(w.fd)
		syscall.Close(w.fd)
	})
	return drops
}

// stop ends the tap after the processes have ended and returns what it
// saw; it fails the test if the kernel dropped anything (the counts would
// be wrong).
func (w *wireTap) stop(t *testing.T) wire {
	t.Helper()
	drops := w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("wire tap: %v", w.err)
	}
	if drops > 0 {
		t.Fatalf("wire tap: the kernel dropped %d packets for the tap; its counts are not trustworthy", drops)
	}
	return w.pkts
}

// packetStats reads (and resets) PACKET_STATISTICS.
func packetStats(fd int) (packets, drops uint32) {
	var st [2]uint32 // struct tpacket_stats
	l := uint32(unsafe.Sizeof(st))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_PACKET, 6 /* PACKET_STATISTICS */, uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, 0
	}
	return st[0], st[1]
}

func attachFilter(fd int, prog []syscall.SockFilter) error {
	fp := syscall.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, e := syscall.Syscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_ATTACH_FILTER, uintptr(unsafe.Pointer(&fp)), unsafe.Sizeof(fp), 0)
	if e != 0 {
		return e
	}
	return nil
}

// tapFilter is a classic BPF program over an IPv4 datagram (SOCK_DGRAM:
// no link header): accept UDP, not a fragment, whose source or
// destination port is in the pool or one of ports.
func tapFilter(ports []int) []syscall.SockFilter {
	const (
		ldbAbs  = syscall.BPF_LD | syscall.BPF_B | syscall.BPF_ABS
		ldhAbs  = syscall.BPF_LD | syscall.BPF_H | syscall.BPF_ABS
		ldhInd  = syscall.BPF_LD | syscall.BPF_H | syscall.BPF_IND
		ldxMsh  = syscall.BPF_LDX | syscall.BPF_B | syscall.BPF_MSH
		jeq     = syscall.BPF_JMP | syscall.BPF_JEQ | syscall.BPF_K
		jge     = syscall.BPF_JMP | syscall.BPF_JGE | syscall.BPF_K
		jset    = syscall.BPF_JMP | syscall.BPF_JSET | syscall.BPF_K
		retK    = syscall.BPF_RET | syscall.BPF_K
		snaplen = 1 << 16
	)
	// Layout: five header instructions; for the source port, then the
	// destination port, a load, a compare per port and two range
	// compares; then drop and accept.
	perField := 1 + len(ports) + 2
	sport := 5
	dport := sport + perField
	drop := dport + perField
	accept := drop + 1
	p := make([]syscall.SockFilter, 0, accept+1)
	add := func(code uint16, k uint32, jt, jf int) {
		i := len(p)
		f := syscall.SockFilter{Code: code, K: k}
		if code&0x07 == syscall.BPF_JMP { // offsets count from the next instruction
			f.Jt, f.Jf = uint8(jt-i-1), uint8(jf-i-1)
		}
		p = append(p, f)
	}
	next := func() int { return len(p) + 1 }
	add(ldbAbs, 9, 0, 0) // protocol
	add(jeq, syscall.IPPROTO_UDP, next(), drop)
	add(ldhAbs, 6, 0, 0) // flags, fragment offset
	add(jset, 0x1fff, drop, next())
	add(ldxMsh, 0, 0, 0) // X = IP header length
	for _, field := range []struct{ off, miss int }{{0, dport}, {2, drop}} {
		add(ldhInd, uint32(field.off), 0, 0)
		for _, port := range ports {
			add(jeq, uint32(port), accept, next())
		}
		add(jge, poolLo, next(), field.miss)
		add(jge, poolHi+1, field.miss, accept)
	}
	add(retK, 0, 0, 0)
	add(retK, snaplen, 0, 0)
	if len(p) != accept+1 {
		panic(fmt.Sprintf("tapFilter: %d instructions, laid out %d", len(p), accept+1))
	}
	return p
}
