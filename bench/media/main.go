// Command media benchmarks the RTP relay of package media: for each load
// level, N calls, each a media.Session with a 20 ms G.711 stream in each
// direction, relayed over loopback. The relay runs in this process pinned
// to CPU 0 with GOMAXPROCS=1; a child process pinned to CPU 1 generates
// and receives the streams and measures one-way latency. Each level also
// runs without the relay (the load process sends straight to the other
// peer) so the latency the relay adds can be told from the load process's
// own scheduling delay.
//
//	go run ./bench/media -out bench/results/media.json    # what `make bench` runs
//
// Reading the numbers: pps_per_core (relayed packets per second divided by
// the relay process's CPU) is the relay's efficiency and the figure to
// compare with other relays. On a 2-core machine the load process needs a
// core of its own for the same number of syscalls, so somewhere near 1000
// calls both are saturated and latency becomes queueing in either of
// them; the p99 figures are dominated by the load process's scheduling
// (compare with direct_p99_us), p50 added latency is the cleaner one.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ringroute/ringroute/bench/internal/pin"
	"github.com/ringroute/ringroute/media"
)

type row struct {
	Calls       int     `json:"calls"`
	Streams     int     `json:"streams"`      // one-way streams: 2 per call
	OfferedPPS  float64 `json:"offered_pps"`  // what the load process sent
	RelayedPPS  float64 `json:"relayed_pps"`  // what the relay forwarded (its own counters)
	Loss        float64 `json:"loss"`         // fraction sent but not received
	RelayCPU    float64 `json:"relay_cpu"`    // cores the relay process used
	PPSPerCore  float64 `json:"pps_per_core"` // relayed_pps / relay_cpu
	P50us       float64 `json:"p50_us"`       // one-way latency through the relay
	P99us       float64 `json:"p99_us"`
	DirectP50us float64 `json:"direct_p50_us"` // same load, no relay
	DirectP99us float64 `json:"direct_p99_us"`
	AddedP50us  float64 `json:"added_p50_us"` // p50 - direct p50
	AddedP99us  float64 `json:"added_p99_us"`
}

