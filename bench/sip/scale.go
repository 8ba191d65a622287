package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// memSample is the SUT's memory at one moment. For ringroute the heap
// figures come after a forced GC (/debug/pprof/heap?gc=1), so they are
// what is live; RSS is what the kernel holds for the process.
type memSample struct {
	KiB        int    `json:"kib"` // VmRSS, or the sum of Pss (Kamailio, rtpengine)
	HeapInuse  int64  `json:"heap_inuse,omitempty"`
	HeapAlloc  int64  `json:"heap_alloc,omitempty"`
	StackInuse int64  `json:"stack_inuse,omitempty"` // goroutine stacks: not in the heap, in RSS
	Goroutines int    `json:"goroutines,omitempty"`
	Live       int    `json:"live_calls,omitempty"` // /debug/live
	Regs       int    `json:"registrations,omitempty"`
	How        string `json:"how"`
}

// holdResult is one SUT holding many ringing calls.
type holdResult struct {
	SUT     string    `json:"sut"`
	Media   string    `json:"media"`
	Target  int       `json:"target"`
	Ringing int       `json:"ringing"` // calls ringing when During was taken
	Before  memSample `json:"before"`
	During  memSample `json:"during"`
	After   memSample `json:"after"`   // every call cancelled and ended
	Settled memSample `json:"settled"` // -settle later: transactions have expired
	Failed  int       `json:"failed"`
	CPUms   float64   `json:"cpu_ms_per_call"` // placing, holding and cancelling
	Reasons []string  `json:"reasons,omitempty"`
}

func (h holdResult) perCall(a, b int64) float64 {
	if h.Ringing == 0 {
		return 0
	}
	return float64(b-a) / float64(h.Ringing)
}

// regResult is ringroute's registrar filled with bindings.
type regResult struct {
	Users, Target, OK, Failed int
	Before, After, Settled    memSample
	Seconds, CPUms            float64
	Reasons                   []string
}

type scaleRun struct {
	Started, Finished time.Time
	Env               map[string]string
	Hold              []holdResult
	Reg               *regResult
	Relay             *relayRun
}

func runScale(e *env) error {
	out, err := e.resultsPath("-scale")
	if err != nil {
		return err
	}
	run := &scaleRun{Started: time.Now(), Env: e.describe()}
	if !e.o.skipRinging {
		for _, s := range strings.Split(e.o.scaleSUTs, ",") {
			s = strings.TrimSpace(s)
			h, err := e.holdRinging(s, "direct", e.o.ringing)
			if err != nil {
				return err
			}
			run.Hold = append(run.Hold, h)
			printHold(h)
		}
		if e.o.ringingRelay > 0 {
			h, err := e.holdRinging("ringroute", "relay", e.o.ringingRelay)
			if err != nil {
				return err
			}
			run.Hold = append(run.Hold, h)
			printHold(h)
		}
	}
	if !e.o.skipRegs {
		r, err := e.registrations()
		if err != nil {
			return err
		}
		run.Reg = r
		fmt.Fprintf(os.Stderr, "  registrations: %d of %d ok in %.0f s, RSS %+.0f KiB, heap %+.0f KiB\n", r.OK, r.Target, r.Seconds,
			float64(r.After.KiB-r.Before.KiB), float64(r.After.HeapInuse-r.Before.HeapInuse)/1024)
	}
	if !e.o.skipRTP {
		r, err := e.relayCompare()
		if err != nil {
			return err
		}
		run.Relay = r
	}
	run.Finished = time.Now()
	md := renderScale(e, run)
	fmt.Println(md)
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		return err
	}
	js := strings.TrimSuffix(out, ".md") + ".json"
	if err := writeJSON(js, run); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench/sip: results in %s and %s; took %v\n", out, js, run.Finished.Sub(run.Started).Round(time.Second))
	return nil
}

func printHold(h holdResult) {
	fmt.Fprintf(os.Stderr, "  %s %s: %d of %d ringing; memory %+.0f KiB (%.1f KiB/call), after all ended %+.0f KiB; %d failed\n",
		h.SUT, h.Media, h.Ringing, h.Target, float64(h.During.KiB-h.Before.KiB), h.perCall(int64(h.Before.KiB), int64(h.During.KiB)),
		float64(h.After.KiB-h.Before.KiB), h.Failed)
}

