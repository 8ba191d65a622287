package sip

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/config"
)

// FuzzDatagram is the message path from datagram to routing decision: each
// input (torture placeholders filled in, see testdata/torture/README.md)
// goes to one ringroute per fuzz process as a UDP datagram and down a
// fresh TCP connection. Whatever it is, the server must still answer an
// OPTIONS afterwards and have no call or leg left within a bound; a panic
// anywhere in the server kills the fuzz process, which records the input.
//
// The seeds are every torture message (testdata/torture/*.sip) and what
// sip/testdata/fuzz/FuzzDatagram holds: inputs the fuzzer found worth
// keeping, cut messages among them.
//
// The member of group 600 refuses every INVITE at once (486) and the
// caller ACKs every final response, so routed inputs end in milliseconds.
//
//	go test ./sip/ -run '^$' -fuzz '^FuzzDatagram$' -fuzztime 5m
func FuzzDatagram(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join(tortureDir, "*.sip"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no torture messages in %s: %v", tortureDir, err)
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Cleanup(func() {
		if fz != nil && fz.s != nil {
			fz.close()
		}
		// The next run of this target in the process (go test -count=2)
		// starts its own server instead of probing the closed one.
		fz, fuzzOnce = nil, sync.Once{}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOnce.Do(func() { fz = startFuzzServer() })
		if fz.err != nil {
			t.Fatalf("fuzz server: %v", fz.err)
		}
		fz.run(t, data)
	})
}

var (
	fuzzOnce sync.Once
	fz       *fuzzServer
)

// fuzzServer is the one ringroute of a fuzz process, with its member, the
// caller socket inputs leave from and a probe socket for OPTIONS.
type fuzzServer struct {
	s       *Server
	server  string
	caller  *net.UDPConn
	member  *net.UDPConn
	probe   *net.UDPConn
	alive   chan string // Call-IDs of 200s to the probe's OPTIONS
	seq     atomic.Uint64
	prefix  string
	err     error
	readers sync.WaitGroup
}

func startFuzzServer() *fuzzServer {
	fz := &fuzzServer{alive: make(chan string, 16), prefix: fmt.Sprintf("fz%d-", os.Getpid())}
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	var err error
	for _, c := range []**net.UDPConn{&fz.caller, &fz.member, &fz.probe} {
		if *c, err = net.ListenUDP("udp", lo); err != nil {
			fz.err = err
			return fz
		}
	}
	memberURI := "sip:m@" + fz.member.LocalAddr().String()
	var cfg *config.Config
	for i := 0; i < 20; i++ {
		port, ok := fuzzFreePort()
		if !ok {
			continue
		}
		text := strings.ReplaceAll(tortureConfig(memberURI), "%UDP%", fmt.Sprint(port))
		if cfg, err = config.Parse("fuzz.yaml", []byte(text)); err != nil {
			fz.err = err
			return fz
		}
		if fz.s, err = New(cfg, Options{Log: zap.NewNop()}); err != nil {
			fz.err = err
			return fz
		}
		if err = fz.s.Start(); err == nil {
			break
		}
		fz.s = nil
	}
	if fz.s == nil {
		fz.err = fmt.Errorf("no server started: %v", err)
		return fz
	}
	ap, _ := fz.s.Addr("udp")
	fz.server = ap.String()
	srv := net.UDPAddrFromAddrPort(ap)
	fz.readers.Add(3)
	go fz.read(fz.member, func(m sipmsg.Message) { fz.memberAnswers(m, srv) })
	go fz.read(fz.caller, func(m sipmsg.Message) { fz.callerAcks(m, srv) })
	go fz.read(fz.probe, func(m sipmsg.Message) {
		if r, ok := m.(*sipmsg.Response); ok && r.StatusCode == 200 && r.CallID() != nil {
			select {
			case fz.alive <- r.CallID().Value():
			default:
			}
		}
	})
	return fz
}

// fuzzFreePort is a loopback port free for both UDP and TCP, or false.
func fuzzFreePort() (int, bool) {
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, false
	}
	defer u.Close()
	port := u.LocalAddr().(*net.UDPAddr).Port
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, false
	}
	l.Close()
	return port, true
}