func main() {
	load := flag.Bool("load", false, "run as the load process (internal)")
	callsFlag := flag.String("calls", "100,500,1000", "load levels: concurrent calls")
	dur := flag.Duration("dur", 5*time.Second, "measured time per level")
	warm := flag.Duration("warm", time.Second, "warm-up before measuring")
	direct := flag.Duration("direct", 2*time.Second, "measured time of the no-relay baseline per level (0: skip)")
	out := flag.String("out", "", "write the results here (JSON; .tsv: tab-separated)")
	flag.Parse()

	if *load {
		pin.Self(1, 0)
		runtime.GOMAXPROCS(1)
		n, _ := strconv.Atoi(*callsFlag)
		if err := runLoad(n, *warm, *dur); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	pinned := pin.Self(0, 0)
	runtime.GOMAXPROCS(1)
	if !pinned {
		fmt.Fprintln(os.Stderr, "bench/media: could not pin to a CPU; numbers are less stable")
	}

	var levels []int
	for _, f := range strings.Split(*callsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bad -calls %q\n", *callsFlag)
			os.Exit(2)
		}
		levels = append(levels, n)
	}
	pool, err := media.NewPool(netip.MustParseAddr("127.0.0.1"), 20000, 29999)
	if err != nil {
		fail(err)
	}
	var rows []row
	for _, n := range levels {
		r, err := runLevel(pool, n, *warm, *dur, *direct)
		if err != nil {
			fail(fmt.Errorf("%d calls: %w", n, err))
		}
		rows = append(rows, r)
	}
	printTable(os.Stdout, rows)
	if *out != "" {
		if err := writeOut(*out, rows); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/media:", err)
	os.Exit(1)
}

func runLevel(pool *media.Pool, n int, warm, dur, direct time.Duration) (row, error) {
	r := row{Calls: n, Streams: 2 * n}
	res, relayed, cpu, err := runOnce(pool, n, warm, dur, true)
	if err != nil {
		return r, err
	}
	secs := dur.Seconds()
	r.OfferedPPS = float64(res.Sent) / secs
	r.RelayedPPS = float64(relayed) / secs
	if res.Sent > 0 {
		r.Loss = 1 - float64(res.Received)/float64(res.Sent)
	}
	r.RelayCPU = cpu / secs
	if r.RelayCPU > 0 {
		r.PPSPerCore = r.RelayedPPS / r.RelayCPU
	}
	r.P50us, r.P99us = res.P50, res.P99
	if direct > 0 {
		base, _, _, err := runOnce(pool, n, warm/2, direct, false)
		if err != nil {
			return r, err
		}
		r.DirectP50us, r.DirectP99us = base.P50, base.P99
		r.AddedP50us, r.AddedP99us = r.P50us-base.P50, r.P99us-base.P99
	}
	return r, nil
}

// runOnce runs the load process once, through the relay or not, and
// returns its result, the packets the relay forwarded and the relay's
// CPU seconds during the measured window.
func runOnce(pool *media.Pool, n int, warm, dur time.Duration, relay bool) (loadResult, uint64, float64, error) {
	var res loadResult
	self, err := os.Executable()
	if err != nil {
		return res, 0, 0, err
	}
	cmd := exec.Command(self, "-load", "-calls", strconv.Itoa(n), "-warm", warm.String(), "-dur", dur.String())
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return res, 0, 0, err
	}
	defer cmd.Wait()
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	if !lines.Scan() {
		return res, 0, 0, errors.New("load process sent no ports")
	}
	peers := strings.Fields(lines.Text())
	if len(peers) != 2*n {
		return res, 0, 0, fmt.Errorf("load process sent %d ports for %d calls", len(peers), n)
	}
	var sessions []*media.Session
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	to := make([]string, 2*n)
	lo := netip.MustParseAddr("127.0.0.1")
	for i := range n {
		cp, _ := strconv.Atoi(peers[2*i])
		mp, _ := strconv.Atoi(peers[2*i+1])
		if !relay {
			to[2*i], to[2*i+1] = peers[2*i+1], peers[2*i]
			continue
		}
		s, err := pool.NewSession(1, media.SessionOptions{})
		if err != nil {
			return res, 0, 0, err
		}
		sessions = append(sessions, s)
		for side, p := range map[media.Side]int{media.Caller: cp, media.Member: mp} {
			s.SetPeer(side, 0, media.Stream{
				Media: "audio", Port: p,
				Addr:     netip.AddrPortFrom(lo, uint16(p)),
				RTCP:     netip.AddrPortFrom(lo, uint16(p+1)),
				Payloads: []uint8{0, 8, 101},
				Codecs:   map[uint8]string{0: "PCMU", 8: "PCMA", 101: "telephone-event"},
			})
		}
		s.Bridge()
		to[2*i] = strconv.Itoa(s.Ports(media.Caller)[0].RTP)
		to[2*i+1] = strconv.Itoa(s.Ports(media.Member)[0].RTP)
	}
	if _, err := io.WriteString(stdin, strings.Join(to, " ")+"\n"); err != nil {
		return res, 0, 0, err
	}
	relayed := func() uint64 {
		var t uint64
		for _, s := range sessions {
			st := s.Stats()
			t += st.Packets[0] + st.Packets[1]
		}
		return t
	}
	var p0, p1 uint64
	var c0, c1 float64
	var t0, t1 time.Time
	for lines.Scan() {
		l := lines.Text()
		switch {
		case l == "start":
			p0, c0, t0 = relayed(), cpuTime(), time.Now()
		case l == "stop":
			p1, c1, t1 = relayed(), cpuTime(), time.Now()
		case strings.HasPrefix(l, "result "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "result ")), &res); err != nil {
				return res, 0, 0, err
			}
			// Scale to the nominal window: the parent sees start and
			// stop a little late, but both equally.
			k := dur.Seconds() / t1.Sub(t0).Seconds()
			return res, uint64(float64(p1-p0) * k), (c1 - c0) * k, nil
		}
	}
	return res, 0, 0, errors.New("load process ended without a result")
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintf(w, "%6s %8s %11s %11s %7s %9s %12s %8s %8s %10s %10s\n",
		"calls", "streams", "offered/s", "relayed/s", "loss", "relayCPU", "pps/core", "p50µs", "p99µs", "+p50µs", "+p99µs")
	for _, r := range rows {
		fmt.Fprintf(w, "%6d %8d %11.0f %11.0f %6.2f%% %9.2f %12.0f %8.0f %8.0f %10.0f %10.0f\n",
			r.Calls, r.Streams, r.OfferedPPS, r.RelayedPPS, 100*r.Loss, r.RelayCPU, r.PPSPerCore, r.P50us, r.P99us, r.AddedP50us, r.AddedP99us)
	}
}

func writeOut(path string, rows []row) error {
	var b []byte
	if strings.HasSuffix(path, ".tsv") {
		var sb strings.Builder
		sb.WriteString("calls\tstreams\toffered_pps\trelayed_pps\tloss\trelay_cpu\tpps_per_core\tp50_us\tp99_us\tdirect_p50_us\tdirect_p99_us\tadded_p50_us\tadded_p99_us\n")
		for _, r := range rows {
			fmt.Fprintf(&sb, "%d\t%d\t%.0f\t%.0f\t%.4f\t%.3f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\n",
				r.Calls, r.Streams, r.OfferedPPS, r.RelayedPPS, r.Loss, r.RelayCPU, r.PPSPerCore, r.P50us, r.P99us, r.DirectP50us, r.DirectP99us, r.AddedP50us, r.AddedP99us)
		}
		b = []byte(sb.String())
	} else {
		var err error
		if b, err = json.MarshalIndent(map[string]any{"benchmark": "media relay", "go": runtime.Version(), "rows": rows}, "", "  "); err != nil {
			return err
		}
		b = append(b, '\n')
	}
	return os.WriteFile(path, b, 0o644)
}
