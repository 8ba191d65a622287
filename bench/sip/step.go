package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The bench pins the system under test to one core and every load
// process (the SIPp caller and members, the bench itself, perf) to the
// other.
const (
	cpuSUT = 0
	cpuGen = 1
)

// stepSpec is one load level against one system under test.
type stepSpec struct {
	sut   string
	sc    *scenario
	media string
	rate  int
	dur   time.Duration
	tap   bool
	label string // ramp, refine, latency, quick
	try   int    // 0, then 1, 2 for the retries

	pprof, allocs, perf string // profiles to take during the step
	heap                string // the live heap at the end of the step
	trace               string // a runtime trace of the step
}

// stepResult is everything measured in one step.
type stepResult struct {
	SUT      string  `json:"sut"`
	Scenario string  `json:"scenario"`
	Media    string  `json:"media"`
	Label    string  `json:"label"`
	Rate     int     `json:"rate"`
	Seconds  float64 `json:"seconds"`
	Placed   float64 `json:"placed_per_s"` // the rate SIPp really placed calls at

	Calls        int `json:"calls"`  // the caller's calls
	OK           int `json:"ok"`     // ... that succeeded
	Failed       int `json:"failed"` // ... that failed
	MemberFailed int `json:"member_failed"`
	Retrans      int `json:"retransmissions"` // sent by the caller and the members

	R180 pct `json:"invite_180_ms"` // SIPp's timers (4 ms steps)
	R200 pct `json:"invite_200_ms"`

	Tap *tapResult `json:"tap,omitempty"` // µs, from the wire

	SUTCPU     float64 `json:"sut_cpu_s"`
	CPUPerCall float64 `json:"cpu_ms_per_call"`
	SUTCores   float64 `json:"sut_cores"`
	GenCores   float64 `json:"gen_cores"`   // the SIPp processes
	OtherCores float64 `json:"other_cores"` // everything else on the machine
	UDPDrops   int     `json:"udp_drops"`   // RcvbufErrors of the whole machine during the step
	MemKiB     int     `json:"mem_kib"`
	MemHow     string  `json:"mem_how"`
	PeakKiB    int     `json:"peak_kib,omitempty"` // VmHWM (ringroute)

	Stalls   [2]stallStats `json:"stalls"`             // per core, see stallMon
	Attempts []string      `json:"attempts,omitempty"` // earlier tries of this step, disturbed by a stall

	Reasons []string `json:"reasons,omitempty"`
	Pass    bool     `json:"pass"`
	Why     string   `json:"why,omitempty"`
	Dir     string   `json:"dir"`
}

// member is one SIPp member of a step.
type member struct {
	name string
	port int
	file string
	args []string
	p    *proc
}

