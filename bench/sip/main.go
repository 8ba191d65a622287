// Command sip benchmarks ringroute's call handling against a Kamailio
// stateful proxy forking the same ring group, in the same run, on
// loopback (issue 8, parts 1 and 2).
//
//	go run ./bench/sip                       # the ramp `make bench` runs (~9 min)
//	go run ./bench/sip -sut ringroute -scenario parallel -rate 800 -duration 10s
//	                                         # one step, one line (`make bench-quick`)
//	go run ./bench/sip -scale                # scale figures (`make bench-scale`)
//
// # What runs
//
// Three SIPp members on 127.0.0.1 (-ports base +71..73): member 1 answers
// 200 ms after the INVITE, members 2 and 3 ring until they are cancelled
// (scenarios/ here, written out at run time). The system under test sits
// between them and a SIPp caller (base +80) that places calls at a fixed
// rate, talks -hold, and hangs up:
//
//   - ringroute (built from this tree with go build, or -ringroute BIN),
//     config written by the bench: trunk caller, log level warn, CDRs on,
//     media direct or relay.
//   - Kamailio (Debian package `kamailio`, installed if missing), config
//     written by the bench: a record-routing stateful proxy (tm, sl, rr)
//     that forks with append_branch() (parallel) or a failure_route chain
//     with a 500 ms fr_inv_timer per attempt (linear). With media relay,
//     Kamailio drives rtpengine (Debian `rtpengine-daemon`, userspace
//     only) with rtpengine_offer/answer/delete, and rtpengine's CPU and
//     memory count as the SUT's.
//
// Groups: parallel (all three at once; INVITE→200 is 200 ms of ring time)
// and linear (member 2 for 500 ms, member 3 for 500 ms, then member 1:
// 1200 ms of ring time).
//
// Pinning: the SUT (ringroute; Kamailio and its workers; rtpengine) on
// CPU 0 with taskset, so ringroute runs with GOMAXPROCS=1; every SIPp, the
// bench itself (its wire tap, /proc reads) and perf on CPU 1.
//
// # What is measured, per step
//
// Every step starts a fresh SUT and fresh members, places rate×duration
// calls and waits for all of them to end.
//
//   - calls, failed (SIPp's counters, with the reasons from its error
//     logs and the failure counters that moved), retransmissions (sent by
//     the caller and the members: SIPp counts what it resends);
//   - INVITE→180 and INVITE→200 p50/p95/p99 from -trace_rtt (every call's
//     response time, real percentiles, but in steps of the kernel tick:
//     4 ms on this kernel);
//   - added setup latency (-tap, and the latency step of the full run):
//     from a wire tap on loopback with kernel time stamps, per call,
//     INVITE→200 at the caller minus INVITE→200 at the answering member
//     minus the nominal time of earlier attempts (linear: 1000 ms), in µs;
//     split into fork (caller's INVITE → member's INVITE) and answer
//     (member's 200 → caller's 200);
//   - CPU per call of the SUT: utime+stime from /proc/PID/stat of the
//     SUT's processes (Kamailio: main and every worker; plus rtpengine)
//     over the step, divided by the calls placed; also its cores used, the
//     SIPp processes' cores, and everything else the machine did (other:
//     from /proc/stat, so a busy neighbour shows);
//   - memory of the SUT at the end of the step: VmRSS (ringroute; and
//     VmHWM, the peak), the sum of Pss over Kamailio's processes (they
//     share one shared-memory segment) plus rtpengine.
//
// A step passes when every call succeeded on every side, SIPp really
// placed 95% of the rate, and INVITE→200 p95 ≤ ring time + -bound (50 ms
// by default). The knee is the highest rate of the ramp whose step and
// every step below it passed; the ramp stops at the first failure and,
// with -refine, tries the midpoint once. Then both SUTs run one more step
// at 80% of ringroute's knee with the wire tap: the added setup latency
// of the target. Last, for the parallel direct group, each SUT
// holds its own knee for -sustain (30 s): short steps cannot show state
// that builds up for longer than a step. The table compares the two at
// the highest rate both passed.
//
// # Profiling (part 3)
//
// ringroute's admin listener serves Go's /debug/pprof/ (admin/admin.go),
// so -pprof FILE fetches a CPU profile of the step and -allocs FILE the
// allocations made during it, -heap FILE the live heap after a forced GC
// at its end (with -scale: while the calls ring); open them with `go tool pprof -http=:
// BIN FILE` (the step prints BIN, the binary that ran). -perf FILE runs
// `perf record -g` on the SUT's processes instead (works for Kamailio
// too; `perf report -i FILE`). -trace FILE takes a runtime trace of the
// step (`go tool trace FILE`): where a slow setup waited, which a CPU
// profile cannot say; that is how GC mark phases of a quarter second,
// with setups queued behind them, were found. If the pprof handlers ever
// leave the admin mux, -pprof fails with the HTTP status; -perf still
// works.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringroute/ringroute/bench/internal/pin"
)

