//go:build unix

package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLoad is a rough throughput probe, not a benchmark: one SIPp caller at
// a rising fixed rate through a three-member `all` group (one member
// answers after 200 ms, two ring until they are CANCELled), each rate for a
// few seconds against a fresh daemon, and it reports the highest rate whose
// calls all succeeded on every side with one CDR line each. Run it with
//
//	RINGROUTE_E2E_LOAD=1 go test ./internal/e2e/ -run TestLoad -v
//
// RINGROUTE_E2E_LOAD_TRANSPORT=tcp probes TCP instead of UDP. SIPp and the
// daemon share the machine's cores, so the number is a floor.
func TestLoad(t *testing.T) {
	if os.Getenv("RINGROUTE_E2E_LOAD") == "" {
		t.Skip("throughput probe: set RINGROUTE_E2E_LOAD=1 to run it")
	}
	needDaemon(t)
	tr := "udp"
	if os.Getenv("RINGROUTE_E2E_LOAD_TRANSPORT") == "tcp" {
		tr = "tcp"
	}
	const seconds = 5
	best := 0
	for _, rate := range []int{5, 10, 20, 40, 60, 80, 120, 160, 240, 320, 480, 640} {
		ok, detail := loadStep(t, tr, rate, seconds)
		t.Logf("%3d calls/s for %ds over %s: %s", rate, seconds, tr, detail)
		if !ok {
			break
		}
		best = rate
	}
	t.Logf("highest rate with no failed call: %d calls/s", best)
	if best == 0 {
		t.Error("not even the lowest rate passed")
	}
}

var sippStat = regexp.MustCompile(`(?m)^\s*(Successful call|Failed call)\s*\|\s*\d+\s*\|\s*(\d+)`)

// sippCounts reads the last "Successful call" and "Failed call" cumulative
// counters from a SIPp statistics screen.
func sippCounts(stdout string) (ok, failed string) {
	ok, failed = "?", "?"
	for _, m := range sippStat.FindAllStringSubmatch(readFileQuiet(stdout), -1) {
		if m[1] == "Successful call" {
			ok = m[2]
		} else {
			failed = m[2]
		}
	}
	return ok, failed
}

func loadStep(t *testing.T, tr string, rate, seconds int) (bool, string) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("ringroute-e2e-load-%d-", rate))
	if err != nil {
		t.Fatal(err)
	}
	if !keepLogs {
		defer os.RemoveAll(dir)
	}
	n := rate * seconds
	life := time.Duration(seconds+30) * time.Second
	spec := func(name, scen string, pause time.Duration) sippSpec {
		return sippSpec{name: name, scenario: scen, transport: tr, calls: n, pause: pause, timeout: life,
			extra: []string{"-f", "3600"}}
	}
	a := newSipp(t, dir, spec("a", "uas_answer.xml", 200*ms))
	b := newSipp(t, dir, spec("b", "uas_ring_cancel_reason.xml", 0))
	c := newSipp(t, dir, spec("c", "uas_ring_cancel_reason.xml", 0))
	d := startDaemonLevel(t, dir, []group{sales("all", 10*time.Second, 8*time.Second, a, b, c)}, "warn")
	defer d.stop(3 * time.Second)
	for _, m := range []*sipp{a, b, c} {
		m.start(t)
		defer m.stop(time.Second)
	}
	cs := spec("caller", "uac_answer.xml", 0)
	cs.remote, cs.service = d.sipAddr(), "600"
	cs.extra = append(cs.extra, "-r", fmt.Sprint(rate))
	caller := newSipp(t, dir, cs)
	start := time.Now()
	caller.start(t)
	defer caller.stop(time.Second)

	var problems []string
	code, ok := caller.wait(life + 10*time.Second)
	took := time.Since(start)
	if !ok {
		problems = append(problems, "caller did not finish")
	} else if code != 0 {
		problems = append(problems, fmt.Sprintf("caller exit %d", code))
	}
	for _, m := range []*sipp{a, b, c} {
		code, ok := m.wait(20 * time.Second)
		switch {
		case !ok:
			problems = append(problems, "member "+m.spec.name+" did not finish")
		case code != 0:
			problems = append(problems, fmt.Sprintf("member %s exit %d", m.spec.name, code))
		}
	}
	okCalls, failed := sippCounts(caller.proc.out)
	lines := 0
	answered := 0
	deadline := time.Now().Add(5 * time.Second)
	for {
		ls := nonEmptyLines(d.cdr)
		lines, answered = len(ls), 0
		for _, l := range ls {
			if strings.Contains(l, `"outcome":"answered"`) {
				answered++
			}
		}
		if lines >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if lines != n || answered != n {
		problems = append(problems, fmt.Sprintf("CDR %d lines, %d answered, want %d", lines, answered, n))
	}
	detail := fmt.Sprintf("caller %s ok / %s failed, %d calls in %v", okCalls, failed, n, took.Round(100*ms))
	if len(problems) > 0 {
		detail += "; " + strings.Join(problems, "; ")
		if keepLogs {
			detail += " (logs in " + dir + ")"
		}
		return false, detail
	}
	return true, detail
}
