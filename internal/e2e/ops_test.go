//go:build unix

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Operations (issue 7, SPEC "Command line" and "Observability"), over UDP:
// reload under load, drain on SIGTERM, /metrics through the Prometheus text
// parser and the status API, the admin token. Each test has a daemon of its
// own, started from a config this file writes (opsConf), so that it can
// change the admin block, drain_timeout and the file it reloads.

// opsGroup is one group of an opsConf.
type opsGroup struct {
	name, ext, strategy    string
	timeout, memberTimeout time.Duration
	members                []string // member URIs
	extra                  []string // more "key: value" lines for the group
}

// opsConf is a daemon config: UDP on loopback, relay media, admin on.
type opsConf struct {
	sipPort, adminPort int
	adminHost          string // default 127.0.0.1
	token              string
	drain              time.Duration
	level              string
	cdr                string
	groups             []opsGroup
}

func (c opsConf) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: [udp://127.0.0.1:%d]\n", c.sipPort)
	b.WriteString("realm: test\n")
	fmt.Fprintf(&b, "drain_timeout: %s\n", c.drain)
	b.WriteString("media: {mode: relay, address: 127.0.0.1, ports: 40000-59999}\n")
	host := c.adminHost
	if host == "" {
		host = "127.0.0.1"
	}
	if c.token != "" {
		fmt.Fprintf(&b, "admin: {listen: \"%s:%d\", token: %q}\n", host, c.adminPort, c.token)
	} else {
		fmt.Fprintf(&b, "admin: {listen: \"%s:%d\"}\n", host, c.adminPort)
	}
	fmt.Fprintf(&b, "log: {level: %s, format: json}\n", c.level)
	fmt.Fprintf(&b, "cdr: {path: %q}\n", c.cdr)
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
		b.WriteString("    retry_delay: 0s\n")
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

// withStrategy is c with group i's strategy changed (groups copied).
func (c opsConf) withStrategy(i int, strategy string) opsConf {
	c.groups = slices.Clone(c.groups)
	c.groups[i].strategy = strategy
	return c
}

// opsDaemon is `ringroute run` on an opsConf.
type opsDaemon struct {
	*proc
	conf   opsConf
	config string // the file it runs on and reloads
	log    string
	http   *http.Client
}

// opsStart allocates the SIP and admin ports, writes the config and starts
// the daemon, returning once it answers OPTIONS and /healthz.
func opsStart(t *testing.T, dir string, conf opsConf) *opsDaemon {
	t.Helper()
	bin := needDaemon(t)
	base := portBlock(t)
	conf.sipPort, conf.adminPort = base, base+1
	if conf.level == "" {
		conf.level = "info"
	}
	if conf.drain == 0 {
		conf.drain = time.Second
	}
	if conf.cdr == "" {
		conf.cdr = filepath.Join(dir, "cdr.jsonl")
	}
	d := &opsDaemon{conf: conf, config: filepath.Join(dir, "ringroute.yaml"), log: filepath.Join(dir, "ringroute.log"),
		http: &http.Client{Timeout: 5 * time.Second}}
	d.writeConfig(t, conf.yaml())
	d.proc = startProc(t, "ringroute", dir, d.log, bin, "run", "-c", d.config)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ringroute config %s:\n%s", d.config, readFile(d.config))
			t.Logf("ringroute log %s:\n%s", d.log, tail(d.log, 150))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if d.exited() {
			t.Fatalf("ringroute exited with %d before it was ready:\n%s", d.code(), tail(d.log, 50))
		}
		if optionsOK(d.sipAddr(), 200*ms) {
			if code, _, _ := d.do(http.MethodGet, "/healthz", d.conf.token); code == 200 {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ringroute not answering OPTIONS and /healthz after 10s:\n%s", tail(d.log, 50))
		}
		time.Sleep(50 * ms)
	}
}

func (d *opsDaemon) sipAddr() string { return fmt.Sprintf("127.0.0.1:%d", d.conf.sipPort) }

// writeConfig replaces the config file in one rename, so a reload never
// reads half a file.
func (d *opsDaemon) writeConfig(t *testing.T, text string) {
	t.Helper()
	tmp := d.config + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, d.config); err != nil {
		t.Fatal(err)
	}
}

// do sends an admin request with `Authorization: Bearer token` (none when
// token is ""); code is 0 when the request failed.
func (d *opsDaemon) do(method, path, token string) (code int, hdr http.Header, body []byte) {
	return d.doAuth(method, path, opsBearer(token))
}

func opsBearer(token string) string {
	if token == "" {
		return ""
	}
	return "Bearer " + token
}