type options struct {
	sut, scenario, media string
	rates                []int
	rate                 int
	dur, hold, bound     time.Duration
	refine, tap          bool
	retries              int
	stall                time.Duration
	out, ringroute, work string
	keep, install        bool
	portBase, nice       int
	pprof, allocs, perf  string
	trace                string
	sustain              time.Duration

	scale                          bool
	ringing, ringingRelay, regs    int
	users, holdRate, regRate       int
	mediaCalls                     string
	scaleSUTs                      string
	settle                         time.Duration
	skipRinging, skipRegs, skipRTP bool
	heap                           string
}

// env is one bench run: its options, scratch directory, ports, binaries.
type env struct {
	o     options
	root  string // the module's directory
	work  string
	ports ports
	rrBin string

	rrVersion, kamVersion, sippVersion, rtpeVersion, host string
}

func main() {
	var o options
	var rates string
	flag.StringVar(&o.sut, "sut", "", "ringroute, kamailio or both (default both; -rate needs one)")
	flag.StringVar(&o.scenario, "scenario", "", "parallel, linear or both (default both; -rate needs one)")
	flag.StringVar(&o.media, "media", "", "direct, relay or both (default both; -rate: direct)")
	flag.StringVar(&rates, "rates", "200,400,600,800,1000,1200,1600,2000,2500,3000,4000,5000", "the ramp: call rates (calls/s) in rising order")
	flag.IntVar(&o.rate, "rate", 0, "run one step at this rate and print one line (the optimizer's quick re-run)")
	flag.DurationVar(&o.dur, "duration", 4*time.Second, "how long each step places calls")
	flag.DurationVar(&o.sustain, "sustain", 30*time.Second, "full run: after the parallel direct ramp, hold each SUT's knee rate this long (0: skip)")
	flag.DurationVar(&o.hold, "hold", 500*time.Millisecond, "talk time of each call before the caller hangs up")
	flag.DurationVar(&o.bound, "bound", 50*time.Millisecond, "a step passes when INVITE→200 p95 ≤ ring time + bound")
	flag.BoolVar(&o.refine, "refine", true, "after the first failing step, try the midpoint once")
	flag.IntVar(&o.retries, "retries", 2, "run a failed step again up to this many times when a core stalled -stall or longer during it")
	flag.DurationVar(&o.stall, "stall", 50*time.Millisecond, "a step is disturbed when a core stalls this long (see stallMon)")
	flag.BoolVar(&o.tap, "tap", true, "with -rate: measure the added setup latency with the wire tap")
	flag.StringVar(&o.out, "out", "", "results file (.md; a .json with every step goes beside it); default bench/results/DATE-HOST[-scale].md")
	flag.StringVar(&o.ringroute, "ringroute", "", "use this ringroute binary instead of building ./cmd/ringroute")
	flag.StringVar(&o.work, "work", "", "scratch directory (default: a new one under $TMPDIR, removed unless -keep)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory (configs, SIPp logs and CSVs of every step)")
	flag.BoolVar(&o.install, "install", true, "apt-get install kamailio, rtpengine-daemon, sip-tester when missing")
	flag.IntVar(&o.nice, "nice", -20, "nice value of the SUT, SIPp and the bench (root only; 0: leave alone): a busy neighbour on the machine then barely disturbs a step")
	kcore := flag.String("kamailio-core", strings.Join(kamailioCore, ";"), "extra Kamailio core settings, ;-separated")
	flag.IntVar(&kamailioChildren, "kamailio-children", kamailioChildren, "Kamailio's UDP worker processes (children=)")
	flag.IntVar(&o.portBase, "ports", 35000, "port base: SUT base+60/62, members base+71..73, caller base+80, admin base+81, rtpengine ng base+222, relay media ports base+1000..base+20999")
	flag.StringVar(&o.pprof, "pprof", "", "with -rate: write a CPU profile of ringroute during the step here")
	flag.StringVar(&o.trace, "trace", "", "with -rate: write a runtime trace of ringroute during the step here (go tool trace)")
	flag.StringVar(&o.allocs, "allocs", "", "with -rate: write ringroute's allocations during the step here")
	flag.StringVar(&o.perf, "perf", "", "with -rate: perf record -g the SUT's processes into this file")

	flag.BoolVar(&o.scale, "scale", false, "scale figures: memory per ringing call and per registration, relay packets/s per core vs rtpengine")
	flag.IntVar(&o.ringing, "ringing", 10000, "-scale: concurrent ringing calls to hold (direct media)")
	flag.IntVar(&o.ringingRelay, "ringing-relay", 1500, "-scale: concurrent ringing calls to hold with relayed media (4 ports each; 0: skip)")
	flag.IntVar(&o.holdRate, "hold-rate", 500, "-scale: calls/s at which the ringing calls are placed")
	flag.IntVar(&o.regs, "regs", 100000, "-scale: registrations (contacts) to make")
	flag.IntVar(&o.users, "users", 10000, "-scale: registrar users they spread over (ringroute keeps 10 contacts per user)")
	flag.IntVar(&o.regRate, "reg-rate", 5000, "-scale: REGISTER rate cap (SIPp keeps at most 200 in flight, so the daemon sets the pace)")
	flag.StringVar(&o.mediaCalls, "media-calls", "100,500,1000", "-scale: relay load levels (concurrent calls), as bench/media -calls")
	flag.StringVar(&o.scaleSUTs, "scale-sut", "ringroute,kamailio", "-scale: who holds the ringing calls")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "-scale: how long after the last call or registration to sample memory again (finished SIP transactions linger 5 s, sip/timers.go)")
	flag.BoolVar(&o.skipRinging, "skip-ringing", false, "-scale: skip the ringing calls")
	flag.BoolVar(&o.skipRegs, "skip-regs", false, "-scale: skip the registrations")
	flag.BoolVar(&o.skipRTP, "skip-rtp", false, "-scale: skip the relay comparison")
	flag.StringVar(&o.heap, "heap", "", "with -rate: write ringroute's heap profile at the end of the step here; with -scale: while its direct-media calls ring")
	flag.Parse()

	kamailioCore = nil
	for _, c := range strings.Split(*kcore, ";") {
		if c = strings.TrimSpace(c); c != "" {
			kamailioCore = append(kamailioCore, c)
		}
	}
	for _, f := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			die(fmt.Errorf("bad -rates %q", rates))
		}
		o.rates = append(o.rates, n)
	}
	sort.Ints(o.rates)
	if runtime.NumCPU() < 2 {
		fmt.Fprintln(os.Stderr, "bench/sip: fewer than 2 CPUs; the SUT and the load share a core and the numbers mean little")
	}
	niceness = o.nice
	pin.Self(cpuGen, o.nice)

	e, err := setup(o)
	if err != nil {
		die(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nbench/sip: %v: stopping every process it started\n", s)
		stopAll()
		e.cleanup()
		os.Exit(130)
	}()

	switch {
	case o.scale:
		err = runScale(e)
	case o.rate > 0:
		err = runQuick(e)
	default:
		err = runFull(e)
	}
	stopAll()
	e.cleanup()
	if err != nil {
		die(err)
	}
}

