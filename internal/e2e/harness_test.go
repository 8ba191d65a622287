//go:build unix

// The harness: build the daemon once, hand out loopback ports, start and
// stop processes, run SIPp, and read what they left behind (SIPp message
// logs, the CDR file, the admin endpoints).
//
// SIPp 3.6.1 gotchas met while writing testdata/sipp (each scenario pair is
// re-checked sipp-to-sipp by TestScenarioPairs, so a new SIPp that behaves
// differently shows up there first):
//
//   - An unexpected CANCEL is answered 200 and the call is closed, with no
//     487 for the INVITE; ringroute's INVITE client transaction would then
//     wait 64*T1. Member scenarios that ring answer CANCEL with 200 and 487
//     themselves (uas_ring_cancel*.xml).
//   - [last_CSeq:] after a CANCEL says "N CANCEL"; the 487 needs "N INVITE",
//     so the number is captured from the INVITE with <ereg>.
//   - [last_To:] expands to the whole "To: ..." line, header name included;
//     to build a request from the other side (uas_bye.xml) the values are
//     captured with <ereg search_in="hdr"> instead.
//   - Every variable must be referenced at least twice (set and used) or the
//     scenario does not load ("Variable $x is referenced 1 times!"); "_" is
//     the one throwaway name, used for whole-match captures and checks.
//   - Without start_txn/response_txn a <recv response="200"> matches a 200
//     for any method sent so far (it only compares the CSeq method against
//     the list of methods sent), so a 200 to the INVITE would satisfy the
//     wait for the CANCEL's 200. Scenarios check CSeq in an <ereg>.
//   - An optional <recv> also swallows repeats (a second 180 is accepted
//     silently), so "exactly one 180" is counted from the message log, not
//     by the scenario.
//   - A failed <ereg check_it> marks the call failed but the scenario goes
//     on, so the peer still sees a complete exchange and SIPp exits 1.
//   - SIPp always binds RTP sockets (-mp, default 6000, and mp+2, trying
//     100 even ports) and a UDP control socket (-cp, default 8888, trying 60
//     ports on 0.0.0.0) even when no media is used; parallel instances
//     collide unless both are given. Without -bind_local SIPp listens on
//     0.0.0.0 and -i only changes what it writes in headers, so a caller
//     "from 127.0.0.2" would really send from 127.0.0.1.
//   - In TCP client mode SIPp listens on -p as well and connects from the
//     same port, so requests to the caller's Contact reach it either way.
//   - A member (server mode) sends its own requests (BYE) to where the
//     INVITE came from (UDP source address or the same TCP connection), not
//     to the INVITE's Contact.
//   - In server mode any message with an unknown Call-ID starts a new
//     "call" that counts towards -m; a stray message can end a member early
//     or make it fail.
//   - A status line is parsed when the scenario loads, so its code cannot
//     come from -key ("Response codes must be in the range of 100-700");
//     the self-test writes a copy of peer_uas_reject.xml per code instead.
//     Keys work in headers (uas_redirect.xml's Contact).
//   - <timewait> at the end of a scenario fails the call over TCP when the
//     peer closes the connection meanwhile (the other SIPp exiting), so no
//     scenario here uses it; over UDP a late retransmission then reaches a
//     SIPp that has finished, which only logs it.
//   - A label may end the scenario (<label id="done"/> as its last element)
//     to jump over alternative branches.
//   - An unexpected message is logged twice in -trace_msg, once as received
//     and once under "Unexpected ... message received:"; the parser keeps
//     only the first, so counts are per wire message.
//   - SIPp needs no terminal with -nostdin; its statistics screen still goes
//     to stdout, which the harness writes to a file.
//   - Media (media_test.go): <exec play_pcap_audio> sends from a raw
//     socket, so SIPp must run as root; the UDP source port is the
//     [media_port] last written on an m=audio line of a message the call
//     sent (0 if none), the destination the c=/m= of the last SDP it
//     received. Playback runs in its own thread and is cut off when the
//     call ends. play_pcap_audio="[k]" takes a whole -key value.
//     -rtp_echo sends whatever reaches -mp back to its source. The RTP
//     counters are missing from the screen SIPp prints at exit (a stale
//     line stands in their place), so the suite counts datagrams on the
//     wire itself.
//   - Exit codes: 0 all calls succeeded, 1 some failed, 99 no call was
//     processed, 255 (-1) fatal or -timeout with -timeout_error, 254 (-2)
//     could not bind.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const sippInstallHint = "sipp is required by the e2e suite: install it with `apt-get install sip-tester` " +
	"(Debian/Ubuntu; `make test` does this) or skip the suite with `go test -short`"

