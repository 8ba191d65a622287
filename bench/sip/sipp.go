package main

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

//go:embed scenarios/*.xml
var scenarioFS embed.FS

// writeScenario renders scenarios/NAME.xml with params (Go template
// fields, {{.X}}) into dir and returns its path.
func writeScenario(dir, name string, params any) (string, error) {
	b, err := scenarioFS.ReadFile("scenarios/" + name + ".xml")
	if err != nil {
		return "", err
	}
	t, err := template.New(name).Option("missingkey=error").Parse(string(b))
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	if err := t.Execute(&out, params); err != nil {
		return "", fmt.Errorf("scenario %s: %w", name, err)
	}
	path := filepath.Join(dir, name+".xml")
	return path, os.WriteFile(path, out.Bytes(), 0o644)
}

// sippCommon are the options every SIPp of the bench gets: loopback, no
// keyboard, periodic and final statistics in a CSV (-trace_stat), every
// unexpected event in an error log, 4 MiB socket buffers.
func sippCommon(name, dir string, port int) []string {
	return []string{"sipp", "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-nostdin",
		"-trace_stat", "-stf", filepath.Join(dir, name+".csv"), "-fd", "1",
		"-trace_err", "-error_file", filepath.Join(dir, name+".err"),
		"-buff_size", strconv.Itoa(4 << 20)}
}

// sippStats is one line of a -trace_stat CSV, by column name. Counters
// have a (P) periodic and a (C) cumulative column; the bench reads (C).
type sippStats map[string]string

// readStats reads the last complete line of a -trace_stat CSV. SIPp
// writes a final line at exit, so for a SIPp that ended this is its total.
func readStats(path string) (sippStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var head []string
	var last []string
	for sc.Scan() {
		fs := strings.Split(strings.TrimRight(sc.Text(), ";"), ";")
		if head == nil {
			head = fs
			continue
		}
		if len(fs) == len(head) {
			last = fs
		}
	}
	if head == nil || last == nil {
		return nil, fmt.Errorf("%s: no statistics line", path)
	}
	s := sippStats{}
	for i, h := range head {
		s[h] = last[i]
	}
	return s, nil
}

// n is a cumulative counter, 0 when absent.
func (s sippStats) n(key string) int {
	v, _ := strconv.Atoi(s[key+"(C)"])
	return v
}

// failures lists the failure counters that are not zero, like
// "FailedTimeoutOnRecv 12".
func (s sippStats) failures() []string {
	var out []string
	for k, v := range s {
		if strings.HasPrefix(k, "Failed") && strings.HasSuffix(k, "(C)") && k != "FailedCall(C)" && v != "0" {
			out = append(out, strings.TrimSuffix(k, "(C)")+" "+v)
		}
	}
	for _, k := range []string{"OutOfCallMsgs", "DeadCallMsgs", "FatalErrors", "WatchdogMajor"} {
		if v := s.n(k); v != 0 {
			out = append(out, fmt.Sprintf("%s %d", k, v))
		}
	}
	sort.Strings(out)
	return out
}

// rttData is what -trace_rtt wrote: every response time (ms) of each
// timer, and the time (ms since SIPp started) of each sample.
type rttData struct {
	ms map[string][]float64
	at map[string][]float64
}

func readRTT(dir string) (rttData, error) {
	r := rttData{ms: map[string][]float64{}, at: map[string][]float64{}}
	files, _ := filepath.Glob(filepath.Join(dir, "*_rtt.csv"))
	if len(files) == 0 {
		return r, fmt.Errorf("no *_rtt.csv in %s", dir)
	}
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return r, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Split(sc.Text(), ";")
			if len(fs) < 3 || fs[0] == "Date_ms" {
				continue
			}
			at, err1 := strconv.ParseFloat(fs[0], 64)
			v, err2 := strconv.ParseFloat(fs[1], 64)
			if err1 != nil || err2 != nil {
				continue
			}
			r.ms[fs[2]] = append(r.ms[fs[2]], v)
			r.at[fs[2]] = append(r.at[fs[2]], at)
		}
		f.Close()
	}
	return r, nil
}

// rate is how fast the samples of timer came, per second: for the first
// response to the INVITE, the rate at which SIPp really placed calls.
func (r rttData) rate(timer string) float64 {
	at := r.at[timer]
	if len(at) < 2 {
		return 0
	}
	lo, hi := at[0], at[0]
	for _, a := range at {
		lo, hi = min(lo, a), max(hi, a)
	}
	if hi <= lo {
		return 0
	}
	return float64(len(at)-1) / ((hi - lo) / 1000)
}

// pct holds percentiles of a sample.
type pct struct {
	N             int
	P50, P95, P99 float64
	Max           float64
}

func percentiles(v []float64) pct {
	if len(v) == 0 {
		return pct{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	q := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return pct{N: len(s), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: s[len(s)-1]}
}

var (
	// SIPp does not end its entries with a newline; each starts with a
	// date, a time and an epoch time.
	errEntry = regexp.MustCompile(`\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d\.\d+\t\d+\.\d+: `)
	callIDs  = []*regexp.Regexp{
		regexp.MustCompile(`(?i)(call-id:? *)'[^']*'`),
		regexp.MustCompile(`(?i)(call-id:? *)[^\s,'…][^\s,']*`), // not one the line above replaced
		regexp.MustCompile(`(?i)(for call: *)\S+`),
		regexp.MustCompile(`(?i)(dead call )\S+`),
	}
)

// errorReasons reads a SIPp error log and returns its distinct events,
// most frequent first, as "N× text" with Call-IDs blanked. Events that are
// not failures (a receive timeout that jumps to a label, a retransmission
// after the call ended, the open-files warning) are left out.
func errorReasons(path string, top int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 4<<20))
	idx := errEntry.FindAllIndex(b, -1)
	count := map[string]int{}
	for i, m := range idx {
		end := len(b)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		text := string(b[m[1]:end])
		if nl := strings.IndexByte(text, '\n'); nl >= 0 {
			text = text[:nl]
		}
		text = strings.TrimSpace(text)
		switch {
		case strings.Contains(text, "jumping to label"),
			strings.HasPrefix(text, "Dead call"),
			strings.HasPrefix(text, "Maximum number of open sockets"):
			continue
		}
		for _, re := range callIDs {
			text = re.ReplaceAllString(text, "${1}…")
		}
		if len(text) > 180 {
			text = text[:180] + "…"
		}
		count[text]++
	}
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range count {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].k < all[j].k })
	var out []string
	for i, e := range all {
		if i == top {
			break
		}
		out = append(out, fmt.Sprintf("%d× %s", e.n, e.k))
	}
	return out
}
