package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// describe is the machine and the versions, for the results file.
func (e *env) describe() map[string]string {
	d := map[string]string{
		"host":      e.host,
		"kernel":    strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		"cpu":       cpuModel(),
		"cpus":      fmt.Sprint(runtime.NumCPU()),
		"go":        runtime.Version(),
		"ringroute": e.rrVersion,
		"kamailio":  e.kamVersion,
		"sipp":      e.sippVersion,
		"rtpengine": e.rtpeVersion,
		"loadavg":   loadavg(),
		"commit":    strings.TrimSpace(output(e.root, "git", "describe", "--always", "--dirty")),
		"pinning":   fmt.Sprintf("SUT on CPU %d (taskset; ringroute runs with GOMAXPROCS=1); SIPp caller, members, the bench and its wire tap on CPU %d", cpuSUT, cpuGen),
		"params": fmt.Sprintf("steps of %v, talk time %v, pass: no failed call and INVITE→200 p95 ≤ ring time + %v; rates %v; refine %v",
			e.o.dur, e.o.hold, e.o.bound, e.o.rates, e.o.refine),
	}
	return d
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func output(dir string, argv ...string) string {
	c := exec.Command(argv[0], argv[1:]...)
	c.Dir = dir
	b, _ := c.Output()
	return string(b)
}

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// table is rows of cells; the first row is the header.
type table [][]string

func (t table) markdown() string {
	var b strings.Builder
	for i, r := range t {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
		if i == 0 {
			seps := make([]string, len(r))
			for j := range seps {
				seps[j] = "---"
			}
			b.WriteString("|" + strings.Join(seps, "|") + "|\n")
		}
	}
	return b.String()
}

func (t table) plain() string {
	w := map[int]int{}
	for _, r := range t {
		for j, c := range r {
			w[j] = max(w[j], len([]rune(c)))
		}
	}
	var b strings.Builder
	for i, r := range t {
		for j, c := range r {
			pad := w[j] - len([]rune(c))
			if j > 0 {
				b.WriteString("  ")
			}
			if j == 0 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString(strings.Repeat(" ", pad) + c)
			}
		}
		b.WriteString("\n")
		if i == 0 {
			total := 0
			for j := range r {
				total += w[j] + 2
			}
			b.WriteString(strings.Repeat("-", total-2) + "\n")
		}
	}
	return b.String()
}