func (e *env) runStep(s stepSpec) (*stepResult, error) {
	name := fmt.Sprintf("%s-%s-%s-%d", s.sut, s.sc.name, s.media, s.rate)
	if s.label != "" && s.label != "ramp" {
		name += "-" + s.label
	}
	if s.try > 0 {
		name += fmt.Sprintf("-try%d", s.try+1)
	}
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	n := max(1, int(float64(s.rate)*s.dur.Seconds()))
	res := &stepResult{SUT: s.sut, Scenario: s.sc.name, Media: s.media, Label: s.label, Rate: s.rate, Dir: dir}

	x, err := startSUT(e, s.sut, dir, sutOpts{media: s.media, sc: s.sc})
	if err != nil {
		return nil, err
	}
	defer x.stop()

	answerTimeout := 32000
	ans, err := writeScenario(dir, "answer", map[string]any{"ByeTimeoutMs": 32000 + int(e.o.hold/time.Millisecond)})
	if err != nil {
		return nil, err
	}
	ring, err := writeScenario(dir, "ring", map[string]any{"CancelTimeoutMs": 32000})
	if err != nil {
		return nil, err
	}
	callerXML, err := writeScenario(dir, "caller", map[string]any{"AnswerTimeoutMs": answerTimeout})
	if err != nil {
		return nil, err
	}
	p := e.ports
	members := []*member{
		{name: "m1", port: p.m1, file: ans, args: []string{"-d", strconv.Itoa(int(answerDelay / time.Millisecond))}},
		{name: "m2", port: p.m2, file: ring},
		{name: "m3", port: p.m3, file: ring},
	}
	for _, m := range members {
		args := append(sippCommon(m.name, dir, m.port), "-sf", m.file, "-m", strconv.Itoa(n))
		args = append(args, m.args...)
		if m.p, err = start(m.name, cpuGen, dir, nil, args...); err != nil {
			return nil, err
		}
		defer m.p.stop(time.Second)
	}
	if err := waitBound(members); err != nil {
		return nil, err
	}

	var tp *tap
	if s.tap && tapAvailable {
		if tp, err = startTap(p.caller, x.port, p.m1); err != nil {
			fmt.Fprintf(os.Stderr, "bench/sip: no wire tap (%v); added latency not measured\n", err)
			tp = nil
		}
	}

	args := append(sippCommon("caller", dir, p.caller), "-sf", callerXML, "-s", s.sc.ext,
		fmt.Sprintf("127.0.0.1:%d", x.port), "-r", strconv.Itoa(s.rate), "-m", strconv.Itoa(n),
		"-l", strconv.Itoa(s.rate*10+1000), "-d", strconv.Itoa(int(e.o.hold/time.Millisecond)),
		"-trace_rtt", "-rtt_freq", "100",
		"-timeout", strconv.Itoa(int(s.dur.Seconds())+90)+"s", "-timeout_error")

	mon := startStallMon()
	t0 := time.Now()
	c0, busy0, self0, drops0 := treeCPU(x.roots()), machineBusy(), cpuSeconds(os.Getpid()), udpRcvbufErrors()
	caller, err := start("caller", cpuGen, dir, nil, args...)
	if err != nil {
		mon.halt()
		return nil, err
	}
	defer caller.stop(time.Second)
	// The SUT's cores while calls are being placed (the whole step also
	// holds the tail of the last calls and, when calls fail, their
	// timeouts).
	placing := make(chan float64, 1)
	go func() {
		time.Sleep(s.dur)
		placing <- treeCPU(x.roots())
	}()

	profDone := e.startProfiles(s, x, dir)

	if !caller.wait(s.dur + 100*time.Second) {
		caller.stop(time.Second)
	}
	// Each member ends by itself after its n calls (-m); wait for the
	// stragglers a little, then measure.
	deadline := time.Now().Add(3*time.Second + s.sc.ring)
	for _, m := range members {
		m.p.wait(time.Until(deadline))
	}
	t1 := time.Now()
	c1, busy1, self1, drops1 := treeCPU(x.roots()), machineBusy(), cpuSeconds(os.Getpid()), udpRcvbufErrors()
	res.Stalls = mon.halt()
	res.UDPDrops = drops1 - drops0
	res.MemKiB, res.MemHow = memKiB(x.roots())
	if x.kind == "ringroute" {
		res.PeakKiB = statusKiB(x.main.pid(), "VmHWM")
	}
	for _, m := range members {
		m.p.stop(time.Second)
	}
	profErr := profDone()
	if tp != nil {
		tr, err := tp.halt(s.sc.before)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench/sip: wire tap: %v\n", err)
		}
		res.Tap = &tr
	}
	if !x.alive() {
		res.Reasons = append(res.Reasons, s.sut+" exited during the step: "+tail(x.main.log, 3))
	}
	x.stop()

	wall := t1.Sub(t0).Seconds()
	res.Seconds = wall
	res.SUTCPU = c1 - c0
	select {
	case cm := <-placing:
		res.SUTCores = (cm - c0) / s.dur.Seconds()
	default:
		res.SUTCores = res.SUTCPU / wall
	}
	gen := caller.cpu()
	for _, m := range members {
		gen += m.p.cpu()
	}
	res.GenCores = gen / wall
	res.OtherCores = max(0, (busy1-busy0)-res.SUTCPU-gen-(self1-self0)) / wall

	// The caller's totals, then the members'.
	st, err := readStats(filepath.Join(dir, "caller.csv"))
	if err != nil {
		return nil, fmt.Errorf("caller: %w; log:\n%s", err, tail(caller.log, 10))
	}
	res.Calls, res.OK, res.Failed = st.n("OutgoingCall"), st.n("SuccessfulCall"), st.n("FailedCall")
	res.Retrans = st.n("Retransmissions")
	if res.Calls > 0 {
		res.CPUPerCall = 1000 * res.SUTCPU / float64(res.Calls)
	}
	if f := st.failures(); len(f) > 0 {
		res.Reasons = append(res.Reasons, "caller: "+strings.Join(f, ", "))
	}
	for _, r := range errorReasons(filepath.Join(dir, "caller.err"), 3) {
		res.Reasons = append(res.Reasons, "caller: "+r)
	}
	for _, m := range members {
		ms, err := readStats(filepath.Join(dir, m.name+".csv"))
		if err != nil {
			res.Reasons = append(res.Reasons, m.name+": no statistics")
			continue
		}
		res.MemberFailed += ms.n("FailedCall")
		res.Retrans += ms.n("Retransmissions")
		if f := ms.failures(); len(f) > 0 {
			res.Reasons = append(res.Reasons, m.name+": "+strings.Join(f, ", "))
		}
		for _, r := range errorReasons(filepath.Join(dir, m.name+".err"), 2) {
			res.Reasons = append(res.Reasons, m.name+": "+r)
		}
	}
	if rt, err := readRTT(dir); err == nil {
		res.R180, res.R200 = percentiles(rt.ms["invite_180"]), percentiles(rt.ms["invite_200"])
		res.Placed = rt.rate("placed")
	}
	if profErr != nil {
		res.Reasons = append(res.Reasons, "profile: "+profErr.Error())
	}
	res.judge(e, s, n)
	return res, nil
}