// sample reads the SUT's memory; for ringroute it forces a GC first and
// reads the heap, goroutines, live calls and registrations from the admin
// listener.
func sample(x *sut) memSample {
	var m memSample
	if x.kind == "ringroute" {
		base := "http://" + x.admin
		if b, err := httpGet(base + "/debug/pprof/heap?gc=1&debug=1"); err == nil {
			m.HeapInuse = memStat(b, "HeapInuse")
			m.HeapAlloc = memStat(b, "HeapAlloc")
			if mm := regexp.MustCompile(`(?m)^# Stack = (\d+) /`).FindStringSubmatch(b); mm != nil {
				m.StackInuse, _ = strconv.ParseInt(mm[1], 10, 64)
			}
		}
		if b, err := httpGet(base + "/debug/pprof/goroutine?debug=1"); err == nil {
			if mm := regexp.MustCompile(`goroutine profile: total (\d+)`).FindStringSubmatch(b); mm != nil {
				m.Goroutines, _ = strconv.Atoi(mm[1])
			}
		}
		if b, err := httpGet(base + "/debug/live"); err == nil {
			var live struct{ Calls, Legs int }
			if json.Unmarshal([]byte(b), &live) == nil {
				m.Live = live.Calls
			}
		}
		if b, err := httpGet(base + "/metrics"); err == nil {
			if mm := regexp.MustCompile(`(?m)^ringroute_registrations (\S+)`).FindStringSubmatch(b); mm != nil {
				f, _ := strconv.ParseFloat(mm[1], 64)
				m.Regs = int(f)
			}
		}
	}
	m.KiB, m.How = memKiB(x.roots())
	return m
}

func memStat(profile, key string) int64 {
	mm := regexp.MustCompile(`(?m)^# ` + key + ` = (\d+)`).FindStringSubmatch(profile)
	if mm == nil {
		return 0
	}
	n, _ := strconv.ParseInt(mm[1], 10, 64)
	return n
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// holdRinging places n calls to the parallel group whose three members
// ring and never answer, samples the SUT's memory while all n ring, then
// cancels them all.
func (e *env) holdRinging(kind, media string, n int) (holdResult, error) {
	h := holdResult{SUT: kind, Media: media, Target: n}
	dir := filepath.Join(e.work, fmt.Sprintf("hold-%s-%s", kind, media))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return h, err
	}
	rate := e.o.holdRate
	place := time.Duration(float64(n) / float64(rate) * float64(time.Second))
	window := 15 * time.Second
	holdMs := int((place + window) / time.Millisecond)
	fmt.Fprintf(os.Stderr, "bench/sip: %s %s: %d ringing calls at %d/s, each held %.0f s\n", kind, media, n, rate, float64(holdMs)/1000)

	x, err := startSUT(e, kind, dir, sutOpts{media: media, sc: scenarios["parallel"], hold: true})
	if err != nil {
		return h, err
	}
	defer x.stop()
	ring, err := writeScenario(dir, "ring", map[string]any{"CancelTimeoutMs": holdMs + 120000})
	if err != nil {
		return h, err
	}
	hold, err := writeScenario(dir, "hold", map[string]any{"HoldMs": holdMs})
	if err != nil {
		return h, err
	}
	p := e.ports
	var members []*member
	for i, port := range []int{p.m1, p.m2, p.m3} {
		m := &member{name: fmt.Sprintf("m%d", i+1), port: port}
		m.p, err = start(m.name, cpuGen, dir, nil, append(sippCommon(m.name, dir, port), "-sf", ring, "-m", strconv.Itoa(n))...)
		if err != nil {
			return h, err
		}
		defer m.p.stop(time.Second)
		members = append(members, m)
	}
	if err := waitBound(members); err != nil {
		return h, err
	}
	time.Sleep(time.Second)
	h.Before = sample(x)
	c0 := treeCPU(x.roots())
	args := append(sippCommon("caller", dir, p.caller), "-sf", hold, "-s", "600", fmt.Sprintf("127.0.0.1:%d", x.port),
		"-r", strconv.Itoa(rate), "-m", strconv.Itoa(n), "-l", strconv.Itoa(n+1000), "-timeout", strconv.Itoa(holdMs/1000+200)+"s")
	start0 := time.Now()
	caller, err := start("caller", cpuGen, dir, nil, args...)
	if err != nil {
		return h, err
	}
	defer caller.stop(time.Second)
	// Every call is placed by start0+place; the first is cancelled at
	// start0+hold. Sample in between, once the count stops growing.
	sampleAt := start0.Add(place + 4*time.Second)
	time.Sleep(time.Until(sampleAt))
	h.Ringing = ringingNow(x, dir, members)
	h.During = sample(x)
	if e.o.heap != "" && kind == "ringroute" && media == "direct" {
		if b, err := httpGet("http://" + x.admin + "/debug/pprof/heap"); err == nil {
			_ = os.WriteFile(e.o.heap, []byte(b), 0o644)
		}
	}
	h.During.Live = max(h.During.Live, 0)
	if !caller.wait(time.Duration(holdMs)*time.Millisecond + 200*time.Second) {
		caller.stop(time.Second)
	}
	for _, m := range members {
		m.p.wait(10 * time.Second)
	}
	time.Sleep(2 * time.Second)
	h.After = sample(x)
	h.CPUms = 1000 * (treeCPU(x.roots()) - c0) / float64(n)
	time.Sleep(e.o.settle)
	h.Settled = sample(x)
	st, err := readStats(filepath.Join(dir, "caller.csv"))
	if err == nil {
		h.Failed = st.n("FailedCall")
		if f := st.failures(); len(f) > 0 {
			h.Reasons = append(h.Reasons, "caller: "+strings.Join(f, ", "))
		}
	}
	for _, r := range errorReasons(filepath.Join(dir, "caller.err"), 3) {
		h.Reasons = append(h.Reasons, "caller: "+r)
	}
	return h, nil
}