// doAuth is do with the whole Authorization value ("" for none).
func (d *opsDaemon) doAuth(method, path, auth string) (code int, hdr http.Header, body []byte) {
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", d.conf.adminPort, path), nil)
	if err != nil {
		return 0, nil, []byte(err.Error())
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if path == "/metrics" {
		req.Header.Set("Accept", "text/plain")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, []byte(err.Error())
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, buf.Bytes()
}

// get is an admin GET that must answer 200.
func (d *opsDaemon) get(t *testing.T, path string) []byte {
	t.Helper()
	code, _, body := d.do(http.MethodGet, path, d.conf.token)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
}

// opsGroupStatus is one entry of GET /api/v1/groups as the wire shows it.
type opsGroupStatus struct {
	Name     string `json:"name"`
	Strategy string `json:"strategy"`
	Calls    int    `json:"calls"`
	Members  []struct {
		Key   string `json:"key"`
		State string `json:"state"`
	} `json:"members"`
}

func (d *opsDaemon) groups(t *testing.T) map[string]opsGroupStatus {
	t.Helper()
	var gs []opsGroupStatus
	body := d.get(t, "/api/v1/groups")
	if err := json.Unmarshal(body, &gs); err != nil {
		t.Fatalf("/api/v1/groups: %v\n%s", err, body)
	}
	out := map[string]opsGroupStatus{}
	for _, g := range gs {
		out[g.Name] = g
	}
	return out
}

func (g opsGroupStatus) state(key string) string {
	for _, m := range g.Members {
		if m.Key == key {
			return m.State
		}
	}
	return "(no member " + key + ")"
}

// opsCallStatus is one entry of GET /api/v1/calls.
type opsCallStatus struct {
	CallID    string   `json:"call_id"`
	Group     string   `json:"group"`
	State     string   `json:"state"`
	Decisions []string `json:"decisions"`
	Legs      []struct {
		Member string `json:"member"`
		State  string `json:"state"`
	} `json:"legs"`
}

func (d *opsDaemon) calls(t *testing.T) []opsCallStatus {
	t.Helper()
	var cs []opsCallStatus
	body := d.get(t, "/api/v1/calls")
	if err := json.Unmarshal(body, &cs); err != nil {
		t.Fatalf("/api/v1/calls: %v\n%s", err, body)
	}
	return cs
}

// ---------------------------------------------------------------------------
// /metrics

type opsSample struct {
	labels map[string]string
	value  float64 // counter, gauge, untyped; a histogram's sample count
}

type opsFamily struct {
	typ     string // COUNTER, GAUGE, HISTOGRAM, ...
	samples []opsSample
}

// opsMetrics is a /metrics scrape, parsed by the Prometheus text parser.
type opsMetrics map[string]opsFamily

// opsParseMetrics runs expfmt's text parser over a scrape; any error (bad
// syntax, a type clash, a family twice) fails the test.
func opsParseMetrics(t *testing.T, text []byte) opsMetrics {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics does not parse with expfmt: %v\n%s", err, limit(string(text), 4000))
	}
	out := opsMetrics{}
	for name, mf := range fams {
		f := opsFamily{typ: mf.GetType().String()}
		for _, m := range mf.GetMetric() {
			s := opsSample{labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Histogram != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
			case m.Untyped != nil:
				s.value = m.GetUntyped().GetValue()
			case m.Summary != nil:
				s.value = float64(m.GetSummary().GetSampleCount())
			}
			f.samples = append(f.samples, s)
		}
		out[name] = f
	}
	return out
}

func (d *opsDaemon) metrics(t *testing.T) opsMetrics {
	t.Helper()
	code, hdr, body := d.do(http.MethodGet, "/metrics", d.conf.token)
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q, want the text format (text/plain; version=0.0.4)", ct)
	}
	return opsParseMetrics(t, body)
}

// sum adds the samples of a family whose labels include every name=value
// pair given; ok is false when the family is missing.
func (m opsMetrics) sum(name string, labels ...string) (v float64, ok bool) {
	f, ok := m[name]
	if !ok {
		return 0, false
	}
next:
	for _, s := range f.samples {
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				continue next
			}
		}
		v += s.value
	}
	return v, true
}

// expect checks one value of the scrape.
func (m opsMetrics) expect(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	v, ok := m.sum(name, labels...)
	if !ok {
		t.Errorf("/metrics has no %s", name)
		return
	}
	if v != want {
		t.Errorf("/metrics %s%v = %v, want %v (samples %v)", name, labels, v, want, m[name].samples)
	}
}

func (m opsMetrics) typ(t *testing.T, name, want string) {
	t.Helper()
	if f, ok := m[name]; !ok || f.typ != want {
		t.Errorf("/metrics %s has type %q, want %s", name, m[name].typ, want)
	}
}

// opsWait polls cond every 20 ms until it holds or d passes.
func opsWait(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * ms)
	}
}

// opsCDRs waits for want lines in the CDR file and decodes them.
func opsCDRs(t *testing.T, path string, want int) []cdrRecord {
	t.Helper()
	opsWait(10*time.Second, func() bool { return len(nonEmptyLines(path)) >= want })
	time.Sleep(200 * ms) // a line too many shows up too
	var out []cdrRecord
	for i, l := range nonEmptyLines(path) {
		var r cdrRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("CDR line %d: %v\n%s", i+1, err, l)
		}
		out = append(out, r)
	}
	if len(out) != want {
		t.Errorf("CDR %s has %d lines, want %d", path, len(out), want)
	}
	return out
}

// opsUDP is a SIPp over UDP with a long global timeout, for load.
func opsUDP(name, scenario string, calls int, pause time.Duration) sippSpec {
	return sippSpec{name: name, scenario: scenario, transport: "udp", calls: calls, pause: pause,
		timeout: 60 * time.Second, extra: []string{"-f", "3600"}}
}

// ---------------------------------------------------------------------------
// Reload under load

