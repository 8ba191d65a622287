package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process the bench started. It is stopped by its PID (and, for
// Kamailio, the PIDs of the children it forked), never by name.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	code int // exit code once done; -1 if killed by a signal
}

// procs is every process still running, for the cleanup on exit and on
// SIGINT/SIGTERM.
var procs struct {
	sync.Mutex
	live map[*proc]bool
}

// niceness is the nice value of every process the bench pins (-nice):
// the machine may be shared, and a compile on the SUT's core would
// otherwise take its time slices mid-step.
var niceness = 0

// start runs argv in dir, pinned to cpu with taskset and at niceness with
// nice (both exec the program, so the PID is the program's), output to
// dir/name.log.
func start(name string, cpu int, dir string, env []string, argv ...string) (*proc, error) {
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
		if niceness != 0 {
			argv = append([]string{"nice", "-n", strconv.Itoa(niceness)}, argv...)
		}
	}
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: a Ctrl-C in the terminal reaches only the
	// bench, which then stops everything by PID.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	procs.Lock()
	if procs.live == nil {
		procs.live = map[*proc]bool{}
	}
	procs.live[p] = true
	procs.Unlock()
	go func() {
		_ = cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		procs.Lock()
		delete(procs.live, p)
		procs.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to end.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// stop sends SIGTERM to the PID, then SIGKILL after grace; children the
// process forked (Kamailio's workers) that outlive it are killed by PID.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	kids := descendants(p.pid())
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if !p.wait(grace) {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	for _, k := range kids {
		if alive(k) {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
	}
}

// stopAll stops every process still running (exit and signal path).
func stopAll() {
	procs.Lock()
	var ps []*proc
	for p := range procs.live {
		ps = append(ps, p)
	}
	procs.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(2 * time.Second) }()
	}
	wg.Wait()
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	st := statFields(string(b))
	return len(st) > 0 && st[0] != "Z"
}

// statFields returns the fields of /proc/PID/stat after the command name:
// [0] is the state (field 3), [11] utime (field 14), [12] stime.
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// descendants lists the PIDs whose parent chain leads to pid.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := statFields(string(b))
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[n] = pp
		}
	}
	var out []int
	for n := range parent {
		for q, hops := parent[n], 0; q > 1 && hops < 64; q, hops = parent[q], hops+1 {
			if q == pid {
				out = append(out, n)
				break
			}
		}
	}
	sort.Ints(out)
	return out
}

// clkTck is USER_HZ, the unit of utime and stime: 100 on every Linux
// architecture Go supports.
const clkTck = 100

// cpuSeconds is utime+stime of pid (all its threads) in seconds.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := statFields(string(b))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clkTck
}

// treeCPU is the CPU seconds of each root and every process below it.
func treeCPU(roots []int) float64 {
	var t float64
	for _, pid := range treePIDs(roots) {
		t += cpuSeconds(pid)
	}
	return t
}

func treePIDs(roots []int) []int {
	var out []int
	for _, r := range roots {
		out = append(out, r)
		out = append(out, descendants(r)...)
	}
	return out
}

// statusKiB reads a "Key:   N kB" line of /proc/PID/status.
func statusKiB(pid int, key string) int {
	return kibLine(fmt.Sprintf("/proc/%d/status", pid), key)
}

func kibLine(path, key string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, key+":") {
			fs := strings.Fields(l[len(key)+1:])
			if len(fs) > 0 {
				n, _ := strconv.Atoi(fs[0])
				return n
			}
		}
	}
	return 0
}

// memKiB is the memory of a process tree: VmRSS for a single process
// (ringroute), the sum of Pss for a tree of several (Kamailio's workers
// share its shared-memory segment; summing their RSS would count it once
// per worker).
func memKiB(roots []int) (kib int, how string) {
	pids := treePIDs(roots)
	if len(pids) == 1 {
		return statusKiB(pids[0], "VmRSS"), "VmRSS"
	}
	for _, p := range pids {
		kib += kibLine(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss")
	}
	return kib, "sum of Pss"
}

// machineBusy is the busy CPU seconds of the whole machine so far, from
// /proc/stat (everything but idle and iowait).
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice,
	// which user and nice already include]
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += n
	}
	return busy / clkTck
}

// loadavg is the first field of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// portFree reports whether UDP port p on 127.0.0.1 can be bound.
func portFree(p int) bool {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}) == nil
}

var errNotReady = errors.New("not ready")

// udpRcvbufErrors is the machine's count of UDP datagrams dropped for a
// full receive buffer (/proc/net/snmp).
func udpRcvbufErrors() int {
	var head []string
	for _, l := range strings.Split(readFileString("/proc/net/snmp"), "\n") {
		if !strings.HasPrefix(l, "Udp: ") {
			continue
		}
		f := strings.Fields(l)
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if h == "RcvbufErrors" && i < len(f) {
				n, _ := strconv.Atoi(f[i])
				return n
			}
		}
	}
	return 0
}

func readFileString(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