// ringingNow is how many calls ring right now: ringroute's live calls, or
// for Kamailio the calls member 1 has open (each call rings it once).
func ringingNow(x *sut, dir string, ms []*member) int {
	if x.kind == "ringroute" {
		var live struct{ Calls int }
		if b, err := httpGet("http://" + x.admin + "/debug/live"); err == nil && json.Unmarshal([]byte(b), &live) == nil {
			return live.Calls
		}
	}
	time.Sleep(1100 * time.Millisecond) // the next periodic statistics line
	st, err := readStats(filepath.Join(dir, ms[0].name+".csv"))
	if err != nil {
		return 0
	}
	v, _ := strconv.Atoi(st["CurrentCall"])
	return v
}

// registrations fills ringroute's registrar: -users users (u00000...,
// password "bench", digest MD5 as SIPp's [authentication] computes it),
// -regs REGISTERs in all, each a new contact, spread evenly so each user
// ends with regs/users contacts (at most registrar.DefaultMaxContacts,
// 10). SIPp keeps 200 registrations in flight (-l), so ringroute sets the
// pace.
func (e *env) registrations() (*regResult, error) {
	users, regs := e.o.users, e.o.regs
	if per := (regs + users - 1) / users; per > 10 {
		return nil, fmt.Errorf("-regs %d over -users %d is %d contacts per user; ringroute keeps 10 (registrar.DefaultMaxContacts)", regs, users, per)
	}
	r := &regResult{Users: users, Target: regs}
	dir := filepath.Join(e.work, "registrations")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "bench/sip: ringroute registrar: %d REGISTERs (digest) over %d users\n", regs, users)
	inf := filepath.Join(dir, "users.csv")
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for i := range regs {
		u := userName(i % users)
		fmt.Fprintf(&b, "%s;%d;[authentication username=%s password=%s]\n", u, i/users, u, benchPassword)
	}
	if err := os.WriteFile(inf, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	x, err := startSUT(e, "ringroute", dir, sutOpts{media: "direct", sc: scenarios["parallel"], users: users})
	if err != nil {
		return nil, err
	}
	defer x.stop()
	sc, err := writeScenario(dir, "register", nil)
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	r.Before = sample(x)
	c0 := treeCPU(x.roots())
	t0 := time.Now()
	args := append(sippCommon("caller", dir, e.ports.caller), "-sf", sc, "-inf", inf, fmt.Sprintf("127.0.0.1:%d", x.port),
		"-r", strconv.Itoa(e.o.regRate), "-m", strconv.Itoa(regs), "-l", "200", "-timeout", "900s")
	caller, err := start("caller", cpuGen, dir, nil, args...)
	if err != nil {
		return nil, err
	}
	defer caller.stop(time.Second)
	if !caller.wait(905 * time.Second) {
		caller.stop(time.Second)
	}
	r.Seconds = time.Since(t0).Seconds()
	r.CPUms = 1000 * (treeCPU(x.roots()) - c0) / float64(regs)
	time.Sleep(time.Second)
	r.After = sample(x)
	time.Sleep(e.o.settle)
	r.Settled = sample(x)
	if st, err := readStats(filepath.Join(dir, "caller.csv")); err == nil {
		r.OK, r.Failed = st.n("SuccessfulCall"), st.n("FailedCall")
		if f := st.failures(); len(f) > 0 {
			r.Reasons = append(r.Reasons, "caller: "+strings.Join(f, ", "))
		}
	}
	for _, s := range errorReasons(filepath.Join(dir, "caller.err"), 3) {
		r.Reasons = append(r.Reasons, "caller: "+s)
	}
	return r, nil
}