// stallMs is the longest stall on either core during the step.
func (r *stepResult) stallMs() float64 { return max(r.Stalls[0].MaxMs, r.Stalls[1].MaxMs) }

// runStepRetry runs a step again (up to -retries times) when it failed
// while a core stalled for -stall or longer: the failure then says more
// about the machine than about the SUT. The attempts are kept.
func (e *env) runStepRetry(s stepSpec) (*stepResult, error) {
	var earlier []string
	for try := 0; ; try++ {
		s.try = try
		r, err := e.runStep(s)
		if err != nil {
			return nil, err
		}
		r.Attempts = earlier
		stall := r.stallMs()
		if r.Pass || stall < float64(e.o.stall/time.Millisecond) || try >= e.o.retries {
			return r, nil
		}
		note := fmt.Sprintf("attempt %d: %s; a core stalled %.0f ms", try+1, r.Why, stall)
		fmt.Fprintln(os.Stderr, "  (retrying) "+quickLine(r))
		earlier = append(earlier, note)
	}
}

// judge decides whether the step passed: every call succeeded on every
// side, SIPp placed calls at 95% of the rate or more, and INVITE→200 p95
// is within the scenario's ring time plus -bound.
func (r *stepResult) judge(e *env, s stepSpec, n int) {
	var why []string
	if r.Failed > 0 || r.OK < n {
		why = append(why, fmt.Sprintf("%d of %d calls failed", n-r.OK, n))
	}
	if r.MemberFailed > 0 {
		why = append(why, fmt.Sprintf("%d member calls failed", r.MemberFailed))
	}
	if r.Placed > 0 && r.Placed < 0.95*float64(s.rate) && n > 200 {
		why = append(why, fmt.Sprintf("SIPp placed only %.0f calls/s", r.Placed))
	}
	limit := float64((s.sc.ring + e.o.bound) / time.Millisecond)
	if r.R200.N == 0 {
		why = append(why, "no INVITE→200 sample")
	} else if r.R200.P95 > limit {
		why = append(why, fmt.Sprintf("INVITE→200 p95 %.0f ms > %.0f ms", r.R200.P95, limit))
	}
	r.Pass = len(why) == 0
	r.Why = strings.Join(why, "; ")
}

