package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// groupRun is one (scenario, media) pair of the full run: a ramp per SUT
// and the latency steps.
type groupRun struct {
	Scenario string                   `json:"scenario"`
	Media    string                   `json:"media"`
	Ramps    map[string][]*stepResult `json:"ramps"`
	Latency  map[string]*stepResult   `json:"latency,omitempty"` // at 80% of ringroute's knee, wire tap on
	// Sustained is a long step at each SUT's own knee (parallel, direct
	// only): the ramp's short steps do not show state that builds up for
	// longer than a step, like transactions lingering 32 s did.
	Sustained   map[string]*stepResult `json:"sustained,omitempty"`
	SustainSecs float64                `json:"sustain_s,omitempty"`
	sc          *scenario
}

// fullRun is what `make bench` measured.
type fullRun struct {
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Env      map[string]string `json:"env"`
	Groups   []*groupRun       `json:"groups"`
	Baseline *stepResult       `json:"baseline,omitempty"` // SIPp calling member 1 directly
	suts     []string
}

func runFull(e *env) error {
	suts, err := pick(e.o.sut, "sut", []string{"ringroute", "kamailio"})
	if err != nil {
		return err
	}
	scs, err := pick(e.o.scenario, "scenario", []string{"parallel", "linear"})
	if err != nil {
		return err
	}
	medias, err := pick(e.o.media, "media", []string{"direct", "relay"})
	if err != nil {
		return err
	}
	out, err := e.resultsPath("")
	if err != nil {
		return err
	}
	run := &fullRun{Started: time.Now(), Env: e.describe(), suts: suts}
	fmt.Fprintf(os.Stderr, "bench/sip: %s; SUT on CPU %d, SIPp and the bench on CPU %d; load average %s\n",
		strings.Join(suts, " vs "), cpuSUT, cpuGen, loadavg())
	for _, scn := range scs {
		for _, media := range medias {
			g := &groupRun{Scenario: scn, Media: media, sc: scenarios[scn], Ramps: map[string][]*stepResult{},
				Latency: map[string]*stepResult{}, Sustained: map[string]*stepResult{}}
			run.Groups = append(run.Groups, g)
			ramps, err := e.ramp(suts, g.sc, media)
			if err != nil {
				return err
			}
			g.Ramps = ramps
			// The latency target: added setup latency at 80% of
			// ringroute's knee, for both, with the wire tap.
			base := knee(g.Ramps["ringroute"])
			if base.rate == 0 {
				base = knee(g.Ramps[suts[0]])
			}
			if r := roundRate(base.rate * 8 / 10); r > 0 {
				for _, s := range suts {
					res, err := e.runStepRetry(stepSpec{sut: s, sc: g.sc, media: media, rate: r, dur: e.o.dur, tap: true, label: "latency"})
					if err != nil {
						return err
					}
					progress(res)
					g.Latency[s] = res
				}
			}
			if scn == "parallel" && media == "direct" && e.o.sustain > 0 {
				for _, s := range suts {
					k := knee(g.Ramps[s])
					if k.rate == 0 {
						continue
					}
					res, err := e.runStepRetry(stepSpec{sut: s, sc: g.sc, media: media, rate: k.rate, dur: e.o.sustain, label: "sustained"})
					if err != nil {
						return err
					}
					progress(res)
					g.Sustained[s] = res
					g.SustainSecs = e.o.sustain.Seconds()
				}
			}
		}
	}
	if b, err := e.baseline(); err == nil {
		run.Baseline = b
	} else {
		fmt.Fprintln(os.Stderr, "bench/sip: baseline:", err)
	}
	run.Finished = time.Now()
	md := renderFull(e, run)
	fmt.Println(summaryTable(run, true))
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		return err
	}
	js := strings.TrimSuffix(out, ".md") + ".json"
	if err := writeJSON(js, run); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench/sip: results in %s (every step: %s); took %v\n", out, js, run.Finished.Sub(run.Started).Round(time.Second))
	return nil
}

// ramp runs the rates in order, each SUT's step at a rate right after the
// other's, until a SUT fails a step; then (with -refine) the midpoint
// between its last pass and that failure. Interleaved, the two ramps see
// the same minutes of the machine: a VM whose speed drifts over a run
// (ours moves knees by hundreds of calls/s) skews both alike, not the
// ratio.
func (e *env) ramp(suts []string, sc *scenario, media string) (map[string][]*stepResult, error) {
	steps := map[string][]*stepResult{}
	last, fail := map[string]int{}, map[string]int{}
	step := func(s string, r int, label string) (*stepResult, error) {
		res, err := e.runStepRetry(stepSpec{sut: s, sc: sc, media: media, rate: r, dur: e.o.dur, label: label})
		if err != nil {
			return nil, err
		}
		progress(res)
		steps[s] = append(steps[s], res)
		return res, nil
	}
	for _, r := range e.o.rates {
		running := false
		for _, s := range suts {
			if fail[s] > 0 {
				continue
			}
			running = true
			res, err := step(s, r, "ramp")
			if err != nil {
				return steps, err
			}
			if res.Pass {
				last[s] = r
			} else {
				fail[s] = r
			}
		}
		if !running {
			break
		}
	}
	for _, s := range suts {
		if !e.o.refine || fail[s] == 0 {
			continue
		}
		mid := roundRate((last[s] + fail[s]) / 2)
		if last[s] == 0 {
			mid = roundRate(fail[s] / 2)
		}
		if mid > last[s] && mid < fail[s] {
			if _, err := step(s, mid, "refine"); err != nil {
				return steps, err
			}
		}
	}
	return steps, nil
}

