//go:build unix

// Helpers for the reliability cases of issue 9 (loss_test.go, faults_test.go,
// soak_test.go): a config writer and daemon starter of their own (so that
// changes to harness_test.go's configYAML for other cases do not move these
// tests), admin API readers (/debug/live, /metrics, reload), a settle check
// that polls until every call, leg, ringing leg and relay port is gone, a
// scripted UDP SIP peer written in Go for members SIPp cannot play (silent,
// or a dead port that records what reaches it), and SIPp's -trace_stat
// counters (successes and failures by reason).
package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Config

// rlGroup is one group of a reliability config.
type rlGroup struct {
	name, ext, strategy                string
	timeout, memberTimeout, retryDelay time.Duration
	members                            []string // member URIs
	extra                              []string // more "key: value" lines
}

// rlConf is a whole reliability config. Zero values give: log level info,
// relay media, rtp_timeout left at its default (30 s).
type rlConf struct {
	level      string        // log level; "" is info
	mode       string        // media mode; "" is relay
	rtpTimeout time.Duration // media.rtp_timeout when > 0
	groups     []rlGroup
}

func (c rlConf) render(sipPort, adminPort int, cdr string) string {
	level, mode := c.level, c.mode
	if level == "" {
		level = "info"
	}
	if mode == "" {
		mode = "relay"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: [udp://127.0.0.1:%d, tcp://127.0.0.1:%d]\n", sipPort, sipPort)
	b.WriteString("realm: test\n")
	b.WriteString("drain_timeout: 1s\n")
	media := fmt.Sprintf("mode: %s, address: 127.0.0.1, ports: 40000-59999", mode)
	if c.rtpTimeout > 0 {
		media += ", rtp_timeout: " + c.rtpTimeout.String()
	}
	fmt.Fprintf(&b, "media: {%s}\n", media)
	fmt.Fprintf(&b, "admin: {listen: 127.0.0.1:%d}\n", adminPort)
	fmt.Fprintf(&b, "log: {level: %s, format: json}\n", level)
	fmt.Fprintf(&b, "cdr: {path: %q}\n", cdr)
	b.WriteString("registrar: {state_file: \"\"}\n")
	b.WriteString("limits: {requests_per_source: 0}\n")
	b.WriteString("trunks: [{name: local, from: [127.0.0.1/32]}]\n")
	b.WriteString("groups:\n")
	for _, g := range c.groups {
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
			fmt.Fprintf(&b, "      - uri: %q\n", m)
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// The daemon

type rlDaemon struct {
	*proc
	dir, config, cdr, log string
	sipPort, adminPort    int
	conf                  rlConf
	client                *http.Client
}

func (d *rlDaemon) sipAddr() string { return fmt.Sprintf("127.0.0.1:%d", d.sipPort) }
func (d *rlDaemon) adminURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", d.adminPort, path)
}

// rlStartDaemon writes the config and starts `ringroute run`, waiting until
// it answers OPTIONS over UDP and accepts TCP connections.
func rlStartDaemon(t testing.TB, dir string, c rlConf) *rlDaemon {
	t.Helper()
	// TestLoss runs itself again inside a network namespace and hands the
	// daemon it built down to that run.
	bin := os.Getenv("RINGROUTE_E2E_LOSS_BIN")
	if bin == "" {
		bin = needDaemon(t)
	}
	base := portBlock(t)
	d := &rlDaemon{
		dir:       dir,
		config:    filepath.Join(dir, "ringroute.yaml"),
		cdr:       filepath.Join(dir, "cdr.jsonl"),
		log:       filepath.Join(dir, "ringroute.log"),
		sipPort:   base,
		adminPort: base + 1,
		conf:      c,
		client:    &http.Client{Timeout: 3 * time.Second},
	}
	d.writeConfig(t, "")
	d.proc = startRingroute(t, dir, bin, d.config, d.log, d.sipAddr(), 120)
	return d
}

// writeConfig (re)writes the config file; comment goes on a first line so
// that a reload reads a file that really changed.
func (d *rlDaemon) writeConfig(t testing.TB, comment string) {
	t.Helper()
	body := d.conf.render(d.sipPort, d.adminPort, d.cdr)
	if comment != "" {
		body = "# " + comment + "\n" + body
	}
	tmp := d.config + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, d.config); err != nil {
		t.Fatal(err)
	}
}

func (d *rlDaemon) get(path string) ([]byte, error) {
	resp, err := d.client.Get(d.adminURL(path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// live reads GET /debug/live.
func (d *rlDaemon) live() (calls, legs int, err error) {
	b, err := d.get("/debug/live")
	if err != nil {
		return 0, 0, err
	}
	var v struct {
		Calls *int `json:"calls"`
		Legs  *int `json:"legs"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Calls == nil || v.Legs == nil {
		return 0, 0, fmt.Errorf("/debug/live: %q", b)
	}
	return *v.Calls, *v.Legs, nil
}

// metrics reads GET /metrics into name (with its {labels}, as written) ->
// value.
func (d *rlDaemon) metrics() (map[string]float64, error) {
	b, err := d.get("/metrics")
	if err != nil {
		return nil, err
	}
	return rlParseMetrics(string(b)), nil
}

func rlParseMetrics(text string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// rlSum adds every series of a metric name (all label sets).
func rlSum(m map[string]float64, name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// rlState is what the settle check reads.
type rlState struct {
	calls, legs        int
	ringing, portsUsed float64
	goroutines         float64
	rss                float64
}

func (s rlState) zero() bool {
	return s.calls == 0 && s.legs == 0 && s.ringing == 0 && s.portsUsed == 0
}

func (s rlState) String() string {
	return fmt.Sprintf("/debug/live calls=%d legs=%d; /metrics ringroute_ringing_legs=%g ringroute_media_ports_in_use=%g go_goroutines=%g",
		s.calls, s.legs, s.ringing, s.portsUsed, s.goroutines)
}

func (d *rlDaemon) state() (rlState, error) {
	var s rlState
	var err error
	if s.calls, s.legs, err = d.live(); err != nil {
		return s, err
	}
	m, err := d.metrics()
	if err != nil {
		return s, err
	}
	for _, k := range []string{"ringroute_ringing_legs", "ringroute_media_ports_in_use", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := m[k]; !ok {
			return s, fmt.Errorf("/metrics has no %s", k)
		}
	}
	s.ringing = m["ringroute_ringing_legs"]
	s.portsUsed = m["ringroute_media_ports_in_use"]
	s.goroutines = m["go_goroutines"]
	s.rss = m["process_resident_memory_bytes"]
	return s, nil
}

// settle polls the admin API every 50 ms until no call, leg, ringing leg or
// relay port is left, and fails the test unless that happened within bound
// of from (the call's end, or the start of the timer that rules it). It
// returns how long after from the state was clean.
func (d *rlDaemon) settle(t testing.TB, from time.Time, bound time.Duration, why string) time.Duration {
	t.Helper()
	deadline := from.Add(bound)
	if hard := time.Now().Add(2 * time.Second); deadline.Before(hard) {
		deadline = hard // poll a little even when from is long past, to report what is left
	}
	var last rlState
	var lastErr error
	for {
		s, err := d.state()
		now := time.Now()
		if err == nil && s.zero() {
			took := now.Sub(from)
			if took > bound {
				t.Errorf("leak (%s): state clean only %v after the call's end, want within %v", why, took.Round(time.Millisecond), bound)
			}
			return took
		}
		last, lastErr = s, err
		if now.After(deadline) {
			if lastErr != nil {
				t.Errorf("leak (%s): admin API: %v", why, lastErr)
			} else {
				t.Errorf("leak (%s): %v after the call's end still %s (want calls, legs, ringing legs and ports in use all 0 within %v)",
					why, now.Sub(from).Round(time.Millisecond), last, bound)
			}
			return now.Sub(from)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// goroutinesBack polls go_goroutines until it is at most base+slack, for up
// to wait; it fails the test otherwise.
func (d *rlDaemon) goroutinesBack(t testing.TB, base float64, slack float64, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var g float64
	for {
		s, err := d.state()
		if err == nil {
			g = s.goroutines
			if g <= base+slack {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines: go_goroutines %g, want at most %g (idle %g + %g) %v after the state was clean", g, base+slack, base, slack, wait)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// idleGoroutines is go_goroutines with nothing going on, the baseline.
func (d *rlDaemon) idleGoroutines(t testing.TB) float64 {
	t.Helper()
	s, err := d.state()
	if err != nil {
		t.Fatal(err)
	}
	return s.goroutines
}

// reload reloads the config: via "hup" (SIGHUP) or "api" (POST
// /api/v1/reload, which must answer ok).
func (d *rlDaemon) reload(via string) error {
	if via == "hup" {
		return syscall.Kill(d.cmd.Process.Pid, syscall.SIGHUP)
	}
	resp, err := d.client.Post(d.adminURL("/api/v1/reload"), "application/json", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v struct {
		OK bool `json:"ok"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &v) != nil || !v.OK {
		return fmt.Errorf("POST /api/v1/reload: %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// rssBytes is VmRSS from /proc/PID/status.
func (d *rlDaemon) rssBytes() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n * 1024, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

// rlRecord is a CDR line with the fields harness_test.go's cdrRecord
// leaves out.
type rlRecord struct {
	cdrRecord
	EndedBy string `json:"ended_by"`
}

// records reads every CDR line written so far.
func (d *rlDaemon) records(t testing.TB) []rlRecord {
	t.Helper()
	var out []rlRecord
	for i, l := range nonEmptyLines(d.cdr) {
		var r rlRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Errorf("CDR line %d does not decode: %v\n%s", i+1, err, l)
			continue
		}
		out = append(out, r)
	}
	return out
}

// waitRecords waits up to within for n CDR lines, then a little longer for
// extra ones, and returns them all.
func (d *rlDaemon) waitRecords(t testing.TB, n int, within time.Duration) []rlRecord {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(nonEmptyLines(d.cdr)) < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	return d.records(t)
}

// terminate sends SIGTERM and wants exit 0 soon: drain_timeout (1 s),
// then up to 5 s for the BYEs and CANCELs of calls still up
// (docs/behaviour.md "Signals and reload").
func (d *rlDaemon) terminate(t testing.TB) {
	t.Helper()
	if d.exited() {
		t.Errorf("ringroute had already exited with %d", d.code())
		return
	}
	syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
	code, ok := d.wait(8 * time.Second)
	switch {
	case !ok:
		t.Errorf("ringroute still running 8s after SIGTERM")
	case code != 0:
		t.Errorf("ringroute exited %d after SIGTERM, want 0", code)
	}
}

// ---------------------------------------------------------------------------
// A scripted UDP SIP peer

// rlPeerMsg is one datagram a rlPeer received.
type rlPeerMsg struct {
	from *net.UDPAddr
	sipMsg
}

// rlPeer is a member played by the test itself on a UDP port: it records
// every datagram and calls handle, if set, for each (on its read
// goroutine). With handle nil it is a member that never answers anything.
type rlPeer struct {
	name   string
	conn   *net.UDPConn
	port   int
	handle func(p *rlPeer, m rlPeerMsg)

	mu   sync.Mutex
	msgs []rlPeerMsg
	done chan struct{}
}

// rlNewPeer listens on 127.0.0.1:port (0: a block of the harness's).
func rlNewPeer(t testing.TB, name string, port int, handle func(*rlPeer, rlPeerMsg)) *rlPeer {
	t.Helper()
	if port == 0 {
		port = portBlock(t)
	}
	var conn *net.UDPConn
	var err error
	for range 50 { // a SIPp just killed on this port may still hold it for a moment
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("peer %s: %v", name, err)
	}
	p := &rlPeer{name: name, conn: conn, port: port, handle: handle, done: make(chan struct{})}
	go p.read()
	t.Cleanup(func() { conn.Close(); <-p.done })
	return p
}

func (p *rlPeer) uri() string { return fmt.Sprintf("sip:%s@127.0.0.1:%d", p.name, p.port) }

func (p *rlPeer) read() {
	defer close(p.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		raw := strings.ReplaceAll(string(buf[:n]), "\r\n", "\n")
		m := rlPeerMsg{from: from}
		m.at = time.Now()
		m.parse(strings.Trim(raw, "\n"))
		m.body = strings.TrimRight(m.body, "\n")
		p.mu.Lock()
		p.msgs = append(p.msgs, m)
		p.mu.Unlock()
		if p.handle != nil {
			p.handle(p, m)
		}
	}
}

func (p *rlPeer) received() []rlPeerMsg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.msgs)
}

// count is how many received messages match f.
func (p *rlPeer) count(f func(rlPeerMsg) bool) int {
	n := 0
	for _, m := range p.received() {
		if f(m) {
			n++
		}
	}
	return n
}

func (p *rlPeer) send(to *net.UDPAddr, msg string) {
	_, _ = p.conn.WriteToUDP([]byte(strings.ReplaceAll(msg, "\n", "\r\n")), to)
}

// reply sends a response to a request, To-tag added when toTag is set and
// the request's To has none, with an SDP answer when sdp is true.
func (p *rlPeer) reply(req rlPeerMsg, code int, reason, toTag string, sdp bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\n", code, reason)
	for _, v := range req.headers("via") {
		fmt.Fprintf(&b, "Via: %s\n", v)
	}
	fmt.Fprintf(&b, "From: %s\n", req.header("from"))
	to := req.header("to")
	if toTag != "" && param(to, "tag") == "" {
		to += ";tag=" + toTag
	}
	fmt.Fprintf(&b, "To: %s\n", to)
	fmt.Fprintf(&b, "Call-ID: %s\n", req.callID())
	fmt.Fprintf(&b, "CSeq: %s\n", req.header("cseq"))
	fmt.Fprintf(&b, "Contact: <sip:%s@127.0.0.1:%d>\n", p.name, p.port)
	body := ""
	if sdp {
		body = fmt.Sprintf("v=0\no=%s 1 1 IN IP4 127.0.0.1\ns=member-%d\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio %d RTP/AVP 0\na=rtpmap:0 PCMU/8000\n",
			p.name, p.port, p.port+4)
		b.WriteString("Content-Type: application/sdp\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\n\n%s", len(strings.ReplaceAll(body, "\n", "\r\n")), body)
	p.send(req.from, b.String())
}

// report lists what the peer received, for failure messages.
func (p *rlPeer) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "peer %s (udp port %d) received:\n", p.name, p.port)
	for _, m := range p.received() {
		fmt.Fprintf(&b, "  %s\n", m.summary())
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// SIPp statistics (-trace_stat)

// rlStats are the cumulative counters of SIPp's statistics file: the
// (C) columns of its last line, by column name without the "(C)".
type rlStats map[string]int

// rlStatArgs are the SIPp flags that write the statistics file; stats reads it.
func rlStatArgs(dir, name string) []string {
	return []string{"-trace_stat", "-stf", filepath.Join(dir, name+".stat.csv"), "-fd", "1"}
}

func rlReadStats(dir, name string) (rlStats, error) {
	lines := nonEmptyLines(filepath.Join(dir, name+".stat.csv"))
	if len(lines) < 2 {
		return nil, fmt.Errorf("sipp %s: no statistics in %s", name, filepath.Join(dir, name+".stat.csv"))
	}
	head := strings.Split(lines[0], ";")
	last := strings.Split(lines[len(lines)-1], ";")
	st := rlStats{}
	for i, h := range head {
		col, ok := strings.CutSuffix(h, "(C)")
		if !ok || i >= len(last) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(last[i]))
		if err == nil {
			st[col] = n
		}
	}
	if _, ok := st["SuccessfulCall"]; !ok {
		return nil, fmt.Errorf("sipp %s: statistics without SuccessfulCall: %q", name, lines[0])
	}
	return st, nil
}

// failures lists the non-zero Failed* counters ("FailedTimeoutOnRecv=2").
func (s rlStats) failures() []string {
	var out []string
	for k, v := range s {
		if strings.HasPrefix(k, "Failed") && k != "FailedCall" && v > 0 {
			out = append(out, fmt.Sprintf("%s=%d", strings.TrimPrefix(k, "Failed"), v))
		}
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------------------
// Small things

// rlKill sends SIGKILL to a process (by its PID: SIPp is the group
// leader, with no children) and waits for it.
func rlKill(t testing.TB, p *proc) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (pid %d): %v", p.name, p.cmd.Process.Pid, err)
	}
	if _, ok := p.wait(5 * time.Second); !ok {
		t.Fatalf("%s (pid %d) still running 5s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// rlWaitFor polls f every 20 ms for up to d.
func rlWaitFor(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