func die(err error) {
	stopAll()
	fmt.Fprintln(os.Stderr, "bench/sip:", err)
	os.Exit(1)
}

// setup checks the ports, installs what is missing and builds ringroute.
func setup(o options) (*env, error) {
	e := &env{o: o, ports: newPorts(o.portBase)}
	e.host, _ = os.Hostname()
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m: %w (run from the ringroute module)", err)
	}
	e.root = strings.TrimSpace(string(root))
	for _, p := range e.ports.sip() {
		if !portFree(p) {
			return nil, fmt.Errorf("UDP port 127.0.0.1:%d is in use (another bench running? pick another -ports base)", p)
		}
	}
	need := map[string]string{"sipp": "sip-tester", "taskset": "util-linux"}
	if o.sut != "ringroute" || o.scale {
		need["kamailio"] = "kamailio"
	}
	if o.media != "direct" || o.scale {
		need["rtpengine"] = "rtpengine-daemon"
	}
	if err := install(need, o.install); err != nil {
		return nil, err
	}
	if o.work != "" {
		e.work = o.work
		err = os.MkdirAll(e.work, 0o755)
	} else {
		e.work, err = os.MkdirTemp("", "ringroute-bench-")
	}
	if err != nil {
		return nil, err
	}
	if o.ringroute != "" {
		e.rrBin, err = filepath.Abs(o.ringroute)
		if err != nil {
			return nil, err
		}
	} else {
		e.rrBin = filepath.Join(e.work, "ringroute")
		fmt.Fprintln(os.Stderr, "bench/sip: go build ./cmd/ringroute")
		b := exec.Command("go", "build", "-o", e.rrBin, "./cmd/ringroute")
		b.Dir, b.Stdout, b.Stderr = e.root, os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/ringroute: %w", err)
		}
	}
	e.rrVersion = firstLine(exec.Command(e.rrBin, "version"))
	e.kamVersion = firstLine(exec.Command("kamailio", "-v"))
	e.sippVersion = strings.TrimSpace(strings.TrimPrefix(firstLine(exec.Command("sipp", "-v")), "SIPp"))
	e.rtpeVersion = firstLine(exec.Command("rtpengine", "--version"))
	return e, nil
}