// waitBound waits until every member's port is taken (SIPp is listening).
func waitBound(ms []*member) error {
	deadline := time.Now().Add(5 * time.Second)
	for _, m := range ms {
		for portFree(m.port) {
			if m.p.exited() {
				return fmt.Errorf("SIPp %s exited: %s", m.name, tail(m.p.log, 5))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("SIPp %s not listening on %d", m.name, m.port)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// cpu is the user+system time of a process that has ended.
func (p *proc) cpu() float64 {
	if !p.exited() || p.cmd.ProcessState == nil {
		return cpuSeconds(p.pid())
	}
	return (p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()).Seconds()
}

// startProfiles starts the profiles a step asked for and returns a
// function that waits for them (call it once the caller is done).
//
//	-pprof FILE   a CPU profile from ringroute's admin listener
//	              (/debug/pprof/profile), over the step less a second
//	-allocs FILE  the allocations made during the same window
//	              (/debug/pprof/allocs?seconds=N, a delta profile)
//	-heap FILE    the live heap at the end of that window (after a GC)
//	-trace FILE   a runtime trace of that window (/debug/pprof/trace):
//	              where a slow setup waited, which a CPU profile cannot say
//	-perf FILE    perf record -g of the SUT's processes (any SUT)
func (e *env) startProfiles(s stepSpec, x *sut, dir string) func() error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	secs := max(1, int(s.dur.Seconds())-1)
	fetch := func(path, file string) {
		defer wg.Done()
		time.Sleep(500 * time.Millisecond)
		url := "http://" + x.admin + path + "?seconds=" + strconv.Itoa(secs)
		err := httpToFile(url, file, time.Duration(secs+30)*time.Second)
		if err != nil {
			mu.Lock()
			errs = append(errs, err.Error())
			mu.Unlock()
		}
	}
	if x.kind == "ringroute" {
		if s.pprof != "" {
			wg.Add(1)
			go fetch("/debug/pprof/profile", s.pprof)
		}
		if s.allocs != "" {
			wg.Add(1)
			go fetch("/debug/pprof/allocs", s.allocs)
		}
		if s.trace != "" {
			wg.Add(1)
			go fetch("/debug/pprof/trace", s.trace)
		}
		if s.heap != "" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(secs)*time.Second + 500*time.Millisecond)
				if err := httpToFile("http://"+x.admin+"/debug/pprof/heap?gc=1", s.heap, 30*time.Second); err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
				}
			}()
		}
	} else if s.pprof != "" || s.allocs != "" || s.trace != "" {
		errs = append(errs, "-pprof, -allocs and -trace need ringroute; use -perf for "+x.kind)
	}
	var perf *proc
	if s.perf != "" {
		var pids []string
		for _, pid := range treePIDs(x.roots()) {
			pids = append(pids, strconv.Itoa(pid))
		}
		var err error
		perf, err = start("perf", cpuGen, dir, nil, "perf", "record", "-F", "999", "-g", "-p", strings.Join(pids, ","), "-o", s.perf)
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	return func() error {
		if perf != nil {
			_ = perf.cmd.Process.Signal(syscall.SIGINT)
			if !perf.wait(20 * time.Second) {
				perf.stop(time.Second)
			}
		}
		wg.Wait()
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}
}

func httpToFile(url, file string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("GET %s: %s %s (ringroute's admin listener serves /debug/pprof/; see bench/sip/main.go)", url, resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
