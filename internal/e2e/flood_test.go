//go:build unix

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 9, floods: one source sprays INVITEs at 2000/s (SIPp without
// retransmissions, from 127.0.0.5, not a trunk) while a trunk places
// ordinary calls. The flood is held to limits.requests_per_source, is
// logged once (per offender, not per packet) and counted; the trunk's
// calls all connect, with their usual setup time.
func TestFlood(t *testing.T) {
	needSuite(t)
	dir := workDir(t)
	m := newSipp(t, dir, sippSpec{name: "m", transport: "udp", scenario: "uas_answer.xml", calls: 1000, pause: 200 * ms, timeout: 60 * time.Second})
	d := startDaemonLevel(t, dir, []group{sales("all", 5*time.Second, 4*time.Second, m)}, "info")
	defer d.stop(3 * time.Second)

	// Limits on, as a reload: the daemon's own config has them off.
	cfg := readFile(d.config)
	limited := strings.Replace(cfg, "limits: {requests_per_source: 0}", "limits: {requests_per_source: 200, auth_failures_per_source: 10}", 1)
	if limited == cfg {
		t.Fatal("harness config has no limits line to replace")
	}
	if err := os.WriteFile(d.config, []byte(limited), 0o644); err != nil {
		t.Fatal(err)
	}
	reloads := strings.Count(readFile(d.log), "config reloaded")
	if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); strings.Count(readFile(d.log), "config reloaded") == reloads; {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", tail(d.log, 20))
		}
		time.Sleep(50 * ms)
	}
	m.start(t)
	defer m.stop(time.Second)

	const floodRate, floodSecs = 2000, 8
	fs := sippSpec{name: "flooder", transport: "udp", scenario: "uac_answer.xml", ip: "127.0.0.5", remote: d.sipAddr(), service: "600",
		calls: floodRate * floodSecs, timeout: time.Duration(floodSecs+5) * time.Second,
		extra: []string{"-r", fmt.Sprint(floodRate), "-nr", "-recv_timeout", "500", "-f", "3600"}}
	flooder := newSipp(t, dir, fs)
	flooder.start(t)
	defer flooder.stop(time.Second)
	time.Sleep(time.Second) // the flood is on before the first good call

	const calls = 60
	cs := sippSpec{name: "caller", transport: "udp", scenario: "uac_answer.xml", remote: d.sipAddr(), service: "600", calls: calls,
		timeout: 30 * time.Second, extra: []string{"-r", "10", "-f", "3600"}}
	caller := newSipp(t, dir, cs)
	caller.start(t)
	if code, ok := caller.wait(40 * time.Second); !ok || code != 0 {
		t.Fatalf("the trunk's calls during the flood: exit %d (finished %v)\n%s", code, ok, caller.report())
	}
	flooder.wait(time.Duration(floodSecs+10) * time.Second)

	// Every trunk call answered, with the member's 200 ms plus what
	// ringroute adds.
	var setup []time.Duration
	for _, r := range d.cdrsFrom(t, "127.0.0.1", calls) {
		if r.Outcome != "answered" || r.Answer == nil {
			t.Errorf("trunk call %s: %s %d, want answered", r.CallID, r.Outcome, r.Code)
			continue
		}
		setup = append(setup, r.Answer.Sub(r.Start))
	}
	sort.Slice(setup, func(i, j int) bool { return setup[i] < setup[j] })
	if len(setup) > 0 {
		p50, p95 := setup[len(setup)/2], setup[len(setup)*95/100]
		t.Logf("trunk setup during a %d/s flood: p50 %v, p95 %v, max %v (member answers after 200ms)", floodRate, p50, p95, setup[len(setup)-1])
		if p95 > 400*ms {
			t.Errorf("trunk setup p95 %v during the flood, want under 400ms (200ms of ringing)", p95)
		}
	}

	// One log line for the offender, a counter for its packets.
	lines := strings.Count(readFile(d.log), "source over limits.requests_per_source")
	if lines < 1 || lines > 2 {
		t.Errorf("%d 'source over limits' log lines for one %d s flood, want 1 (per offender, not per packet)", lines, floodSecs)
	}
	res, err := http.Get("http://" + d.admin() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	mt := opsParseMetrics(t, body)
	n, ok := mt.sum("ringroute_rate_limited_total")
	sent := countSent(flooder)
	t.Logf("flooder sent %d INVITEs; %v refused or dropped by the limit", sent, n)
	if !ok || n < float64(sent)/2 {
		t.Errorf("ringroute_rate_limited_total = %v (present %v), want most of the flood's %d INVITEs", n, ok, sent)
	}
	d.checkNoLeaks(t)
}

// countSent is how many INVITEs a SIPp instance sent, from its message log.
func countSent(s *sipp) int {
	n := 0
	for _, l := range strings.Split(readFileQuiet(s.msgLog), "\n") {
		if strings.HasPrefix(l, "INVITE sip:") {
			n++
		}
	}
	return n
}

// cdrsFrom waits for want CDR lines whose caller is on ip and returns them.
func (d *daemon) cdrsFrom(t *testing.T, ip string, want int) []cdrRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out []cdrRecord
		for _, l := range nonEmptyLines(d.cdr) {
			var r cdrRecord
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("CDR line is not JSON: %v\n%s", err, l)
			}
			if strings.Contains(r.Caller, "@"+ip+":") || strings.HasSuffix(r.Caller, "@"+ip) {
				out = append(out, r)
			}
		}
		if len(out) >= want || time.Now().After(deadline) {
			if len(out) != want {
				t.Errorf("%d CDR lines from %s, want %d", len(out), ip, want)
			}
			return out
		}
		time.Sleep(100 * ms)
	}
}