func (e *env) cleanup() {
	if e.o.keep || e.o.work != "" {
		fmt.Fprintln(os.Stderr, "bench/sip: kept", e.work)
		return
	}
	os.RemoveAll(e.work)
}

func firstLine(c *exec.Cmd) string {
	b, _ := c.CombinedOutput()
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return "?"
}

// install apt-gets the Debian packages of the programs that are missing.
func install(need map[string]string, allowed bool) error {
	var pkgs []string
	for prog, pkg := range need {
		if _, err := exec.LookPath(prog); err != nil {
			pkgs = append(pkgs, pkg)
		}
	}
	if len(pkgs) == 0 {
		return nil
	}
	sort.Strings(pkgs)
	if !allowed {
		return fmt.Errorf("missing: %s (install them, or drop -install=false)", strings.Join(pkgs, " "))
	}
	fmt.Fprintln(os.Stderr, "bench/sip: apt-get install", strings.Join(pkgs, " "))
	// The packages' own services (kamailio, rtpengine-daemon) must not
	// start: the bench runs its own, in the foreground, on its own ports.
	// invoke-rc.d and deb-systemd-invoke ask policy-rc.d; 101 is "action
	// forbidden". An existing policy-rc.d is the machine's and is left
	// alone.
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\n# bench/sip: no service starts while it installs packages\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(policy)
		}
	}
	run := func(args ...string) error {
		c := exec.Command("apt-get", args...)
		c.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		return c.Run()
	}
	args := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	if err := run(args...); err != nil {
		if err := run("update"); err != nil {
			return fmt.Errorf("apt-get update: %w", err)
		}
		if err := run(args...); err != nil {
			return fmt.Errorf("apt-get install %s: %w", strings.Join(pkgs, " "), err)
		}
	}
	return nil
}

// pick turns a -sut/-scenario/-media value into the list to run.
func pick(v, what string, all []string) ([]string, error) {
	if v == "" || v == "both" || v == "all" {
		return all, nil
	}
	for _, a := range all {
		if v == a {
			return []string{v}, nil
		}
	}
	return nil, fmt.Errorf("-%s %q: want one of %s or both", what, v, strings.Join(all, ", "))
}

