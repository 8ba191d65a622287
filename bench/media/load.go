package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what the load process reports for one run.
type loadResult struct {
	Sent, Received uint64 // during the measured window
	P50, P99, Max  float64
	Samples        int
	SendErrors     uint64
}

const (
	pktSize  = 12 + 160 // RTP header + 20 ms of G.711
	slot     = time.Millisecond
	slotsPer = 20 // a stream sends every 20 slots: 20 ms
)

// runLoad is the load process: it binds a caller and a member socket per
// call, tells the relay their ports, learns the relay's ports, then sends
// a 20 ms G.711 stream each way per call, spread evenly over the 20 ms,
// and measures one-way latency from the send time stamped in the payload
// to the arrival.
func runLoad(calls int, warm, dur time.Duration) error {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	socks := make([]*net.UDPConn, 2*calls) // 2i: caller of call i, 2i+1: member
	var ports []string
	for i := range socks {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		c.SetReadBuffer(1 << 20)
		socks[i] = c
		ports = append(ports, strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
	}
	fmt.Println(strings.Join(ports, " "))
	if !in.Scan() {
		return fmt.Errorf("load: no relay ports")
	}
	f := strings.Fields(in.Text())
	if len(f) != len(socks) {
		return fmt.Errorf("load: %d relay ports for %d sockets", len(f), len(socks))
	}
	// dst[j]: where socket j sends. Through the relay: the relay port of
	// its own side. Direct (baseline): the other peer itself.
	dst := make([]netip.AddrPort, len(socks))
	for j := range f {
		p, _ := strconv.Atoi(f[j])
		dst[j] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p))
	}

	base := time.Now()
	var measuring atomic.Bool
	var winStart, winEnd atomic.Int64 // ns since base
	winStart.Store(1 << 62)
	winEnd.Store(1 << 62)
	var received atomic.Uint64
	lat := make([][]int32, len(socks)) // µs, per receiving socket
	var wg sync.WaitGroup
	for j, c := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				n, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if n != pktSize {
					continue
				}
				// Only packets sent inside the window count, so loss
				// compares like with like.
				sentAt := int64(binary.BigEndian.Uint64(buf[12:]))
				if sentAt < winStart.Load() || sentAt >= winEnd.Load() {
					continue
				}
				lat[j] = append(lat[j], int32(time.Since(base).Microseconds()-sentAt/1000))
				received.Add(1)
			}
		}()
	}

	pkts := make([][]byte, len(socks))
	for j := range pkts {
		p := make([]byte, pktSize)
		p[0], p[1] = 0x80, 0 // V=2, PCMU
		binary.BigEndian.PutUint32(p[8:], uint32(j))
		for k := 20; k < pktSize; k++ {
			p[k] = 0xff
		}
		pkts[j] = p
	}
	var sent, sendErr uint64
	start := time.Now()
	end := start.Add(warm + dur)
	measureAt := start.Add(warm)
	seq := make([]uint16, len(socks))
	for k := 0; ; k++ {
		next := start.Add(time.Duration(k) * slot)
		if next.After(end) {
			break
		}
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		if !measuring.Load() && !next.Before(measureAt) {
			winStart.Store(time.Since(base).Nanoseconds())
			measuring.Store(true)
			fmt.Println("start")
		}
		for j := k % slotsPer; j < len(socks); j += slotsPer {
			p := pkts[j]
			binary.BigEndian.PutUint16(p[2:], seq[j])
			binary.BigEndian.PutUint32(p[4:], uint32(seq[j])*160)
			seq[j]++
			binary.BigEndian.PutUint64(p[12:], uint64(time.Since(base).Nanoseconds()))
			if _, err := socks[j].WriteToUDPAddrPort(p, dst[j]); err != nil {
				sendErr++
			}
			if measuring.Load() {
				sent++
			}
		}
	}
	winEnd.Store(time.Since(base).Nanoseconds())
	fmt.Println("stop")
	time.Sleep(200 * time.Millisecond) // let the last packets land
	measuring.Store(false)
	rcvd := received.Load()
	for _, c := range socks {
		c.Close()
	}
	wg.Wait()
	var all []int32
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	res := loadResult{Sent: sent, Received: rcvd, Samples: len(all), SendErrors: sendErr}
	if len(all) > 0 {
		q := func(p float64) float64 { return float64(all[min(len(all)-1, int(p*float64(len(all))))]) }
		res.P50, res.P99, res.Max = q(0.50), q(0.99), float64(all[len(all)-1])
	}
	b, _ := json.Marshal(res)
	fmt.Println("result " + string(b))
	return nil
}