func (fz *fuzzServer) close() {
	fz.s.Close()
	for _, c := range []*net.UDPConn{fz.caller, fz.member, fz.probe} {
		c.Close()
	}
	fz.readers.Wait()
}

// read hands every message that arrives on c to h (what ringroute sends
// must parse: anything else is reported by the OPTIONS check failing only
// if it matters, so it is just skipped here).
func (fz *fuzzServer) read(c *net.UDPConn, h func(sipmsg.Message)) {
	defer fz.readers.Done()
	buf := make([]byte, 65535)
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if m, err := sipmsg.ParseMessage(append([]byte(nil), buf[:n]...)); err == nil {
			h(m)
		}
	}
}

// memberAnswers is a member that refuses every call at once and answers
// whatever else ringroute may send it.
func (fz *fuzzServer) memberAnswers(m sipmsg.Message, srv *net.UDPAddr) {
	req, ok := m.(*sipmsg.Request)
	if !ok || req.IsAck() {
		return
	}
	code, reason := 200, "OK"
	if req.IsInvite() {
		code, reason = 486, "Busy Here"
	}
	res := sipmsg.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", "fm")
	}
	_, _ = fz.member.WriteToUDP([]byte(res.String()), srv)
}

// callerAcks ACKs every final failure to an INVITE, so that ringroute's
// server transaction stops retransmitting it.
func (fz *fuzzServer) callerAcks(m sipmsg.Message, srv *net.UDPAddr) {
	res, ok := m.(*sipmsg.Response)
	if !ok || res.StatusCode < 300 || res.CSeq() == nil || res.CSeq().MethodName != sipmsg.INVITE ||
		res.Via() == nil || res.From() == nil || res.To() == nil || res.CallID() == nil {
		return
	}
	ack := fmt.Sprintf("ACK sip:600@%s SIP/2.0\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		fz.server, res.Via().Value(), res.From().Value(), res.To().Value(), res.CallID().Value(), res.CSeq().SeqNo)
	_, _ = fz.caller.WriteToUDP([]byte(ack), srv)
}

func (fz *fuzzServer) run(t *testing.T, data []byte) {
	srv, _ := net.ResolveUDPAddr("udp", fz.server)
	id := fz.prefix + fmt.Sprint(fz.seq.Add(1))
	vars := map[string]string{"SERVER": fz.server, "PEER": fz.caller.LocalAddr().String(), "ID": id + "u", "TRANSPORT": "UDP"}
	if msg := fill(data, vars); len(msg) <= 65507 && len(msg) > 0 {
		_, _ = fz.caller.WriteToUDP(msg, srv)
	}
	fz.check(t, data, "UDP")

	c, err := net.Dial("tcp", fz.server)
	if err != nil {
		t.Fatalf("tcp listener gone: %v", err)
	}
	defer c.Close()
	vars["PEER"], vars["ID"], vars["TRANSPORT"] = c.LocalAddr().String(), id+"t", "TCP"
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(fill(data, vars))
	fz.check(t, data, "TCP")
}

// check: the server answers OPTIONS and ends every call the input started.
func (fz *fuzzServer) check(t *testing.T, data []byte, tr string) {
	t.Helper()
	srv, _ := net.ResolveUDPAddr("udp", fz.server)
	cid := "probe-" + fz.prefix + fmt.Sprint(fz.seq.Add(1))
	probe := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s\r\nFrom: <sip:probe@example.net>;tag=p\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		fz.server, fz.probe.LocalAddr(), cid, fz.server, cid)
	deadline := time.After(2 * time.Second)
	resend := time.NewTicker(500 * time.Millisecond)
	defer resend.Stop()
	_, _ = fz.probe.WriteToUDP([]byte(probe), srv)
wait:
	for {
		select {
		case got := <-fz.alive:
			if got == cid {
				break wait
			}
		case <-resend.C:
			_, _ = fz.probe.WriteToUDP([]byte(probe), srv)
		case <-deadline:
			t.Fatalf("no 200 to OPTIONS after the input over %s:\n%q", tr, data)
		}
	}
	end := time.Now().Add(5 * time.Second)
	for {
		calls, legs := fz.s.Live()
		if calls == 0 && legs == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("stuck after the input over %s: %d calls, %d legs\n%q", tr, calls, legs, data)
		}
		time.Sleep(200 * time.Microsecond)
	}
}