var (
	repoRoot string // module root, where go.mod is
	sippDir  string // testdata/sipp
	binDir   string // where the daemon binary is built; removed by TestMain
	keepLogs = os.Getenv("RINGROUTE_E2E_KEEP") != ""

	buildOnce sync.Once
	daemonBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	sippDir = filepath.Join(repoRoot, "testdata", "sipp")
	binDir, err = os.MkdirTemp("", "ringroute-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// needSuite skips under -short and fails (not skips) when sipp is missing:
// `make test` installs it, so a missing sipp is a broken setup, not a
// reason to pass quietly.
func needSuite(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e suite skipped under -short")
	}
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Fatal(sippInstallHint)
	}
}

// needDaemon builds cmd/ringroute once per test binary and returns its path.
func needDaemon(t testing.TB) string {
	t.Helper()
	needSuite(t)
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out := filepath.Join(binDir, "ringroute")
		cmd := exec.Command(goBin, "build", "-o", out, "./cmd/ringroute")
		cmd.Dir = repoRoot
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/ringroute: %v\n%s", err, b)
			return
		}
		daemonBin = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return daemonBin
}

// ---------------------------------------------------------------------------
// Ports

// Ports come from below Linux's default ephemeral range (32768-60999), so
// the kernel never hands one of them to an outgoing socket (ringroute's own
// TCP connections, other test packages binding :0) while a test holds it.
// Each allocation is a block of portBlockSize consecutive ports, checked
// free on UDP and TCP on 127.0.0.1 and 127.0.0.2 (the non-trunk caller),
// and never handed out twice by this process.
const (
	portLo        = 20000
	portHi        = 32760
	portBlockSize = 8
)

var ports struct {
	sync.Mutex
	next  int
	taken map[int]bool
}

func portBlock(t testing.TB) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.taken == nil {
		ports.taken = map[int]bool{}
		ports.next = portLo + rand.IntN((portHi-portLo)/portBlockSize)*portBlockSize
	}
	for range (portHi - portLo) / portBlockSize {
		base := ports.next
		ports.next += portBlockSize
		if ports.next+portBlockSize > portHi {
			ports.next = portLo
		}
		if ports.taken[base] {
			continue
		}
		ok := true
		for p := base; p < base+portBlockSize && ok; p++ {
			ok = portFree(p)
		}
		if ok {
			ports.taken[base] = true
			return base
		}
	}
	t.Fatal("no free block of loopback ports")
	return 0
}

func portFree(p int) bool {
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		addr := net.JoinHostPort(ip, strconv.Itoa(p))
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			if ip != "127.0.0.1" && errors.Is(err, syscall.EADDRNOTAVAIL) {
				break // no 127.0.0.2 here (not Linux): nothing to collide with
			}
			return false
		}
		l, err := net.Listen("tcp", addr)
		u.Close()
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// bound reports whether something listens on 127.0.0.x:port (UDP or TCP
// LISTEN) by reading /proc/net, so that waiting for SIPp to bind never
// races with it for the port the way a probe bind would.
func bound(network, ip string, port int) (bool, error) {
	file := "/proc/net/udp"
	if network == "tcp" {
		file = "/proc/net/tcp"
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return false, err
	}
	a := net.ParseIP(ip).To4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], port)
	any := fmt.Sprintf("00000000:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || (f[1] != want && f[1] != any) {
			continue
		}
		if network == "udp" || f[3] == "0A" {
			return true, nil
		}
	}
	return false, nil
}

// ---------------------------------------------------------------------------
// Processes