// runQuick is one step and one line: the optimizer's re-run.
func runQuick(e *env) error {
	o := e.o
	if o.sut == "" || o.sut == "both" {
		o.sut = "ringroute"
	}
	if o.scenario == "" || o.scenario == "both" {
		o.scenario = "parallel"
	}
	if o.media == "" || o.media == "both" {
		o.media = "direct"
	}
	sc := scenarios[o.scenario]
	if sc == nil {
		return fmt.Errorf("-scenario %q: parallel or linear", o.scenario)
	}
	if o.media != "direct" && o.media != "relay" {
		return fmt.Errorf("-media %q: direct or relay", o.media)
	}
	abs := func(p string) string {
		if p == "" {
			return ""
		}
		a, _ := filepath.Abs(p)
		return a
	}
	r, err := e.runStepRetry(stepSpec{sut: o.sut, sc: sc, media: o.media, rate: o.rate, dur: o.dur, tap: o.tap, label: "quick",
		pprof: abs(o.pprof), allocs: abs(o.allocs), perf: abs(o.perf), heap: abs(o.heap), trace: abs(o.trace)})
	if err != nil {
		return err
	}
	fmt.Println(quickLine(r))
	for _, why := range r.Reasons {
		fmt.Println("  " + why)
	}
	if profs := nonEmpty(o.pprof, o.allocs, o.heap, o.perf, o.trace); len(profs) > 0 && o.sut == "ringroute" {
		bin := e.rrBin
		if o.ringroute == "" {
			// The binary that ran lives in the scratch directory: keep
			// a copy beside the profile so pprof can read its symbols.
			bin = abs(profs[0]) + ".ringroute"
			if b, err := os.ReadFile(e.rrBin); err == nil {
				_ = os.WriteFile(bin, b, 0o755)
			}
		}
		for _, p := range nonEmpty(o.pprof, o.allocs, o.heap) {
			fmt.Printf("  go tool pprof -http=: %s %s\n", bin, p)
		}
		if o.perf != "" {
			fmt.Printf("  perf report -i %s\n", o.perf)
		}
		if o.trace != "" {
			fmt.Printf("  go tool trace %s\n", o.trace)
		}
	}
	if o.out != "" {
		return writeJSON(o.out, []*stepResult{r})
	}
	return nil
}

func nonEmpty(v ...string) []string {
	var out []string
	for _, s := range v {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// quickLine is one step on one line.
func quickLine(r *stepResult) string {
	var b strings.Builder
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL (" + r.Why + ")"
	}
	fmt.Fprintf(&b, "%s %s %s %d/s (placed %.0f/s): calls %d ok %d failed %d member-failed %d retrans %d",
		r.SUT, r.Scenario, r.Media, r.Rate, r.Placed, r.Calls, r.OK, r.Failed, r.MemberFailed, r.Retrans)
	fmt.Fprintf(&b, " | 180 p50/95/99 %s ms | 200 p50/95/99 %s ms", tri(r.R180, 0), tri(r.R200, 0))
	if r.Tap != nil && r.Tap.Calls > 0 {
		fmt.Fprintf(&b, " | added p50/95/99 %s µs (fork p99 %.0f, answer p99 %.0f; %d calls)", tri(r.Tap.Added, 0), r.Tap.Fork.P99, r.Tap.Answer.P99, r.Tap.Calls)
	}
	if r.UDPDrops > 0 {
		fmt.Fprintf(&b, " | udp drops %d", r.UDPDrops)
	}
	fmt.Fprintf(&b, " | cpu %.3f ms/call (%.2f cores; sipp %.2f, other %.2f) | mem %.1f MiB | stall %.0f ms | %s",
		r.CPUPerCall, r.SUTCores, r.GenCores, r.OtherCores, float64(r.MemKiB)/1024, r.stallMs(), verdict)
	return b.String()
}

func tri(p pct, prec int) string {
	f := "%." + strconv.Itoa(prec) + "f"
	return fmt.Sprintf(f+"/"+f+"/"+f, p.P50, p.P95, p.P99)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// resultsPath is the -out file, or bench/results/DATE-HOST[suffix].md.
func (e *env) resultsPath(suffix string) (string, error) {
	if e.o.out != "" {
		return e.o.out, nil
	}
	dir := filepath.Join(e.root, "bench", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(dir, time.Now().Format("2006-01-02")+"-"+e.host+suffix+".md"), nil
}

var errSkip = errors.New("skipped")