// ---------------------------------------------------------------------------
// The media relay against rtpengine

// mediaRow is one row of bench/media's JSON.
type mediaRow struct {
	Calls      int     `json:"calls"`
	Streams    int     `json:"streams"`
	OfferedPPS float64 `json:"offered_pps"`
	RelayedPPS float64 `json:"relayed_pps"`
	Loss       float64 `json:"loss"`
	RelayCPU   float64 `json:"relay_cpu"`
	PPSPerCore float64 `json:"pps_per_core"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
}

// loadResult is what bench/media's load process prints ("result {...}").
type loadResult struct {
	Sent, Received uint64
	P50, P99, Max  float64
	Samples        int
	SendErrors     uint64
}

// rtpeRow is rtpengine driven by the same load process.
type rtpeRow struct {
	Calls        int     `json:"calls"`
	OfferedPPS   float64 `json:"offered_pps"`
	DeliveredPPS float64 `json:"delivered_pps"`
	Loss         float64 `json:"loss"`
	CPU          float64 `json:"cpu"` // cores
	PPSPerCore   float64 `json:"pps_per_core"`
	P50us        float64 `json:"p50_us"`
	P99us        float64 `json:"p99_us"`
}

type relayRun struct {
	Media    []mediaRow `json:"bench_media"`
	Rtpe     []rtpeRow  `json:"rtpengine"`
	RtpeNote string     `json:"rtpengine_note,omitempty"`
}

// relayCompare runs bench/media (package media's relay in a process
// pinned to CPU 0 with GOMAXPROCS=1, its load process on CPU 1), then
// rtpengine in userspace on CPU 0 driven over ng, with the very same load
// process (bench/media -load) sending the same 20 ms G.711 streams.
func (e *env) relayCompare() (*relayRun, error) {
	dir := filepath.Join(e.work, "relay")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "benchmedia")
	b := exec.Command("go", "build", "-o", bin, "./bench/media")
	b.Dir, b.Stdout, b.Stderr = e.root, os.Stderr, os.Stderr
	if err := b.Run(); err != nil {
		return nil, fmt.Errorf("go build ./bench/media: %w", err)
	}
	run := &relayRun{}
	js := filepath.Join(dir, "media.json")
	fmt.Fprintln(os.Stderr, "bench/sip: bench/media -calls", e.o.mediaCalls)
	c := exec.Command(bin, "-calls", e.o.mediaCalls, "-out", js)
	if niceness != 0 {
		// bench/media pins itself (relay CPU 0, load CPU 1); give it
		// the niceness rtpengine gets.
		c = exec.Command("nice", "-n", strconv.Itoa(niceness), bin, "-calls", e.o.mediaCalls, "-out", js)
	}
	c.Dir, c.Stdout, c.Stderr = dir, os.Stderr, os.Stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("bench/media: %w", err)
	}
	var mj struct {
		Rows []mediaRow `json:"rows"`
	}
	raw, err := os.ReadFile(js)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &mj); err != nil {
		return nil, err
	}
	run.Media = mj.Rows

	fmt.Fprintln(os.Stderr, "bench/sip: rtpengine (userspace, --table=-1) with the same load")
	rp, err := startRtpengine(e, dir)
	if err != nil {
		run.RtpeNote = err.Error()
		return run, nil
	}
	defer rp.stop(3 * time.Second)
	ng, err := dialNG(fmt.Sprintf("127.0.0.1:%d", e.ports.ng))
	if err != nil {
		return nil, err
	}
	defer ng.close()
	for _, f := range strings.Split(e.o.mediaCalls, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		row, err := rtpeLevel(bin, ng, rp, n)
		if err != nil {
			run.RtpeNote = err.Error()
			break
		}
		run.Rtpe = append(run.Rtpe, row)
		fmt.Fprintf(os.Stderr, "  rtpengine %d calls: %.0f pps delivered, %.2f cores, %.0f pps/core, loss %.2f%%\n", n, row.DeliveredPPS, row.CPU, row.PPSPerCore, 100*row.Loss)
	}
	return run, nil
}

func sdpFor(port int) string {
	return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		fmt.Sprintf("m=audio %d RTP/AVP 0 8 101\r\n", port) +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
}

var sdpPort = regexp.MustCompile(`(?m)^m=audio (\d+) `)

func rtpeLevel(bin string, ng *ngClient, rp *proc, n int) (rtpeRow, error) {
	const warm, dur = time.Second, 5 * time.Second
	row := rtpeRow{Calls: n}
	args := []string{bin, "-load", "-calls", strconv.Itoa(n), "-warm", warm.String(), "-dur", dur.String()}
	if niceness != 0 {
		args = append([]string{"nice", "-n", strconv.Itoa(niceness)}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return row, err
	}
	defer cmd.Wait()
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	if !lines.Scan() {
		return row, fmt.Errorf("load process sent no ports")
	}
	peers := strings.Fields(lines.Text())
	if len(peers) != 2*n {
		return row, fmt.Errorf("load process sent %d ports for %d calls", len(peers), n)
	}
	to := make([]string, 2*n)
	var ids []string
	defer func() {
		for _, id := range ids {
			_, _ = ng.call(map[string]any{"command": "delete", "call-id": id, "from-tag": "caller"})
		}
	}()
	for i := range n {
		cp, _ := strconv.Atoi(peers[2*i])
		mp, _ := strconv.Atoi(peers[2*i+1])
		id := fmt.Sprintf("bench-%d-%d-%d", os.Getpid(), n, i)
		ids = append(ids, id)
		off, err := ng.call(map[string]any{"command": "offer", "call-id": id, "from-tag": "caller", "sdp": sdpFor(cp),
			"ICE": "remove", "replace": []string{"origin", "session-connection"}})
		if err != nil {
			return row, err
		}
		ans, err := ng.call(map[string]any{"command": "answer", "call-id": id, "from-tag": "caller", "to-tag": "member", "sdp": sdpFor(mp),
			"ICE": "remove", "replace": []string{"origin", "session-connection"}})
		if err != nil {
			return row, err
		}
		// The offer's SDP goes to the member: its port is where the
		// member sends; the answer's goes to the caller.
		mo := sdpPort.FindStringSubmatch(fmt.Sprint(off["sdp"]))
		ma := sdpPort.FindStringSubmatch(fmt.Sprint(ans["sdp"]))
		if mo == nil || ma == nil {
			return row, fmt.Errorf("rtpengine answered without m=audio ports")
		}
		to[2*i], to[2*i+1] = ma[1], mo[1]
	}
	if _, err := io.WriteString(stdin, strings.Join(to, " ")+"\n"); err != nil {
		return row, err
	}
	var c0, c1 float64
	var t0, t1 time.Time
	for lines.Scan() {
		l := lines.Text()
		switch {
		case l == "start":
			c0, t0 = cpuSeconds(rp.pid()), time.Now()
		case l == "stop":
			c1, t1 = cpuSeconds(rp.pid()), time.Now()
		case strings.HasPrefix(l, "result "):
			var res loadResult
			if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "result ")), &res); err != nil {
				return row, err
			}
			secs := dur.Seconds()
			row.OfferedPPS = float64(res.Sent) / secs
			row.DeliveredPPS = float64(res.Received) / secs
			if res.Sent > 0 {
				row.Loss = 1 - float64(res.Received)/float64(res.Sent)
			}
			if w := t1.Sub(t0).Seconds(); w > 0 {
				row.CPU = (c1 - c0) / w
			}
			if row.CPU > 0 {
				row.PPSPerCore = row.DeliveredPPS / row.CPU
			}
			row.P50us, row.P99us = res.P50, res.P99
			return row, nil
		}
	}
	return row, fmt.Errorf("load process ended without a result")
}

func renderScale(e *env, run *scaleRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# ringroute scale figures (`make bench-scale`)\n\n")
	fmt.Fprintf(&b, "Run %s, took %v. Written by `go run ./bench/sip -scale` (bench/sip/scale.go).\n\n",
		run.Started.Format(time.RFC3339), run.Finished.Sub(run.Started).Round(time.Second))
	b.WriteString("| | |\n|---|---|\n")
	for _, k := range []string{"host", "cpu", "cpus", "kernel", "go", "commit", "ringroute", "kamailio", "sipp", "rtpengine", "loadavg", "pinning"} {
		fmt.Fprintf(&b, "| %s | %s |\n", k, strings.ReplaceAll(run.Env[k], "|", "/"))
	}
	if len(run.Hold) > 0 {
		b.WriteString("\n## Memory per ringing call\n\n")
		fmt.Fprintf(&b, "Calls to the parallel group (three members that ring and never answer, member_timeout 600 s), placed at %d/s and all ringing at once, then cancelled. ", e.o.holdRate)
		b.WriteString("ringroute: VmRSS, and the heap after a forced GC (`/debug/pprof/heap?gc=1`), goroutines from `/debug/pprof/goroutine`; Kamailio: the sum of Pss over its processes. Per call = (during − before) / calls ringing.\n\n")
		t := table{{"SUT", "media", "ringing", "memory before MiB", "during MiB", "per call KiB", "heap per call KiB", "stacks per call KiB", "goroutines per call",
			"goroutines before/during/settled", "all ended MiB", fmt.Sprintf("settled (+%v) MiB", e.o.settle), "heap settled MiB", "CPU ms/call", "failed"}}
		for _, h := range run.Hold {
			g, gpc, heap, stacks, heapSettled := "–", "–", "–", "–", "–"
			if h.SUT == "ringroute" {
				g = fmt.Sprintf("%d/%d/%d", h.Before.Goroutines, h.During.Goroutines, h.Settled.Goroutines)
				gpc = fmt.Sprintf("%.2f", h.perCall(int64(h.Before.Goroutines), int64(h.During.Goroutines)))
				heap = fmt.Sprintf("%.1f", h.perCall(h.Before.HeapInuse, h.During.HeapInuse)/1024)
				heapSettled = fmt.Sprintf("%.1f", float64(h.Settled.HeapInuse)/(1<<20))
				if h.During.StackInuse > 0 {
					stacks = fmt.Sprintf("%.1f", h.perCall(h.Before.StackInuse, h.During.StackInuse)/1024)
				}
			}
			t = append(t, []string{h.SUT, h.Media, fmt.Sprintf("%d of %d", h.Ringing, h.Target), mib(h.Before.KiB), mib(h.During.KiB),
				fmt.Sprintf("%.1f", h.perCall(int64(h.Before.KiB), int64(h.During.KiB))), heap, stacks, gpc, g, mib(h.After.KiB), mib(h.Settled.KiB), heapSettled,
				fmt.Sprintf("%.3f", h.CPUms), fmt.Sprint(h.Failed)})
		}
		b.WriteString(t.markdown())
		for _, h := range run.Hold {
			if len(h.Reasons) > 0 {
				fmt.Fprintf(&b, "\n%s %s: %s\n", h.SUT, h.Media, strings.Join(first(h.Reasons, 5), "; "))
			}
		}
	}
	if r := run.Reg; r != nil {
		b.WriteString("\n## Memory per registration\n\n")
		per := func(a, c int64) string {
			if r.Settled.Regs == 0 {
				return "–"
			}
			return fmt.Sprintf("%.2f", float64(c-a)/float64(r.Settled.Regs)/1024)
		}
		fmt.Fprintf(&b, "%d REGISTERs with MD5 digest (401 challenge, then credentials: two transactions each) over %d users (`users:` generated into the config, password `bench`), each a new contact, %d per user (ringroute keeps 10 per user); registrar state in memory only (`state_file: \"\"`). The users' config is loaded before the first sample, so the figures are the bindings alone.\n\n",
			r.Target, r.Users, (r.Target+r.Users-1)/r.Users)
		t := table{{"registrations (gauge)", "ok / failed (SIPp)", "seconds", "REGISTER/s", "CPU ms per registration",
			"RSS before → after → settled MiB", "RSS per registration KiB (after / settled)",
			"heap before → after → settled MiB", "heap per registration KiB (after / settled)", "goroutines before → settled"}}
		t = append(t, []string{fmt.Sprint(r.Settled.Regs), fmt.Sprintf("%d / %d", r.OK, r.Failed), fmt.Sprintf("%.0f", r.Seconds),
			fmt.Sprintf("%.0f", float64(r.OK)/r.Seconds), fmt.Sprintf("%.3f", r.CPUms),
			mib(r.Before.KiB) + " → " + mib(r.After.KiB) + " → " + mib(r.Settled.KiB),
			per(int64(r.Before.KiB)*1024, int64(r.After.KiB)*1024) + " / " + per(int64(r.Before.KiB)*1024, int64(r.Settled.KiB)*1024),
			fmt.Sprintf("%.1f → %.1f → %.1f", float64(r.Before.HeapInuse)/(1<<20), float64(r.After.HeapInuse)/(1<<20), float64(r.Settled.HeapInuse)/(1<<20)),
			per(r.Before.HeapInuse, r.After.HeapInuse) + " / " + per(r.Before.HeapInuse, r.Settled.HeapInuse),
			fmt.Sprintf("%d → %d", r.Before.Goroutines, r.Settled.Goroutines)})
		b.WriteString(t.markdown())
		if len(r.Reasons) > 0 {
			fmt.Fprintf(&b, "\n%s\n", strings.Join(first(r.Reasons, 5), "; "))
		}
	}
	if rr := run.Relay; rr != nil {
		b.WriteString("\n## Media relay packets/s per core: ringroute (bench/media) vs rtpengine (userspace)\n\n")
		b.WriteString("Same load process (`bench/media -load`, CPU 1): per call a 20 ms G.711 stream each way. ringroute: package media's relay in bench/media's process, pinned to CPU 0, GOMAXPROCS=1. rtpengine: `--table=-1` (no kernel forwarding), `--num-threads=1`, pinned to CPU 0, each call set up over ng (offer, answer) and deleted after. Delivered = received by the load process in the measured window; per core = delivered / the relay's CPU (utime+stime).\n\n")
		t := table{{"calls", "offered pps", "ringroute delivered pps", "ringroute CPU", "ringroute pps/core", "ringroute loss", "ringroute p50/p99 µs", "rtpengine delivered pps", "rtpengine CPU", "rtpengine pps/core", "rtpengine loss", "rtpengine p50/p99 µs", "ringroute/rtpengine pps/core"}}
		for _, m := range rr.Media {
			var r *rtpeRow
			for i := range rr.Rtpe {
				if rr.Rtpe[i].Calls == m.Calls {
					r = &rr.Rtpe[i]
				}
			}
			del := m.OfferedPPS * (1 - m.Loss)
			per := 0.0
			if m.RelayCPU > 0 {
				per = del / m.RelayCPU
			}
			row := []string{fmt.Sprint(m.Calls), fmt.Sprintf("%.0f", m.OfferedPPS), fmt.Sprintf("%.0f", del), fmt.Sprintf("%.2f", m.RelayCPU),
				fmt.Sprintf("%.0f", per), fmt.Sprintf("%.2f%%", 100*m.Loss), fmt.Sprintf("%.0f/%.0f", m.P50us, m.P99us)}
			if r != nil {
				row = append(row, fmt.Sprintf("%.0f", r.DeliveredPPS), fmt.Sprintf("%.2f", r.CPU), fmt.Sprintf("%.0f", r.PPSPerCore),
					fmt.Sprintf("%.2f%%", 100*r.Loss), fmt.Sprintf("%.0f/%.0f", r.P50us, r.P99us), ratio(per, r.PPSPerCore))
			} else {
				row = append(row, "–", "–", "–", "–", "–", "–")
			}
			t = append(t, row)
		}
		b.WriteString(t.markdown())
		if rr.RtpeNote != "" {
			fmt.Fprintf(&b, "\nrtpengine: %s\n", rr.RtpeNote)
		}
	}
	return b.String()
}