// proc is a child process in its own process group, stopped in t.Cleanup
// (SIGTERM to the group, SIGKILL after a grace period) if it is still
// running, so that no sipp or ringroute outlives its test.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  string // stdout and stderr

	done  chan struct{}
	state *os.ProcessState
	err   error
}

func startProc(t testing.TB, name, dir, out string, argv ...string) *proc {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = procAttr()
	fmt.Fprintf(f, "# %s\n", strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.state = cmd.ProcessState
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(3 * time.Second) })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to end and returns its exit code; ok
// is false when it is still running.
func (p *proc) wait(d time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
	case <-time.After(d):
		return 0, false
	}
	return p.state.ExitCode(), true
}

// code is the exit code of an ended process, -1 if it was killed.
func (p *proc) code() int { return p.state.ExitCode() }

// stop ends the process group: SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid // Setpgid: the group id is the leader's pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// tail returns the last n lines of a file, for failure reports.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// workDir is a per-test directory for configs, logs and CDRs; kept (and
// named in the log) with RINGROUTE_E2E_KEEP.
func workDir(t testing.TB) string {
	t.Helper()
	if !keepLogs {
		return t.TempDir()
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp("", "ringroute-e2e-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keeping %s", dir)
	return dir
}

// ---------------------------------------------------------------------------
// The daemon

type group struct {
	name, ext, strategy                string
	timeout, memberTimeout, retryDelay time.Duration
	members                            []string          // member URIs, or whole YAML entries starting with "{" ({group: team})
	fallback                           map[string]string // case -> YAML flow mapping, e.g. `{reject: 480}`
	extra                              []string          // more "key: value" lines for the group
}

type daemon struct {
	*proc
	dir       string
	config    string
	cdr       string
	log       string
	sipPort   int
	adminPort int
}

func (d *daemon) sipAddr() string { return fmt.Sprintf("127.0.0.1:%d", d.sipPort) }
func (d *daemon) admin() string   { return fmt.Sprintf("127.0.0.1:%d", d.adminPort) }

// configYAML renders a test config in the format of
// spec/ringroute.example.yaml, with timeouts short enough for the suite.
func configYAML(sipPort, adminPort int, cdr string, groups []group) string {
	return configYAMLLevel(sipPort, adminPort, cdr, groups, "debug")
}

// configYAMLLevel is configYAML with another log level (the load probe
// must not measure debug logging).
func configYAMLLevel(sipPort, adminPort int, cdr string, groups []group, level string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: [udp://127.0.0.1:%d, tcp://127.0.0.1:%d]\n", sipPort, sipPort)
	b.WriteString("realm: test\n")
	b.WriteString("drain_timeout: 1s\n") // SIGTERM at the end of a case must not wait 30s
	// Relay mode, the default: every call's media goes through ringroute.
	// Parallel daemons may share the range; the pool skips ports in use.
	b.WriteString("media: {mode: relay, address: 127.0.0.1, ports: 40000-59999}\n")
	fmt.Fprintf(&b, "admin: {listen: 127.0.0.1:%d}\n", adminPort)
	fmt.Fprintf(&b, "log: {level: %s, format: json}\n", level)
	fmt.Fprintf(&b, "cdr: {path: %q}\n", cdr)
	b.WriteString("registrar: {state_file: \"\"}\n")
	b.WriteString("limits: {requests_per_source: 0}\n")
	b.WriteString("trunks: [{name: local, from: [127.0.0.1/32]}]\n")
	b.WriteString("groups:\n")
	for _, g := range groups {
		fmt.Fprintf(&b, "  - name: %s\n", g.name)
		fmt.Fprintf(&b, "    extension: %q\n", g.ext)
		fmt.Fprintf(&b, "    strategy: %s\n", g.strategy)
		fmt.Fprintf(&b, "    timeout: %s\n", g.timeout)
		fmt.Fprintf(&b, "    member_timeout: %s\n", g.memberTimeout)
		fmt.Fprintf(&b, "    retry_delay: %s\n", g.retryDelay)
		for _, l := range g.extra {
			fmt.Fprintf(&b, "    %s\n", l)
		}
		b.WriteString("    members:\n")
		for _, m := range g.members {
			if strings.HasPrefix(m, "{") { // a whole member entry, e.g. {group: team}
				fmt.Fprintf(&b, "      - %s\n", m)
				continue
			}
			fmt.Fprintf(&b, "      - uri: %q\n", m)
		}
		if len(g.fallback) > 0 {
			b.WriteString("    fallback:\n")
			keys := make([]string, 0, len(g.fallback))
			for k := range g.fallback {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, "      %s: %s\n", k, g.fallback[k])
			}
		}
	}
	return b.String()
}

// startDaemon writes the config, starts `ringroute run` and waits until it
// answers OPTIONS over UDP and accepts TCP connections.
func startDaemon(t testing.TB, dir string, groups []group) *daemon {
	t.Helper()
	return startDaemonLevel(t, dir, groups, "debug")
}

func startDaemonLevel(t testing.TB, dir string, groups []group, level string) *daemon {
	t.Helper()
	bin := needDaemon(t)
	base := portBlock(t)
	d := &daemon{
		dir:       dir,
		config:    filepath.Join(dir, "ringroute.yaml"),
		cdr:       filepath.Join(dir, "cdr.jsonl"),
		log:       filepath.Join(dir, "ringroute.log"),
		sipPort:   base,
		adminPort: base + 1,
	}
	if err := os.WriteFile(d.config, []byte(configYAMLLevel(d.sipPort, d.adminPort, d.cdr, groups, level)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.proc = startRingroute(t, dir, bin, d.config, d.log, d.sipAddr(), 200)
	return d
}

// startRingroute runs `ringroute run -c config`, logs its config and the
// last logLines of its log if the test fails, and waits until it answers
// OPTIONS over UDP and accepts TCP connections on sipAddr.
func startRingroute(t testing.TB, dir, bin, config, log, sipAddr string, logLines int) *proc {
	t.Helper()
	p := startProc(t, "ringroute", dir, log, bin, "run", "-c", config)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ringroute config %s:\n%s", config, readFile(config))
			t.Logf("ringroute log %s:\n%s", log, tail(log, logLines))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p.exited() {
			t.Fatalf("ringroute exited with %d before it was ready:\n%s", p.code(), tail(log, 50))
		}
		if optionsOK(sipAddr, 300*time.Millisecond) && tcpOK(sipAddr) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("ringroute not answering OPTIONS on udp and tcp %s after 10s:\n%s", sipAddr, tail(log, 50))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// optionsOK sends one OPTIONS over UDP and reports whether 200 came back.
func optionsOK(addr string, wait time.Duration) bool {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	local := c.LocalAddr().String()
	callID := fmt.Sprintf("ready-%d@e2e", rand.Int64())
	msg := "OPTIONS sip:ping@" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + strconv.FormatInt(rand.Int64(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:ready@" + local + ">;tag=" + strconv.FormatInt(rand.Int64(), 36) + "\r\n" +
		"To: <sip:ping@" + addr + ">\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return false
		}
		resp := string(buf[:n])
		if strings.Contains(resp, callID) && strings.HasPrefix(resp, "SIP/2.0 200") {
			return true
		}
		// a 100 or something unrelated: keep reading until the deadline
	}
}

func tcpOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// alive checks that ringroute still runs and answers OPTIONS.
func (d *daemon) alive(t testing.TB) {
	t.Helper()
	if d.exited() {
		t.Fatalf("ringroute exited with %d", d.code())
	}
	for range 5 {
		if optionsOK(d.sipAddr(), 500*time.Millisecond) {
			return
		}
	}
	t.Fatalf("ringroute no longer answers OPTIONS on %s", d.sipAddr())
}

// terminate sends SIGTERM and requires a clean exit 0 within the drain
// timeout plus slack (SPEC "Command line": SIGTERM drains, then exit 0).
func (d *daemon) terminate(t testing.TB) {
	t.Helper()
	if d.exited() {
		t.Errorf("ringroute had already exited with %d", d.code())
		return
	}
	syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
	code, ok := d.wait(4 * time.Second)
	if !ok {
		t.Errorf("ringroute still running 4s after SIGTERM with no call up (drain_timeout 1s)")
		return
	}
	if code != 0 {
		t.Errorf("ringroute exited %d after SIGTERM, want 0", code)
	}
}

// checkNoLeaks polls GET /debug/live until no call and no leg is left
// ("no leg outlives its call"). A 404 means the endpoint is not there yet:
// the check is logged and skipped rather than failed.
func (d *daemon) checkNoLeaks(t testing.TB) {
	t.Helper()
	url := "http://" + d.admin() + "/debug/live"
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
			if resp.StatusCode == http.StatusNotFound {
				t.Logf("leak check skipped: %s answers 404 (endpoint not implemented yet)", url)
				return
			}
			var live struct {
				Calls *int `json:"calls"`
				Legs  *int `json:"legs"`
			}
			if resp.StatusCode == 200 && json.Unmarshal(body, &live) == nil && live.Calls != nil && live.Legs != nil {
				if *live.Calls == 0 && *live.Legs == 0 {
					return
				}
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Errorf("leak: %s still reports %s 10s after the calls ended (want {\"calls\":0,\"legs\":0})", url, last)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// CDR

type cdrRecord struct {
	CallID      string     `json:"call_id"`
	Group       string     `json:"group"`
	Caller      string     `json:"caller"`
	Dialled     string     `json:"dialled"`
	Start       time.Time  `json:"start"`
	Answer      *time.Time `json:"answer"`
	End         time.Time  `json:"end"`
	Outcome     string     `json:"outcome"`
	Code        int        `json:"code"`
	AnsweredBy  string     `json:"answered_by"`
	AnsweredURI string     `json:"answered_uri"`
	Fallback    string     `json:"fallback"`
	Groups      []string   `json:"groups"`
	Legs        []cdrLeg   `json:"legs"`
	Notes       []string   `json:"notes"`
	RTP         *cdrRTP    `json:"rtp"` // media mode relay
}

// cdrRTP is routing.RTPStats: packets (RTP and RTCP) the relay carried.
type cdrRTP struct {
	FromCaller uint64 `json:"from_caller"`
	FromMember uint64 `json:"from_member"`
	Dropped    uint64 `json:"dropped"`
	NotRTP     uint64 `json:"not_rtp"`
}

type cdrLeg struct {
	Leg    int       `json:"leg"`
	Group  string    `json:"group"`
	Member string    `json:"member"`
	URI    string    `json:"uri"`
	Start  time.Time `json:"start"`
	Code   int       `json:"code"`
	RingMS int64     `json:"ring_ms"`
	Reason string    `json:"reason"`
}

// cdrFields are the keys every line must carry (the rest are omitempty in
// routing.Record).
var cdrFields = []string{"call_id", "group", "caller", "dialled", "start", "end", "outcome", "code", "groups", "legs"}

// cdrs waits until the CDR file holds want lines, waits a little longer to
// catch extra lines, and returns them all; it fails the test when the count
// is not exactly want ("every call writes one CDR line").
func (d *daemon) cdrs(t testing.TB, want int) []cdrRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var lines []string
	for {
		lines = nonEmptyLines(d.cdr)
		if len(lines) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	lines = nonEmptyLines(d.cdr)
	var recs []cdrRecord
	for i, l := range lines {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &keys); err != nil {
			t.Errorf("CDR line %d is not JSON: %v\n%s", i+1, err, l)
			continue
		}
		for _, k := range cdrFields {
			if _, ok := keys[k]; !ok {
				t.Errorf("CDR line %d has no %q: %s", i+1, k, l)
			}
		}
		var r cdrRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Errorf("CDR line %d does not decode: %v\n%s", i+1, err, l)
			continue
		}
		recs = append(recs, r)
	}
	if len(lines) != want {
		t.Errorf("CDR %s has %d lines, want %d:\n%s", d.cdr, len(lines), want, strings.Join(lines, "\n"))
	}
	return recs
}

func nonEmptyLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// SIPp

type sippSpec struct {
	name      string // role, for logs: "caller", "m1", ...
	scenario  string // file in testdata/sipp, or an absolute path
	transport string // "udp" or "tcp"
	ip        string // local address; default 127.0.0.1
	remote    string // caller: host:port to call; empty for a member (server mode)
	service   string // -s, the request-URI user
	calls     int    // -m; default 1
	pause     time.Duration
	timeout   time.Duration // -timeout; default 15s
	keys      map[string]string
	extra     []string
}

type sipp struct {
	spec   sippSpec
	port   int
	dir    string
	msgLog string
	errLog string
	*proc
}

// newSipp allocates ports and file names; start runs it.
func newSipp(t testing.TB, dir string, spec sippSpec) *sipp {
	t.Helper()
	if spec.ip == "" {
		spec.ip = "127.0.0.1"
	}
	if spec.calls == 0 {
		spec.calls = 1
	}
	if spec.timeout == 0 {
		spec.timeout = 15 * time.Second
	}
	if !filepath.IsAbs(spec.scenario) {
		spec.scenario = filepath.Join(sippDir, spec.scenario)
	}
	s := &sipp{spec: spec, port: portBlock(t), dir: dir}
	s.msgLog = filepath.Join(dir, spec.name+".messages.log")
	s.errLog = filepath.Join(dir, spec.name+".errors.log")
	return s
}

// mediaPort is the instance's -mp: its [media_port], where -rtp_echo
// listens and the source port of the pcaps it plays.
func (s *sipp) mediaPort() int { return s.port + 4 }

// uri is the member URI ringroute should ring to reach this instance.
func (s *sipp) uri(user string) string {
	u := fmt.Sprintf("sip:%s@%s:%d", user, s.spec.ip, s.port)
	if s.spec.transport == "tcp" {
		u += ";transport=tcp"
	}
	return u
}

func (s *sipp) args() []string {
	sp := s.spec
	t := "u1"
	if sp.transport == "tcp" {
		t = "t1"
	}
	var a []string
	if sp.remote != "" {
		a = append(a, sp.remote)
	}
	a = append(a,
		"-sf", sp.scenario,
		"-t", t,
		"-i", sp.ip, "-bind_local",
		"-p", strconv.Itoa(s.port),
		"-cp", strconv.Itoa(s.port+1), "-ci", "127.0.0.1",
		"-mp", strconv.Itoa(s.mediaPort()), // RTP on mp and mp+2: both in the block
		"-m", strconv.Itoa(sp.calls),
		"-d", strconv.FormatInt(sp.pause.Milliseconds(), 10),
		"-nostdin",
		"-trace_msg", "-message_file", s.msgLog,
		"-trace_err", "-error_file", s.errLog,
		"-timeout", fmt.Sprintf("%ds", int(sp.timeout.Seconds())), "-timeout_error",
		// On a failed call, just drop it: no BYE/CANCEL of SIPp's own
		// making to confuse the daemon and the logs.
		"-default_behaviors", "all,-bye",
	)
	if sp.service != "" {
		a = append(a, "-s", sp.service)
	}
	keys := make([]string, 0, len(sp.keys))
	for k := range sp.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		a = append(a, "-key", k, sp.keys[k])
	}
	return append(a, sp.extra...)
}

// start runs SIPp; a member (no remote) is waited for until its socket is
// bound, so that nothing reaches its port before it listens.
func (s *sipp) start(t testing.TB) {
	t.Helper()
	sippBin, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatal(sippInstallHint)
	}
	s.proc = startProc(t, s.spec.name, s.dir, filepath.Join(s.dir, s.spec.name+".stdout"), append([]string{sippBin}, s.args()...)...)
	if s.spec.remote != "" {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := bound(s.spec.transport, s.spec.ip, s.port)
		if err != nil { // no /proc: give it a moment instead
			time.Sleep(300 * time.Millisecond)
			return
		}
		if ok {
			return
		}
		if s.exited() {
			t.Fatalf("sipp %s exited with %d at start:\n%s", s.spec.name, s.code(), tail(s.proc.out, 20))
		}
		if time.Now().After(deadline) {
			t.Fatalf("sipp %s did not bind %s:%d in 5s", s.spec.name, s.spec.ip, s.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// report describes a SIPp run for a failure message: exit code, error log,
// and one line per message.
func (s *sipp) report() string {
	var b strings.Builder
	state := "running"
	if s.proc == nil {
		state = "never started"
	} else if s.exited() {
		state = fmt.Sprintf("exit %d", s.code())
	}
	fmt.Fprintf(&b, "sipp %s (%s, %s, port %d): %s\n", s.spec.name, filepath.Base(s.spec.scenario), s.spec.transport, s.port, state)
	if e := strings.TrimSpace(readFileQuiet(s.errLog)); e != "" {
		fmt.Fprintf(&b, "  errors:\n%s\n", indent(limit(e, 3000), "    "))
	}
	msgs, _ := parseMsgLog(s.msgLog)
	for _, m := range msgs {
		fmt.Fprintf(&b, "  %s\n", m.summary())
	}
	if s.proc != nil && s.exited() && s.code() != 0 {
		fmt.Fprintf(&b, "  stdout tail:\n%s\n", indent(tail(s.proc.out, 12), "    "))
	}
	fmt.Fprintf(&b, "  full log: %s", s.msgLog)
	return b.String()
}

func readFileQuiet(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(s, "\n", "\n"+pre)
}

func limit(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n... (truncated)"
}

// messages returns the SIP messages the instance sent and received.
func (s *sipp) messages(t testing.TB) []sipMsg {
	t.Helper()
	msgs, err := parseMsgLog(s.msgLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("sipp %s: %v", s.spec.name, err)
	}
	return msgs
}

// ---------------------------------------------------------------------------
// SIPp message logs (-trace_msg)

// sipMsg is one message from a SIPp message log. The log frames each one as
//
//	----------------------------------------------- 2026-12-01 18:27:59.336519
//	UDP message sent (517 bytes):
//
//	INVITE sip:600@127.0.0.1:25060 SIP/2.0
//	...
type sipMsg struct {
	sent  bool
	at    time.Time
	first string
	hdrs  [][2]string // canonical lower-case name, value
	body  string
	raw   string
}

var (
	msgFrame = regexp.MustCompile(`^----------------------------------------------- (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)$`)
	msgDesc  = regexp.MustCompile(`^(UDP|TCP) message (sent|received) [\[(]\d+\]? ?bytes\)? ?:$`)
)

func parseMsgLog(path string) ([]sipMsg, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		msgs  []sipMsg
		cur   *sipMsg
		lines []string
		state int // 0: outside, 1: expecting description, 2: in message
	)
	flush := func() {
		if cur != nil {
			raw := strings.Trim(strings.Join(lines, "\n"), "\n")
			if raw != "" {
				cur.parse(raw)
				msgs = append(msgs, *cur)
			}
		}
		cur, lines = nil, nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var at time.Time
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, "-----------------------------------------------") {
			flush()
			state = 1
			at = time.Time{}
			if m := msgFrame.FindStringSubmatch(line); m != nil {
				at, _ = time.ParseInLocation("2006-01-02 15:04:05.000000", m[1], time.Local)
			}
			continue
		}
		switch state {
		case 1:
			if m := msgDesc.FindStringSubmatch(line); m != nil {
				cur = &sipMsg{sent: m[2] == "sent", at: at}
				state = 2
			} else {
				state = 0 // "Unexpected ... received:", "Ignoring ...": not a wire event
			}
		case 2:
			lines = append(lines, line)
		}
	}
	flush()
	return msgs, sc.Err()
}

var compactHeaders = map[string]string{
	"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
	"l": "content-length", "c": "content-type", "k": "supported", "s": "subject",
}

func (m *sipMsg) parse(raw string) {
	m.raw = raw
	head, body, _ := strings.Cut(raw, "\n\n")
	m.body = body
	hl := strings.Split(head, "\n")
	m.first = strings.TrimSpace(hl[0])
	for _, l := range hl[1:] {
		if (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && len(m.hdrs) > 0 {
			m.hdrs[len(m.hdrs)-1][1] += " " + strings.TrimSpace(l) // folded line
			continue
		}
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if long, ok := compactHeaders[name]; ok {
			name = long
		}
		m.hdrs = append(m.hdrs, [2]string{name, strings.TrimSpace(val)})
	}
}

// header returns the first value of a header (case-insensitive).
func (m sipMsg) header(name string) string {
	if v := m.headers(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// headers returns every value of a header, comma-separated values split for
// Via.
func (m sipMsg) headers(name string) []string {
	name = strings.ToLower(name)
	var out []string
	for _, h := range m.hdrs {
		if h[0] != name {
			continue
		}
		if name == "via" {
			for _, v := range strings.Split(h[1], ",") {
				out = append(out, strings.TrimSpace(v))
			}
			continue
		}
		out = append(out, h[1])
	}
	return out
}

func (m sipMsg) isResponse() bool { return strings.HasPrefix(m.first, "SIP/2.0 ") }

// method is the request method, or "" for a response.
func (m sipMsg) method() string {
	if m.isResponse() {
		return ""
	}
	meth, _, _ := strings.Cut(m.first, " ")
	return meth
}

// code is the status code of a response, 0 for a request.
func (m sipMsg) code() int {
	if !m.isResponse() {
		return 0
	}
	f := strings.Fields(m.first)
	if len(f) < 2 {
		return 0
	}
	c, _ := strconv.Atoi(f[1])
	return c
}

// requestURI is the request-URI of a request.
func (m sipMsg) requestURI() string {
	f := strings.Fields(m.first)
	if m.isResponse() || len(f) < 2 {
		return ""
	}
	return f[1]
}

func (m sipMsg) callID() string { return m.header("call-id") }

// cseq returns the CSeq number and method.
func (m sipMsg) cseq() (int, string) {
	f := strings.Fields(m.header("cseq"))
	if len(f) != 2 {
		return -1, ""
	}
	n, _ := strconv.Atoi(f[0])
	return n, strings.ToUpper(f[1])
}

func (m sipMsg) cseqMethod() string { _, meth := m.cseq(); return meth }

// param returns a ;name=value parameter of a header value (tag, branch).
func param(v, name string) string {
	for _, p := range strings.Split(v, ";")[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, name) {
			return strings.Trim(val, `"`)
		}
	}
	return ""
}

func (m sipMsg) branch() string  { return param(m.header("via"), "branch") }
func (m sipMsg) fromTag() string { return param(m.header("from"), "tag") }
func (m sipMsg) toTag() string   { return param(m.header("to"), "tag") }

func (m sipMsg) summary() string {
	dir := "<-"
	if m.sent {
		dir = "->"
	}
	extra := ""
	if r := m.header("reason"); r != "" {
		extra = " Reason: " + r
	}
	return fmt.Sprintf("%s %s %-40s CSeq: %-12s Call-ID: %s%s", m.at.Format("15:04:05.000"), dir, limit1(m.first, 40), m.header("cseq"), m.callID(), extra)
}

func limit1(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// filter helpers over message lists

func received(msgs []sipMsg) []sipMsg {
	return selectMsgs(msgs, func(m sipMsg) bool { return !m.sent })
}
func sentMsgs(msgs []sipMsg) []sipMsg { return selectMsgs(msgs, func(m sipMsg) bool { return m.sent }) }

func selectMsgs(msgs []sipMsg, keep func(sipMsg) bool) []sipMsg {
	var out []sipMsg
	for _, m := range msgs {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

// requests returns the requests with that method.
func requests(msgs []sipMsg, method string) []sipMsg {
	return selectMsgs(msgs, func(m sipMsg) bool { return m.method() == method })
}

// responses returns the responses with that code to requests of method.
func responses(msgs []sipMsg, code int, method string) []sipMsg {
	return selectMsgs(msgs, func(m sipMsg) bool { return m.code() == code && m.cseqMethod() == method })
}

// initialInvites are INVITEs without a To-tag (dialog-creating).
func initialInvites(msgs []sipMsg) []sipMsg {
	return selectMsgs(requests(msgs, "INVITE"), func(m sipMsg) bool { return m.toTag() == "" })
}

// distinctTo counts distinct To-tags, to tell a retransmitted 2xx from a
// second answer.
func distinctTo(msgs []sipMsg) []string {
	var tags []string
	for _, m := range msgs {
		if !slices.Contains(tags, m.toTag()) {
			tags = append(tags, m.toTag())
		}
	}
	return tags
}