// roundRate rounds down to a multiple of 50 (10 below 100).
func roundRate(r int) int {
	if r >= 100 {
		return r / 50 * 50
	}
	return r / 10 * 10
}

type kneeInfo struct {
	rate   int
	step   *stepResult // the step at the knee
	fail   *stepResult // the first failing step above it
	topped bool        // the ramp ran out of rates without a failure
}

// knee is the highest rate that passed with every lower rate passing too.
func knee(steps []*stepResult) kneeInfo {
	var k kneeInfo
	var fails []*stepResult
	for _, s := range steps {
		if !s.Pass {
			fails = append(fails, s)
		}
	}
	for _, s := range steps {
		if !s.Pass {
			continue
		}
		ok := true
		for _, f := range fails {
			if f.Rate < s.Rate {
				ok = false
			}
		}
		if ok && s.Rate > k.rate {
			k.rate, k.step = s.Rate, s
		}
	}
	for _, f := range fails {
		if f.Rate > k.rate && (k.fail == nil || f.Rate < k.fail.Rate) {
			k.fail = f
		}
	}
	k.topped = len(fails) == 0 && len(steps) > 0
	return k
}

// at returns the step of a ramp at rate r.
func at(steps []*stepResult, r int) *stepResult {
	for _, s := range steps {
		if s.Rate == r {
			return s
		}
	}
	return nil
}

// common is the highest rate every SUT passed in this group.
func (g *groupRun) common(suts []string) int {
	c := -1
	for _, s := range suts {
		k := knee(g.Ramps[s]).rate
		if c < 0 || k < c {
			c = k
		}
	}
	return max(c, 0)
}

func progress(r *stepResult) {
	fmt.Fprintln(os.Stderr, "  "+quickLine(r))
	if !r.Pass {
		for i, why := range r.Reasons {
			if i == 4 {
				break
			}
			fmt.Fprintln(os.Stderr, "      "+why)
		}
	}
}

// baseline is SIPp calling member 1 directly: the latency floor of the
// load generator itself (its 200 ms pause and its 4 ms clock).
func (e *env) baseline() (*stepResult, error) {
	sc := &scenario{name: "sipp-direct", ext: "600", ring: answerDelay}
	dir := e.work + "/baseline"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rate, dur := 400, e.o.dur
	n := int(float64(rate) * dur.Seconds())
	ans, err := writeScenario(dir, "answer", map[string]any{"ByeTimeoutMs": 32000})
	if err != nil {
		return nil, err
	}
	callerXML, err := writeScenario(dir, "caller", map[string]any{"AnswerTimeoutMs": 32000})
	if err != nil {
		return nil, err
	}
	m := &member{name: "m1", port: e.ports.m1}
	m.p, err = start("m1", cpuGen, dir, nil, append(sippCommon("m1", dir, e.ports.m1), "-sf", ans, "-m", fmt.Sprint(n), "-d", "200")...)
	if err != nil {
		return nil, err
	}
	defer m.p.stop(time.Second)
	if err := waitBound([]*member{m}); err != nil {
		return nil, err
	}
	args := append(sippCommon("caller", dir, e.ports.caller), "-sf", callerXML, "-s", "600",
		fmt.Sprintf("127.0.0.1:%d", e.ports.m1), "-r", fmt.Sprint(rate), "-m", fmt.Sprint(n), "-l", "10000",
		"-d", fmt.Sprint(int(e.o.hold/time.Millisecond)), "-trace_rtt", "-rtt_freq", "100", "-timeout", "120s")
	t0 := time.Now()
	c, err := start("caller", cpuGen, dir, nil, args...)
	if err != nil {
		return nil, err
	}
	defer c.stop(time.Second)
	c.wait(dur + 60*time.Second)
	m.p.wait(3 * time.Second)
	r := &stepResult{SUT: "sipp", Scenario: sc.name, Media: "direct", Label: "baseline", Rate: rate, Dir: dir, Seconds: time.Since(t0).Seconds()}
	st, err := readStats(dir + "/caller.csv")
	if err != nil {
		return nil, err
	}
	r.Calls, r.OK, r.Failed = st.n("OutgoingCall"), st.n("SuccessfulCall"), st.n("FailedCall")
	r.GenCores = (c.cpu() + m.p.cpu()) / r.Seconds
	if rt, err := readRTT(dir); err == nil {
		r.R180, r.R200 = percentiles(rt.ms["invite_180"]), percentiles(rt.ms["invite_200"])
		r.Placed = rt.rate("placed")
	}
	r.judge(e, stepSpec{sc: sc, rate: rate}, n)
	return r, nil
}
