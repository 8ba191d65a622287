//go:build unix

package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRobustness throws junk at the SIP port (SPEC "Bad input"): 100
// pieces of random bytes and 100 of half-SIP garbage (as datagrams, or over
// TCP connections), then 20 INVITEs cut at random points. ringroute must stay up, ring nobody, leave
// no call behind, and still connect a good call afterwards. The junk comes
// from a seeded generator; the seed is logged and RINGROUTE_E2E_SEED
// replays it.
func TestRobustness(t *testing.T) {
	needDaemon(t)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tr)
			robustness(e)
			e.done()
		})
	}
}

func robustness(e *env) {
	t := e.t
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RINGROUTE_E2E_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RINGROUTE_E2E_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("junk seed %d (RINGROUTE_E2E_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	m1 := e.member("m1", "uas_answer.xml", 1, 100*ms, nil)
	e.daemon(sales("all", 4*time.Second, 3*time.Second, m1))
	addr := e.d.sipAddr()

	var random, half [][]byte
	for i := range 100 {
		random = append(random, randomBytes(rng))
		half = append(half, halfSIP(rng, addr, i))
	}
	var cut [][]byte
	for i := range 20 {
		inv := goodInvite(addr, e.tr, fmt.Sprintf("cut-%d-%d@e2e", seed, i))
		cut = append(cut, inv[:1+rng.IntN(len(inv)-1)])
	}
	switch e.tr {
	case "udp":
		var all [][]byte
		for i := range random {
			all = append(all, random[i], half[i])
		}
		sendUDP(t, addr, append(all, cut...))
	case "tcp":
		sendTCP(t, addr, random, append(half, cut...))
	}

	// Give a wrongly accepted INVITE time to ring m1, then look.
	time.Sleep(time.Second)
	e.d.alive(t)
	if !tcpOK(addr) {
		t.Error("ringroute no longer accepts TCP connections after the junk")
	}
	if n := len(received(m1.messages(t))); n != 0 {
		t.Errorf("member got %d messages from the junk, want none:\n%s", n, m1.report())
	}
	e.d.checkNoLeaks(t)

	c := e.call("caller", "uac_answer.xml", "600", 200*ms)
	e.finish()
	answeredWith(t, c.messages(t), m1)
	mm := received(m1.messages(t))
	if inv := initialInvites(mm); len(inv) != 1 {
		t.Errorf("member got %d INVITEs, want only the good call's: %v", len(inv), firstLines(inv))
	}
	ids := map[string]bool{}
	for _, m := range mm {
		ids[m.callID()] = true
	}
	if len(ids) != 1 {
		t.Errorf("member saw %d Call-IDs, want only the good call's leg", len(ids))
	}
	// One CDR line, the good call's; a line for junk names its variant.
	good := callerCallID(t, c)
	var routed []string
	for _, l := range nonEmptyLines(e.d.cdr) {
		if !strings.Contains(l, good) {
			routed = append(routed, l)
		}
	}
	if len(routed) > 0 {
		t.Errorf("junk was routed as %d calls (the Call-ID names the variant):\n%s", len(routed), strings.Join(routed, "\n"))
		return
	}
	r := e.oneCDR(c, "600")
	expectCDR(t, r, "answered", 200)
}

// randomBytes is up to 1400 bytes of anything.
func randomBytes(rng *rand.Rand) []byte {
	b := make([]byte, 1+rng.IntN(1400))
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// halfSIPVariants are the ways halfSIP breaks a request. Each is
// structural: no parser that follows RFC 3261 may take it for a call.
var halfSIPVariants = []string{
	"no-via", "no-call-id", "no-cseq", "no-from", "no-to",
	"cseq-not-a-number", "cseq-overflow",
	"content-length-huge", "content-length-negative",
	"sip-version-7", // RFC 3261 section 21.5.6: 505 Version Not Supported, never a call
	"no-request-uri", "no-sip-version", "via-without-host",
	"stray-response", "http", "binary-method", "only-long-headers",
}

// halfSIP is something that starts like SIP and breaks somewhere: missing
// or malformed mandatory headers, absurd numbers, another SIP version,
// stray responses, bytes that are not a method. The variant's name goes in
// the Call-ID (junk-NAME-...), so a CDR line for junk that was routed as a
// call says which variant got through.
func halfSIP(rng *rand.Rand, addr string, i int) []byte {
	name := halfSIPVariants[rng.IntN(len(halfSIPVariants))]
	via := "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK" + strconv.FormatInt(rng.Int64(), 36)
	hdrs := []string{
		via,
		"Max-Forwards: 70",
		"From: <sip:junk@127.0.0.1:9>;tag=" + strconv.FormatInt(rng.Int64(), 36),
		"To: <sip:600@" + addr + ">",
		fmt.Sprintf("Call-ID: junk-%s-%d-%d@e2e", name, i, rng.Int64()),
		"CSeq: 1 INVITE",
		"Contact: <sip:junk@127.0.0.1:9>",
		"Content-Length: 0",
	}
	rl := "INVITE sip:600@" + addr + " SIP/2.0"
	msg := func(first string, h []string) []byte {
		return []byte(first + "\r\n" + strings.Join(h, "\r\n") + "\r\n\r\n")
	}
	// with returns hdrs with the header named by prefix replaced (with
	// "": dropped).
	with := func(prefix, repl string) []string {
		var out []string
		for _, h := range hdrs {
			switch {
			case !strings.HasPrefix(h, prefix):
				out = append(out, h)
			case repl != "":
				out = append(out, repl)
			}
		}
		return out
	}
	var b []byte
	switch name {
	case "no-via":
		b = msg(rl, with("Via:", ""))
	case "no-call-id":
		b = msg(rl, with("Call-ID:", ""))
	case "no-cseq":
		b = msg(rl, with("CSeq:", ""))
	case "no-from":
		b = msg(rl, with("From:", ""))
	case "no-to":
		b = msg(rl, with("To:", ""))
	case "cseq-not-a-number":
		b = msg(rl, with("CSeq:", "CSeq: banana INVITE"))
	case "cseq-overflow":
		b = msg(rl, with("CSeq:", "CSeq: 99999999999999999999999 INVITE"))
	case "content-length-huge":
		b = msg(rl, with("Content-Length:", "Content-Length: 99999999"))
	case "content-length-negative":
		b = msg(rl, with("Content-Length:", "Content-Length: -7"))
	case "sip-version-7":
		b = msg("INVITE sip:600@"+addr+" SIP/7.0", hdrs)
	case "no-request-uri":
		b = msg("INVITE  SIP/2.0", hdrs)
	case "no-sip-version":
		b = msg("INVITE sip:600@"+addr, hdrs)
	case "via-without-host":
		b = msg(rl, with("Via:", "Via: SIP/2.0/UDP ;;;branch="))
	case "stray-response":
		b = msg("SIP/2.0 200 OK", hdrs)
	case "http":
		b = []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
	case "binary-method":
		b = msg("INV\x00\xffITE sip:600@"+addr+" SIP/2.0", hdrs)
	case "only-long-headers":
		b = msg(rl, []string{strings.Repeat("X-Long: "+strings.Repeat("a", 1000)+"\r\n", 50) + via})
	default:
		panic("halfSIP: no variant " + name)
	}
	// Sometimes flip a few bytes too, but never inside the line that makes
	// the message broken: a flip there can repair it (a flipped
	// "Content-Length" name is an unknown header, and a UDP INVITE without
	// one is valid), and a valid INVITE from a trunk is a real call. A flip
	// may still land in the Call-ID name.
	if rng.IntN(3) == 0 {
		lo, hi := brokenLine(b, name)
		for range 1 + rng.IntN(4) {
			if i := rng.IntN(len(b)); i < lo || i >= hi {
				b[i] = byte(rng.UintN(256))
			}
		}
	}
	return b
}

// brokenLine is the byte range of the line whose breakage a variant is
// about: the request line, or the header the variant replaced. Variants
// that drop a header, or are not SIP at all, have none: no flip can add a
// header back.
func brokenLine(b []byte, name string) (lo, hi int) {
	var prefix string
	switch name {
	case "sip-version-7", "no-request-uri", "no-sip-version", "binary-method", "stray-response", "http":
		prefix = ""
	case "cseq-not-a-number", "cseq-overflow":
		prefix = "CSeq:"
	case "content-length-huge", "content-length-negative":
		prefix = "Content-Length:"
	case "via-without-host", "only-long-headers":
		prefix = "Via:"
	default:
		return 0, 0
	}
	s := string(b)
	lo = 0
	if prefix != "" {
		lo = strings.Index(s, prefix)
		if lo < 0 {
			return 0, 0
		}
	}
	end := strings.Index(s[lo:], "\r\n")
	if end < 0 {
		return lo, len(b)
	}
	return lo, lo + end + 2
}

// goodInvite is a complete INVITE to extension 600 with an SDP body; cut
// anywhere, it is incomplete (the body is shorter than Content-Length, or
// the header block never ends).
func goodInvite(addr, tr, callID string) []byte {
	sdp := "v=0\r\no=junk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	T := strings.ToUpper(tr)
	return []byte("INVITE sip:600@" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + T + " 127.0.0.1:9;branch=z9hG4bK" + strings.ReplaceAll(callID, "@", "-") + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: \"cut\" <sip:cut@127.0.0.1:9>;tag=cut\r\n" +
		"To: <sip:600@" + addr + ">\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:cut@127.0.0.1:9;transport=" + tr + ">\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp)
}

// sendUDP sends each payload as one datagram from one socket, reading and
// dropping whatever comes back (400s) so nothing blocks.
func sendUDP(t *testing.T, addr string, payloads [][]byte) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, err := c.Read(buf); err != nil && !isTimeout(err) {
				return
			}
		}
	}()
	for _, p := range payloads {
		if _, err := c.Write(p); err != nil {
			t.Logf("udp write: %v (ignored)", err)
		}
		time.Sleep(time.Millisecond) // junk, not a flood: the rate limit is off but the socket buffer is finite
	}
}

// sendTCP writes the random bytes in chunks of ten per connection, and
// each half-SIP message and cut INVITE on a connection of its own (a
// daemon may rightly drop a connection after the first bad message, which
// would hide the rest), closing every connection afterwards.
func sendTCP(t *testing.T, addr string, random, each [][]byte) {
	t.Helper()
	write := func(chunks [][]byte) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Errorf("tcp dial %s: %v", addr, err)
			return
		}
		defer c.Close()
		go func() { // drain replies
			buf := make([]byte, 65535)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		for _, ch := range chunks {
			if _, err := c.Write(ch); err != nil {
				return // closed on us: fine
			}
		}
		time.Sleep(20 * time.Millisecond) // let the daemon read before the close
	}
	for i := 0; i < len(random); i += 10 {
		write(random[i:min(i+10, len(random))])
	}
	for _, m := range each {
		write([][]byte{m})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