func ratio(a, b float64) string {
	if b == 0 || a == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func ratio3(a, b pct) string {
	return ratio(a.P50, b.P50) + "/" + ratio(a.P95, b.P95) + "/" + ratio(a.P99, b.P99)
}

func mib(kib int) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

// summaryTable is the side-by-side table: per group and figure, each SUT
// and ringroute/Kamailio.
func summaryTable(run *fullRun, plain bool) string {
	head := []string{"group", "figure"}
	head = append(head, run.suts...)
	two := len(run.suts) == 2 && run.suts[0] == "ringroute" && run.suts[1] == "kamailio"
	if two {
		head = append(head, "ringroute/Kamailio")
	}
	t := table{head}
	for _, g := range run.Groups {
		name := g.Scenario + ", " + g.Media
		R := g.common(run.suts)
		var L int
		for _, s := range g.Latency {
			L = s.Rate
		}
		type fig struct {
			label string
			cell  func(s string) (string, float64, pct)
			tri   bool
		}
		step := func(s string, r int) *stepResult { return at(g.Ramps[s], r) }
		figs := []fig{
			{"knee (calls/s)", func(s string) (string, float64, pct) {
				k := knee(g.Ramps[s])
				if k.topped {
					return fmt.Sprintf("≥%d", k.rate), float64(k.rate), pct{}
				}
				return fmt.Sprint(k.rate), float64(k.rate), pct{}
			}, false},
			{fmt.Sprintf("CPU/call at %d/s (ms)", R), func(s string) (string, float64, pct) {
				if st := step(s, R); st != nil {
					return fmt.Sprintf("%.3f", st.CPUPerCall), st.CPUPerCall, pct{}
				}
				return "–", 0, pct{}
			}, false},
			{"CPU/call at own knee (ms)", func(s string) (string, float64, pct) {
				if k := knee(g.Ramps[s]); k.step != nil {
					return fmt.Sprintf("%.3f", k.step.CPUPerCall), k.step.CPUPerCall, pct{}
				}
				return "–", 0, pct{}
			}, false},
			{"SUT cores at own knee", func(s string) (string, float64, pct) {
				if k := knee(g.Ramps[s]); k.step != nil {
					return fmt.Sprintf("%.2f", k.step.SUTCores), k.step.SUTCores, pct{}
				}
				return "–", 0, pct{}
			}, false},
			{fmt.Sprintf("memory after %d/s (MiB)", R), func(s string) (string, float64, pct) {
				if st := step(s, R); st != nil {
					return mib(st.MemKiB), float64(st.MemKiB), pct{}
				}
				return "–", 0, pct{}
			}, false},
			{fmt.Sprintf("INVITE→180 p50/95/99 at %d/s (ms)", R), func(s string) (string, float64, pct) {
				if st := step(s, R); st != nil {
					return tri(st.R180, 0), 0, st.R180
				}
				return "–", 0, pct{}
			}, true},
			{fmt.Sprintf("INVITE→200 p50/95/99 at %d/s (ms)", R), func(s string) (string, float64, pct) {
				if st := step(s, R); st != nil {
					return tri(st.R200, 0), 0, st.R200
				}
				return "–", 0, pct{}
			}, true},
			{fmt.Sprintf("retransmissions at %d/s", R), func(s string) (string, float64, pct) {
				if st := step(s, R); st != nil {
					return fmt.Sprint(st.Retrans), float64(st.Retrans), pct{}
				}
				return "–", 0, pct{}
			}, false},
			{fmt.Sprintf("added setup p50/95/99 at %d/s (µs, tap)", L), func(s string) (string, float64, pct) {
				if st := g.Latency[s]; st != nil && st.Tap != nil && st.Tap.Calls > 0 {
					return tri(st.Tap.Added, 0), 0, st.Tap.Added
				}
				return "–", 0, pct{}
			}, true},
			{fmt.Sprintf("fork/answer p99 at %d/s (µs, tap)", L), func(s string) (string, float64, pct) {
				if st := g.Latency[s]; st != nil && st.Tap != nil && st.Tap.Calls > 0 {
					return fmt.Sprintf("%.0f/%.0f", st.Tap.Fork.P99, st.Tap.Answer.P99), 0, pct{}
				}
				return "–", 0, pct{}
			}, false},
			{fmt.Sprintf("sustained %.0f s at own knee", g.SustainSecs), func(s string) (string, float64, pct) {
				st := g.Sustained[s]
				if st == nil {
					return "–", 0, pct{}
				}
				res := "pass"
				if !st.Pass {
					res = "FAIL"
				}
				return fmt.Sprintf("%d/s %s, 200 p95 %.0f ms, %.0f MiB", st.Rate, res, st.R200.P95, float64(st.MemKiB)/1024), 0, pct{}
			}, false},
			{"first failing step", func(s string) (string, float64, pct) {
				k := knee(g.Ramps[s])
				if k.fail == nil {
					return "none", 0, pct{}
				}
				why := k.fail.Why
				if plain && len(why) > 60 {
					why = why[:60] + "…"
				}
				return fmt.Sprintf("%d/s: %s", k.fail.Rate, why), 0, pct{}
			}, false},
		}
		if len(g.Sustained) == 0 {
			kept := figs[:0]
			for _, f := range figs {
				if !strings.HasPrefix(f.label, "sustained") {
					kept = append(kept, f)
				}
			}
			figs = kept
		}
		for i, f := range figs {
			row := []string{"", f.label}
			if i == 0 {
				row[0] = name
			}
			var vals []float64
			var ps []pct
			for _, s := range run.suts {
				c, v, p := f.cell(s)
				row = append(row, c)
				vals, ps = append(vals, v), append(ps, p)
			}
			if two {
				switch {
				case f.tri:
					row = append(row, ratio3(ps[0], ps[1]))
				case f.label == "first failing step" || strings.HasPrefix(f.label, "fork/answer") || strings.HasPrefix(f.label, "sustained"):
					row = append(row, "")
				default:
					row = append(row, ratio(vals[0], vals[1]))
				}
			}
			t = append(t, row)
		}
	}
	if plain {
		return t.plain()
	}
	return t.markdown()
}

// stepTable lists every step of a ramp.
func stepTable(steps []*stepResult) string {
	t := table{{"step", "rate", "placed/s", "calls", "ok", "failed", "member failed", "retrans",
		"180 p50/95/99 ms", "200 p50/95/99 ms", "CPU ms/call", "SUT cores", "SIPp cores", "other cores", "memory MiB", "UDP drops", "stall ms", "result"}}
	for _, s := range steps {
		res := "pass"
		if !s.Pass {
			res = "FAIL: " + s.Why
		}
		if len(s.Attempts) > 0 {
			res += fmt.Sprintf(" (try %d; earlier: %s)", len(s.Attempts)+1, strings.Join(s.Attempts, "; "))
		}
		t = append(t, []string{s.Label, fmt.Sprint(s.Rate), fmt.Sprintf("%.0f", s.Placed), fmt.Sprint(s.Calls), fmt.Sprint(s.OK),
			fmt.Sprint(s.Failed), fmt.Sprint(s.MemberFailed), fmt.Sprint(s.Retrans), tri(s.R180, 0), tri(s.R200, 0),
			fmt.Sprintf("%.3f", s.CPUPerCall), fmt.Sprintf("%.2f", s.SUTCores), fmt.Sprintf("%.2f", s.GenCores),
			fmt.Sprintf("%.2f", s.OtherCores), mib(s.MemKiB), fmt.Sprint(s.UDPDrops), fmt.Sprintf("%.0f", s.stallMs()), res})
	}
	return t.markdown()
}

func renderFull(e *env, run *fullRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# ringroute vs Kamailio: SIP call rate (`make bench`)\n\n")
	fmt.Fprintf(&b, "Run %s, took %v. Written by `go run ./bench/sip` (how it works: the doc comment of bench/sip/main.go).\n\n",
		run.Started.Format(time.RFC3339), run.Finished.Sub(run.Started).Round(time.Second))
	b.WriteString("| | |\n|---|---|\n")
	for _, k := range []string{"host", "cpu", "cpus", "kernel", "go", "commit", "ringroute", "kamailio", "sipp", "rtpengine", "loadavg", "pinning", "params"} {
		fmt.Fprintf(&b, "| %s | %s |\n", k, strings.ReplaceAll(run.Env[k], "|", "/"))
	}
	b.WriteString("\n## Summary\n\n")
	b.WriteString("The ramps are interleaved: at each rate one SUT's step right after the other's, so the machine's drift over the run touches both alike. ")
	b.WriteString("Ratios are ringroute/Kamailio: above 1 means ringroute's figure is higher (better for the knee, worse for CPU, memory and latency). ")
	b.WriteString("Figures \"at N/s\" compare both at the highest rate both passed. The added setup latency is INVITE→200 at the caller minus the answering member's own INVITE→200 (and minus 1000 ms of earlier attempts in the linear group), from the wire tap, in a step at 80% of ringroute's knee.\n\n")
	b.WriteString(summaryTable(run, false))
	if bl := run.Baseline; bl != nil {
		fmt.Fprintf(&b, "\nLoad generator floor (SIPp caller → member 1 directly, %d/s): INVITE→180 %s ms, INVITE→200 p50/95/99 %s ms, %d/%d calls ok, SIPp %.2f cores. SIPp's timers tick in 4 ms steps, which is why the tap measures the added latency.\n",
			bl.Rate, tri(bl.R180, 0), tri(bl.R200, 0), bl.OK, bl.Calls, bl.GenCores)
	}
	for _, g := range run.Groups {
		fmt.Fprintf(&b, "\n## %s group, %s media\n", g.Scenario, g.Media)
		for _, s := range run.suts {
			fmt.Fprintf(&b, "\n### %s\n\n", s)
			b.WriteString(stepTable(g.Ramps[s]))
			var reasons []string
			for _, st := range g.Ramps[s] {
				if !st.Pass && len(st.Reasons) > 0 {
					reasons = append(reasons, fmt.Sprintf("- %d/s: %s", st.Rate, strings.Join(first(st.Reasons, 6), "; ")))
				}
			}
			if len(reasons) > 0 {
				b.WriteString("\nWhy steps failed (SIPp's counters and error logs):\n\n" + strings.Join(reasons, "\n") + "\n")
			}
		}
		if len(g.Latency) > 0 {
			t := table{{"SUT", "rate", "calls (tap)", "added p50/95/99 µs", "fork p50/99 µs", "answer p50/99 µs", "member ring p50 ms", "INVITE→180 p50/99 µs", "tap drops", "CPU ms/call", "result"}}
			for _, s := range run.suts {
				st := g.Latency[s]
				if st == nil || st.Tap == nil {
					continue
				}
				tp := st.Tap
				res := "pass"
				if !st.Pass {
					res = "FAIL: " + st.Why
				}
				t = append(t, []string{s, fmt.Sprint(st.Rate), fmt.Sprintf("%d of %d", tp.Calls, st.Calls), tri(tp.Added, 0),
					fmt.Sprintf("%.0f/%.0f", tp.Fork.P50, tp.Fork.P99), fmt.Sprintf("%.0f/%.0f", tp.Answer.P50, tp.Answer.P99),
					fmt.Sprintf("%.1f", tp.Ring.P50/1000), fmt.Sprintf("%.0f/%.0f", tp.R180.P50, tp.R180.P99), fmt.Sprint(tp.Drops),
					fmt.Sprintf("%.3f", st.CPUPerCall), res})
			}
			b.WriteString("\n### Setup latency from the wire (80% of ringroute's knee)\n\n" + t.markdown())
		}
	}
	return b.String()
}

func first(v []string, n int) []string {
	if len(v) > n {
		return v[:n]
	}
	return v
}