// TestOpsReloadUnderLoad: 200 calls at 20 calls/s through a parallel group
// (member a answers after 200 ms, b and c ring until CANCEL; the caller
// hangs up after 1 s) while the file is reloaded 50 times, alternating the
// strategy all <-> linear (linear rings only a, the first member), 45 times
// by POST /api/v1/reload and 5 by SIGHUP, and once, in the middle, with a
// broken file that says `all` too. No call may fail; every call must show
// one snapshot (3 legs under all, 1 under linear, never 2); the broken file
// changes nothing, its errors come back with positions, and the counters
// say 50 reloads and 1 failure.
func TestOpsReloadUnderLoad(t *testing.T) {
	t.Parallel()
	needDaemon(t)
	dir := workDir(t)
	const calls, rate, reloads = 200, 20, 50

	a := newSipp(t, dir, opsUDP("a", "uas_answer.xml", calls, 200*ms))
	b := newSipp(t, dir, opsUDP("b", "uas_ring_cancel_reason.xml", 1_000_000, 0))
	c := newSipp(t, dir, opsUDP("c", "uas_ring_cancel_reason.xml", 1_000_000, 0))
	d := opsStart(t, dir, opsConf{groups: []opsGroup{{name: "sales", ext: "600", strategy: "all",
		timeout: 10 * time.Second, memberTimeout: 3 * time.Second, members: uris(a, b, c)}}})
	for _, m := range []*sipp{a, b, c} {
		m.start(t)
	}
	cs := opsUDP("caller", "uac_answer.xml", calls, time.Second)
	cs.remote, cs.service = d.sipAddr(), "600"
	cs.extra = append(cs.extra, "-r", strconv.Itoa(rate))
	caller := newSipp(t, dir, cs)
	caller.start(t)
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range []*sipp{caller, a, b, c} {
				t.Logf("sipp %s: exit state %v, stdout tail:\n%s", s.spec.name, s.exited(), tail(s.proc.out, 25))
			}
		}
	})

	time.Sleep(700 * ms) // the load is up
	current, good := "all", 0
	var brokenResp []byte
	var brokenLines []int
	var slowest time.Duration
	for i := range reloads + 1 {
		if i == reloads/2 {
			// Broken: the other strategy (a partial apply would show it)
			// and two errors at known lines.
			text := d.conf.withStrategy(0, opsFlip(current)).yaml()
			text = strings.Replace(text, "    timeout: 10s\n", "    timeout: ten\n", 1)
			text = strings.Replace(text, "    retry_delay: 0s\n", "    retry_delay: 0s\n    colour: blue\n", 1)
			brokenLines = []int{opsLineOf(text, "    timeout: ten"), opsLineOf(text, "    colour: blue")}
			d.writeConfig(t, text)
			code, _, body := d.do(http.MethodPost, "/api/v1/reload", "")
			if code != http.StatusBadRequest {
				t.Errorf("reload of a broken file: %d %s, want 400", code, body)
			}
			brokenResp = body
			if s := d.groups(t)["sales"].Strategy; s != current {
				t.Errorf("after the broken reload /api/v1/groups says strategy %q, want %q (the running config)", s, current)
			}
			time.Sleep(100 * ms)
			continue
		}
		good++
		next := opsFlip(current)
		d.writeConfig(t, d.conf.withStrategy(0, next).yaml())
		start := time.Now()
		if good%10 == 0 {
			syscall.Kill(d.cmd.Process.Pid, syscall.SIGHUP)
			if !opsWait(5*time.Second, func() bool {
				v, _ := d.metrics(t).sum("ringroute_config_reloads_total")
				return v == float64(good)
			}) {
				t.Fatalf("SIGHUP reload %d: ringroute_config_reloads_total did not reach %d in 5s", good, good)
			}
		} else {
			code, _, body := d.do(http.MethodPost, "/api/v1/reload", "")
			var r struct {
				OK      bool     `json:"ok"`
				Restart []string `json:"restart_needed"`
			}
			if err := json.Unmarshal(body, &r); code != 200 || err != nil || !r.OK || r.Restart == nil || len(r.Restart) != 0 {
				t.Errorf("reload %d: %d %s, want 200 {\"ok\":true,\"restart_needed\":[]}", good, code, body)
			}
		}
		slowest = max(slowest, time.Since(start))
		if s := d.groups(t)["sales"].Strategy; s != next {
			t.Errorf("after reload %d /api/v1/groups says strategy %q, want %q", good, s, next)
		}
		current = next
		time.Sleep(100 * ms)
	}
	t.Logf("%d reloads and 1 refused while the calls ran; slowest reload %v", good, slowest.Round(ms))
	if caller.exited() {
		t.Errorf("the caller had finished before the last reload: the reloads were not all under load")
	}

	// Zero failed calls, on every side.
	if code, ok := caller.wait(40 * time.Second); !ok || code != 0 {
		t.Errorf("caller exit %d (finished %v), want 0", code, ok)
	}
	if ok, failed := sippCounts(caller.proc.out); ok != strconv.Itoa(calls) || failed != "0" {
		t.Errorf("caller: %s successful, %s failed calls; want %d and 0", ok, failed, calls)
	}
	if code, ok := a.wait(15 * time.Second); !ok || code != 0 {
		t.Errorf("member a exit %d (finished %v), want 0", code, ok)
	}
	time.Sleep(300 * ms)
	ringers := map[string]string{}
	for _, m := range []*sipp{b, c} {
		m.stop(3 * time.Second)
		ok, failed := sippCounts(m.proc.out)
		if failed != "0" {
			t.Errorf("member %s: %s failed calls, want 0:\n%s", m.spec.name, failed, tail(m.errLog, 20))
		}
		ringers[m.spec.name] = ok
	}

	// One snapshot per call: 3 legs (all) or 1 (linear), and both seen.
	recs := opsCDRs(t, d.conf.cdr, calls)
	legs := map[int]int{}
	for _, r := range recs {
		legs[len(r.Legs)]++
		if r.Outcome != "answered" || r.AnsweredBy != key(a) {
			t.Errorf("CDR %s: outcome %q answered_by %q, want answered by %s", r.CallID, r.Outcome, r.AnsweredBy, key(a))
		}
	}
	t.Logf("calls by legs rung: %v (3: strategy all, 1: linear)", legs)
	if legs[3] == 0 || legs[1] == 0 || legs[3]+legs[1] != len(recs) {
		t.Errorf("calls by number of legs %v: want only 3 (all) and 1 (linear), both", legs)
	}
	for name, ok := range ringers {
		if ok != strconv.Itoa(legs[3]) {
			t.Errorf("member %s completed %s calls (ring, CANCEL, 487); the CDR has %d calls that rang it", name, ok, legs[3])
		}
	}

	// The broken file's errors, with positions.
	var br struct {
		OK     *bool    `json:"ok"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(brokenResp, &br); err != nil || br.OK == nil || *br.OK {
		t.Errorf("broken reload answered %s, want {\"ok\":false,\"errors\":[...]}", brokenResp)
	}
	pos := regexp.MustCompile(`^(?:\S*/)?ringroute\.yaml:(\d+):(\d+): (\S+): `)
	var gotLines []int
	for _, e := range br.Errors {
		m := pos.FindStringSubmatch(e)
		if m == nil {
			t.Errorf("reload error %q has no file:line:col: field: prefix", e)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		gotLines = append(gotLines, n)
	}
	if !slices.Equal(gotLines, brokenLines) {
		t.Errorf("reload errors at lines %v, want %v (timeout: ten, colour: blue):\n%s", gotLines, brokenLines, brokenResp)
	}
	if log := readFile(d.log); !strings.Contains(log, fmt.Sprintf("ringroute.yaml:%d:", brokenLines[0])) {
		t.Errorf("the log does not carry the refused file's errors with positions")
	}

	// The counters.
	mt := d.metrics(t)
	mt.expect(t, reloads, "ringroute_config_reloads_total")
	mt.expect(t, 1, "ringroute_config_reload_failures_total")
	mt.expect(t, calls, "ringroute_calls_total", "group", "sales", "outcome", "answered")
	mt.expect(t, calls, "ringroute_calls_total")
	if s := d.groups(t)["sales"].Strategy; s != current {
		t.Errorf("at the end /api/v1/groups says strategy %q, want %q", s, current)
	}
	d.stop(3 * time.Second)
}

func opsFlip(strategy string) string {
	if strategy == "all" {
		return "linear"
	}
	return "all"
}

// opsLineOf is the 1-based line of text that starts with prefix, 0 if none.
func opsLineOf(text, prefix string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	return 0
}

// ---------------------------------------------------------------------------
// Drain

// TestOpsDrain: three answered calls are up (3 s of talk each) when SIGTERM
// comes. /healthz turns 503, a new INVITE gets 503 with Retry-After, the
// calls go on to their own BYE, and the process exits 0 by itself as soon
// as the last one ends, long before drain_timeout (20 s).
func TestOpsDrain(t *testing.T) {
	t.Parallel()
	needDaemon(t)
	dir := workDir(t)
	const n = 3
	m1 := newSipp(t, dir, opsUDP("m1", "uas_answer.xml", n, 100*ms))
	drain := 20 * time.Second
	d := opsStart(t, dir, opsConf{drain: drain, groups: []opsGroup{{name: "sales", ext: "600", strategy: "all",
		timeout: 10 * time.Second, memberTimeout: 8 * time.Second, members: uris(m1)}}})
	m1.start(t)
	cs := opsUDP("caller", "uac_answer.xml", n, 3*time.Second)
	cs.remote, cs.service = d.sipAddr(), "600"
	cs.extra = append(cs.extra, "-r", "10")
	caller := newSipp(t, dir, cs)
	caller.start(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(caller.report())
			t.Log(m1.report())
		}
	})

	if !opsWait(5*time.Second, func() bool {
		up := 0
		for _, c := range d.calls(t) {
			if c.State == "answered" {
				up++
			}
		}
		return up == n
	}) {
		t.Fatalf("the %d calls were not all answered after 5s: %s", n, d.get(t, "/api/v1/calls"))
	}
	sigterm := time.Now()
	syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)

	if !opsWait(2*time.Second, func() bool { code, _, _ := d.do(http.MethodGet, "/healthz", ""); return code == 503 }) {
		code, _, body := d.do(http.MethodGet, "/healthz", "")
		t.Errorf("/healthz answers %d %q while draining, want 503", code, body)
	}
	d.metrics(t).expect(t, 1, "ringroute_draining")
	code, retryAfter, err := opsInvite(d.sipAddr(), "drain-"+strconv.FormatInt(rand.Int64(), 36)+"@e2e")
	if err != nil {
		t.Errorf("a new INVITE while draining: %v", err)
	} else if code != 503 || retryAfter == "" {
		t.Errorf("a new INVITE while draining got %d (Retry-After %q), want 503 with Retry-After", code, retryAfter)
	}
	if up := len(d.calls(t)); up != n {
		t.Errorf("/api/v1/calls lists %d calls just after SIGTERM, want the %d in progress", up, n)
	}
	if d.exited() {
		t.Fatalf("ringroute exited (%d) with calls up, %v after SIGTERM", d.code(), time.Since(sigterm))
	}

	if code, ok := caller.wait(15 * time.Second); !ok || code != 0 {
		t.Errorf("caller exit %d (finished %v), want 0: the calls in progress must complete", code, ok)
	}
	lastEnd := time.Now()
	if code, ok := m1.wait(10 * time.Second); !ok || code != 0 {
		t.Errorf("member exit %d (finished %v), want 0", code, ok)
	}
	code, ok := d.wait(5 * time.Second)
	exitAt := time.Now()
	if !ok {
		t.Fatalf("ringroute still running %v after the last call ended (drain_timeout %v)", time.Since(lastEnd).Round(ms), drain)
	}
	t.Logf("SIGTERM to exit %v, last call end to exit %v", exitAt.Sub(sigterm).Round(ms), exitAt.Sub(lastEnd).Round(ms))
	if code != 0 {
		t.Errorf("ringroute exited %d after the drain, want 0", code)
	}
	if took := exitAt.Sub(sigterm); took > drain/2 {
		t.Errorf("ringroute took %v to exit after SIGTERM, want it gone once the calls ended, well before drain_timeout %v", took, drain)
	}
	recs := opsCDRs(t, d.conf.cdr, n+1)
	answered := 0
	for _, r := range recs {
		switch {
		case r.Outcome == "answered":
			answered++
		case r.Code == 503 && strings.HasPrefix(r.CallID, "drain-"):
		default:
			t.Errorf("CDR %s: outcome %q code %d, want the %d answered calls and the refused INVITE (503)", r.CallID, r.Outcome, r.Code, n)
		}
	}
	if answered != n {
		t.Errorf("CDR has %d answered calls, want %d", answered, n)
	}
	for _, l := range nonEmptyLines(d.conf.cdr) {
		if strings.Contains(l, "shut down") || strings.Contains(l, `"ended_by":"shutdown"`) {
			t.Errorf("a call was hung up by the drain instead of completing: %s", l)
		}
	}
}

// TestOpsDrainSecondSignal: a second SIGTERM ends the drain at once, exit 0.
func TestOpsDrainSecondSignal(t *testing.T) {
	t.Parallel()
	needDaemon(t)
	dir := workDir(t)
	m1 := newSipp(t, dir, opsUDP("m1", "uas_answer.xml", 1, 0))
	d := opsStart(t, dir, opsConf{drain: 30 * time.Second, groups: []opsGroup{{name: "sales", ext: "600", strategy: "all",
		timeout: 10 * time.Second, memberTimeout: 8 * time.Second, members: uris(m1)}}})
	m1.start(t)
	cs := opsUDP("caller", "uac_answer.xml", 1, 20*time.Second)
	cs.remote, cs.service = d.sipAddr(), "600"
	caller := newSipp(t, dir, cs)
	caller.start(t)
	if !opsWait(5*time.Second, func() bool { cs := d.calls(t); return len(cs) == 1 && cs[0].State == "answered" }) {
		t.Fatalf("the call was not answered after 5s: %s", d.get(t, "/api/v1/calls"))
	}
	syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
	time.Sleep(300 * ms)
	if d.exited() {
		t.Fatalf("ringroute exited (%d) on the first SIGTERM with a call up", d.code())
	}
	second := time.Now()
	syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
	code, ok := d.wait(5 * time.Second)
	if !ok {
		t.Fatal("ringroute still running 5s after a second SIGTERM")
	}
	t.Logf("second SIGTERM to exit: %v", time.Since(second).Round(ms))
	if code != 0 {
		t.Errorf("ringroute exited %d after a second SIGTERM, want 0", code)
	}
	// At once: the cut-off call's BYEs get a second at most.
	if took := time.Since(second); took > 1500*ms {
		t.Errorf("a second SIGTERM took %v to stop ringroute, want at once", took)
	}
	// Even cut off, the call ends properly: both sides got BYE and it has
	// its CDR line.
	lines := nonEmptyLines(d.conf.cdr)
	var rec cdrRecord
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil || rec.Outcome != "answered" {
		t.Fatalf("CDR lines after a second SIGTERM: %q", lines)
	}
	if n := len(requests(received(m1.messages(t)), "BYE")); n != 1 {
		t.Errorf("member got %d BYE when ringroute stopped, want 1", n)
	}
}

// opsInvite sends one INVITE for 600 over UDP, reads until its final
// response, ACKs it, and returns the code and Retry-After.
func opsInvite(addr, callID string) (code int, retryAfter string, err error) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	branch := "z9hG4bK" + strconv.FormatInt(rand.Int64(), 36)
	from := "\"e2e caller\" <sip:caller@" + local + ">;tag=" + strconv.FormatInt(rand.Int64(), 36)
	sdp := "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	inv := "INVITE sip:600@" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: " + from + "\r\n" +
		"To: <sip:600@" + addr + ">\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:caller@" + local + ">\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
	if _, err := conn.Write([]byte(inv)); err != nil {
		return 0, "", err
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return 0, "", fmt.Errorf("no final response: %w", err)
		}
		var m sipMsg
		m.parse(strings.ReplaceAll(string(buf[:n]), "\r\n", "\n"))
		if m.callID() != callID || m.code() < 200 {
			continue
		}
		ack := "ACK sip:600@" + addr + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=" + branch + ";rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: " + from + "\r\n" +
			"To: " + m.header("to") + "\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: 1 ACK\r\n" +
			"Content-Length: 0\r\n\r\n"
		_, _ = conn.Write([]byte(ack))
		return m.code(), m.header("retry-after"), nil
	}
}

// ---------------------------------------------------------------------------
// Metrics and the status API

// TestOpsMetrics: 3 answered calls to `sales` and 2 to `quiet`, whose one
// member only rings until the group timeout (noanswer, 480). While quiet's
// calls ring, /api/v1/groups shows its member ringing and /api/v1/calls
// lists them with a ringing leg and a decision log; afterwards /metrics
// parses with the Prometheus text parser and counts exactly those calls
// and legs.
func TestOpsMetrics(t *testing.T) {
	t.Parallel()
	needDaemon(t)
	dir := workDir(t)
	const answered, noanswer = 3, 2
	a := newSipp(t, dir, opsUDP("a", "uas_answer.xml", answered, 100*ms))
	q := newSipp(t, dir, opsUDP("q", "uas_ring_cancel.xml", noanswer, 0))
	d := opsStart(t, dir, opsConf{groups: []opsGroup{
		{name: "sales", ext: "600", strategy: "all", timeout: 10 * time.Second, memberTimeout: 8 * time.Second, members: uris(a)},
		{name: "quiet", ext: "601", strategy: "all", timeout: 2 * time.Second, memberTimeout: 2 * time.Second, members: uris(q)},
	}})
	a.start(t)
	q.start(t)
	// Before any call a labelled counter has no series yet (client_golang
	// exports a vector's children only), so absent counts as 0.
	before := d.metrics(t)
	if v, _ := before.sum("ringroute_calls_total"); v != 0 {
		t.Errorf("ringroute_calls_total = %v before any call", v)
	}
	before.expect(t, 0, "ringroute_active_calls")
	if g := d.groups(t)["quiet"]; g.state(key(q)) != "idle" || g.Calls != 0 {
		t.Errorf("before any call /api/v1/groups shows quiet %+v, want its member idle and no calls", g)
	}

	qs := opsUDP("qcaller", "uac_480.xml", noanswer, 0)
	qs.remote, qs.service = d.sipAddr(), "601"
	qcaller := newSipp(t, dir, qs)
	qcaller.start(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(qcaller.report())
			t.Log(q.report())
		}
	})
	var seen opsGroupStatus
	if !opsWait(1500*ms, func() bool {
		seen = d.groups(t)["quiet"]
		return seen.state(key(q)) == "ringing" && seen.Calls == noanswer
	}) {
		t.Errorf("/api/v1/groups never showed quiet's member ringing with %d calls while it rang: last %+v", noanswer, seen)
	}
	live := d.calls(t)
	ringing := 0
	for _, c := range live {
		if c.Group == "quiet" && c.State == "ringing" && len(c.Legs) == 1 && c.Legs[0].Member == key(q) && c.Legs[0].State == "ringing" {
			ringing++
			var one opsCallStatus
			if err := json.Unmarshal(d.get(t, "/api/v1/calls/"+c.CallID), &one); err != nil || one.CallID != c.CallID || len(one.Decisions) == 0 {
				t.Errorf("/api/v1/calls/%s: %+v (%v), want the call with its decision log", c.CallID, one, err)
			}
		}
	}
	if ringing != noanswer {
		t.Errorf("/api/v1/calls lists %d quiet calls with a ringing leg, want %d: %+v", ringing, noanswer, live)
	}
	if v, _ := d.metrics(t).sum("ringroute_ringing_legs"); v != noanswer {
		t.Errorf("ringroute_ringing_legs = %v while quiet's calls ring, want %d", v, noanswer)
	}
	if code, _, body := d.do(http.MethodGet, "/api/v1/calls/no-such-call", ""); code != 404 {
		t.Errorf("/api/v1/calls/no-such-call: %d %s, want 404", code, body)
	}

	as := opsUDP("acaller", "uac_answer.xml", answered, 200*ms)
	as.remote, as.service = d.sipAddr(), "600"
	acaller := newSipp(t, dir, as)
	acaller.start(t)
	for _, s := range []*sipp{qcaller, acaller, a, q} {
		if code, ok := s.wait(20 * time.Second); !ok || code != 0 {
			t.Errorf("sipp %s exit %d (finished %v), want 0:\n%s", s.spec.name, code, ok, s.report())
		}
	}
	opsCDRs(t, d.conf.cdr, answered+noanswer)
	if !opsWait(3*time.Second, func() bool { v, _ := d.metrics(t).sum("ringroute_active_calls"); return v == 0 }) {
		t.Error("ringroute_active_calls did not fall to 0 after the calls")
	}

	m := d.metrics(t)
	for name, typ := range map[string]string{
		"ringroute_calls_total": "COUNTER", "ringroute_legs_total": "COUNTER",
		"ringroute_call_setup_seconds": "HISTOGRAM", "ringroute_time_to_answer_seconds": "HISTOGRAM",
		"ringroute_active_calls": "GAUGE", "ringroute_ringing_legs": "GAUGE", "ringroute_registrations": "GAUGE",
		"ringroute_media_ports_in_use": "GAUGE", "ringroute_media_ports_total": "GAUGE",
		"ringroute_relay_packets_total": "COUNTER", "ringroute_relay_dropped_total": "COUNTER",
		"ringroute_config_reloads_total": "COUNTER", "ringroute_config_reload_failures_total": "COUNTER",
		"ringroute_auth_failures_total": "COUNTER", "ringroute_draining": "GAUGE",
	} {
		m.typ(t, name, typ)
	}
	m.expect(t, answered, "ringroute_calls_total", "group", "sales", "outcome", "answered")
	m.expect(t, noanswer, "ringroute_calls_total", "group", "quiet", "outcome", "noanswer")
	m.expect(t, answered+noanswer, "ringroute_calls_total")
	m.expect(t, answered, "ringroute_legs_total", "code", "200")
	m.expect(t, noanswer, "ringroute_legs_total", "code", "487")
	m.expect(t, answered+noanswer, "ringroute_legs_total")
	m.expect(t, answered, "ringroute_call_setup_seconds")
	m.expect(t, answered, "ringroute_time_to_answer_seconds", "group", "sales", "member", key(a))
	m.expect(t, 0, "ringroute_active_calls")
	m.expect(t, 0, "ringroute_ringing_legs")
	m.expect(t, 0, "ringroute_media_ports_in_use")
	m.expect(t, 0, "ringroute_draining")
	m.expect(t, 0, "ringroute_config_reloads_total")
	m.expect(t, 0, "ringroute_config_reload_failures_total")
	if v, _ := m.sum("ringroute_media_ports_total"); v != 10000 {
		t.Errorf("ringroute_media_ports_total = %v, want 10000 (ports 40000-59999)", v)
	}
	for name, g := range d.groups(t) {
		for _, mb := range g.Members {
			if mb.State != "idle" || g.Calls != 0 {
				t.Errorf("after the calls /api/v1/groups shows %s member %s %q with %d calls, want idle and 0", name, mb.Key, mb.State, g.Calls)
			}
		}
	}
	d.stop(3 * time.Second)
}

// ---------------------------------------------------------------------------
// The admin token

// TestOpsAdminToken: with admin.token every endpoint wants
// `Authorization: Bearer <token>` (401 and a Bearer challenge otherwise);
// `ringroute check` refuses a public admin.listen without a token, at its
// position, exit 1, and `run` will not start on it.
func TestOpsAdminToken(t *testing.T) {
	t.Parallel()
	needDaemon(t)
	dir := workDir(t)
	const token = "e2e-s3cret-token"
	d := opsStart(t, dir, opsConf{token: token, groups: []opsGroup{{name: "sales", ext: "600", strategy: "all",
		timeout: 4 * time.Second, memberTimeout: 3 * time.Second, members: []string{"sip:m1@127.0.0.1:9"}}}})

	for _, ep := range []struct{ method, path string }{
		{"GET", "/healthz"}, {"GET", "/metrics"}, {"GET", "/api/v1/groups"}, {"GET", "/api/v1/calls"},
		{"GET", "/api/v1/calls/x"}, {"GET", "/debug/live"}, {"POST", "/api/v1/reload"},
	} {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Basic " + token, token} {
			code, hdr, body := d.doAuth(ep.method, ep.path, auth)
			if code != 401 {
				t.Errorf("%s %s with Authorization %q: %d %s, want 401", ep.method, ep.path, auth, code, limit(string(body), 200))
				continue
			}
			if ch := hdr.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
				t.Errorf("%s %s 401 has WWW-Authenticate %q, want a Bearer challenge", ep.method, ep.path, ch)
			}
		}
		code, _, body := d.doAuth(ep.method, ep.path, "Bearer "+token)
		want := 200
		if ep.path == "/api/v1/calls/x" {
			want = 404 // authorized, and no such call
		}
		if code != want {
			t.Errorf("%s %s with the token: %d %s, want %d", ep.method, ep.path, code, limit(string(body), 200), want)
		}
	}
	mt := d.metrics(t) // with the token
	mt.expect(t, 1, "ringroute_config_reloads_total")
	mt.expect(t, 0, "ringroute_config_reload_failures_total")

	// check: a public admin.listen without a token, at its position.
	bin := needDaemon(t)
	pub := d.conf
	pub.adminHost, pub.adminPort, pub.token = "0.0.0.0", 8080, ""
	text := pub.yaml()
	bad := filepath.Join(dir, "public-admin.yaml")
	if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, dir, bin, "check", "-c", bad)
	line := opsLineOf(text, "admin:")
	col := strings.Index(strings.Split(text, "\n")[line-1], `"0.0.0.0`) + 1
	want := regexp.MustCompile(fmt.Sprintf(`(?m)^(?:\S*/)?public-admin\.yaml:%d:%d: admin\.listen: .*0\.0\.0\.0.*not a loopback address.*token`, line, col))
	if code != 1 || !want.MatchString(out) {
		t.Errorf("check on admin.listen 0.0.0.0:8080 without a token: exit %d\n%s\nwant exit 1 and a line matching %s", code, out, want)
	}
	// run must refuse it too, before binding anything (a run that starts
	// is stopped, not waited for).
	runOut := filepath.Join(dir, "public-admin-run.out")
	rp := startProc(t, "ringroute-public", dir, runOut, bin, "run", "-c", bad)
	if code, ok := rp.wait(5 * time.Second); !ok || code == 0 || !want.MatchString(readFile(runOut)) {
		t.Errorf("run on admin.listen 0.0.0.0:8080 without a token: exit %d (ended %v)\n%s\nwant a refusal with the same diagnostic", code, ok, readFile(runOut))
	}
	pub.token = token
	good := filepath.Join(dir, "public-admin-token.yaml")
	if err := os.WriteFile(good, []byte(pub.yaml()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := run(t, dir, bin, "check", "-c", good); code != 0 {
		t.Errorf("check on admin.listen 0.0.0.0:8080 with a token: exit %d, want 0\n%s", code, out)
	}
	d.stop(3 * time.Second)
}

// ---------------------------------------------------------------------------
// The man page and the deployment files

// TestOpsHelp: `ringroute --help` is the man page. It must name every
// command and flag, the signals, exit codes, files, environment, admin
// endpoints and where the docs are, fit 80 columns, and point only at
// files that exist.
func TestOpsHelp(t *testing.T) {
	t.Parallel()
	bin := needDaemon(t)
	dir := workDir(t)
	out, code := run(t, dir, bin, "--help")
	if code != 0 {
		t.Fatalf("ringroute --help exited %d:\n%s", code, out)
	}
	for _, alias := range []string{"help", "-h"} {
		if o, c := run(t, dir, bin, alias); c != 0 || o != out {
			t.Errorf("ringroute %s exited %d and printed something else than --help", alias, c)
		}
	}
	if o, c := run(t, dir, bin); c != 2 || !strings.Contains(o, "SYNOPSIS") {
		t.Errorf("ringroute with no command exited %d, want 2 and the usage:\n%s", c, o)
	}
	for _, w := range []string{
		"ringroute run", "ringroute check", "ringroute explain", "ringroute version", "help",
		"-c FILE", "--seed N", "--at TIME", "--busy LIST", "--calls N", "--from URI", "--ringing N",
		"SIGHUP", "SIGTERM", "SIGINT", "drain_timeout", "Retry-After", "EXIT STATUS",
		"registrar.state_file", "registrations.json", "cdr.path", "cdr.jsonl", "record.dir", "recordings",
		"RINGROUTE_SEED", "admin.listen", "admin.token", "Authorization: Bearer",
		"/healthz", "/metrics", "/api/v1/groups", "/api/v1/calls", "/api/v1/calls/ID", "/api/v1/reload", "/debug/live",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("ringroute --help does not mention %q", w)
		}
	}
	for i, l := range strings.Split(out, "\n") {
		if len(l) > 80 {
			t.Errorf("ringroute --help line %d is %d columns, want at most 80: %q", i+1, len(l), l)
		}
	}
	for _, f := range regexp.MustCompile(`\b(?:docs|deploy)/[A-Za-z0-9_.-]+\.md\b`).FindAllString(out, -1) {
		if _, err := os.Stat(filepath.Join(repoRoot, f)); err != nil {
			t.Errorf("ringroute --help points at %s: %v", f, err)
		}
	}
}

// TestOpsDeployFiles: deploy/ringroute.yaml passes check; the systemd unit
// passes `systemd-analyze verify` (when systemd-analyze is installed) with
// this build as its binary; the Dockerfile's exec-form instructions are
// valid JSON, it builds with CGO_ENABLED=0, and it runs the config it
// ships. (Docker itself cannot run here.)
func TestOpsDeployFiles(t *testing.T) {
	t.Parallel()
	bin := needDaemon(t)
	dir := workDir(t)
	conf := filepath.Join(repoRoot, "deploy", "ringroute.yaml")
	if out, code := run(t, dir, bin, "check", "-c", conf); code != 0 {
		t.Errorf("ringroute check deploy/ringroute.yaml exited %d:\n%s", code, out)
	}

	unit := readFile(filepath.Join(repoRoot, "deploy", "ringroute.service"))
	for _, w := range []string{
		"ExecStart=/usr/local/bin/ringroute run -c /etc/ringroute/ringroute.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "KillSignal=SIGTERM",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "StateDirectory=ringroute", "LogsDirectory=ringroute",
	} {
		if !strings.Contains(unit, w) {
			t.Errorf("deploy/ringroute.service lacks %q", strings.TrimSpace(w))
		}
	}
	if m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)s$`).FindStringSubmatch(unit); m == nil {
		t.Error("deploy/ringroute.service has no TimeoutStopSec=Ns")
	} else if n, _ := strconv.Atoi(m[1]); time.Duration(n)*time.Second < 30*time.Second+10*time.Second {
		t.Errorf("TimeoutStopSec=%ss does not outlast drain_timeout 30s plus the hang-up and close time", m[1])
	}
	if sa, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not installed: the unit is not verified")
	} else {
		vdir := t.TempDir()
		local := filepath.Join(vdir, "ringroute.service")
		if err := os.WriteFile(local, []byte(strings.ReplaceAll(unit, "/usr/local/bin/ringroute", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sa, "verify", "--man=no", local)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify deploy/ringroute.service: %v\n%s", err, out)
		}
	}

	df := readFile(filepath.Join(repoRoot, "Dockerfile"))
	exe := regexp.MustCompile(`(?m)^(?:\s*CMD|ENTRYPOINT|CMD|VOLUME) (\[.*\])$`)
	found := 0
	for _, m := range exe.FindAllStringSubmatch(df, -1) {
		var argv []string
		if err := json.Unmarshal([]byte(m[1]), &argv); err != nil {
			t.Errorf("Dockerfile: %s is not a JSON array of strings: %v", m[1], err)
		}
		found++
	}
	if found < 4 { // HEALTHCHECK's CMD, ENTRYPOINT, CMD, VOLUME
		t.Errorf("Dockerfile: %d exec-form instructions, want HEALTHCHECK CMD, ENTRYPOINT, CMD and VOLUME", found)
	}
	for _, w := range []string{"CGO_ENABLED=0 go build -trimpath", "COPY deploy/ringroute.yaml /etc/ringroute/ringroute.yaml",
		`CMD ["run", "-c", "/etc/ringroute/ringroute.yaml"]`, "USER 65532", "EXPOSE 5060/udp 5060/tcp 8080/tcp", "HEALTHCHECK"} {
		if !strings.Contains(df, w) {
			t.Errorf("Dockerfile lacks %q", w)
		}
	}
	if di := readFile(filepath.Join(repoRoot, ".dockerignore")); !strings.Contains(di, ".git") {
		t.Error(".dockerignore does not keep .git out of the build context")
	}
}
