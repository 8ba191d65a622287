package main

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// tap watches SIP on the loopback interface through an AF_PACKET socket
// and takes the kernel's receive time stamp (SO_TIMESTAMPNS) of the five
// messages of a call that tell the system under test's own delay apart
// from the members' ring time:
//
//	inv   the caller's INVITE to the SUT
//	r180  the first 180 the SUT sends the caller
//	r200  the 200 (to the INVITE) the SUT sends the caller
//	minv  the SUT's INVITE to the member that answers
//	m200  that member's 200
//
// Calls are paired across the SUT by the From user (c<call number>), which
// ringroute and Kamailio both pass on. SIPp's own timers count in steps of
// the kernel tick (4 ms here), too coarse for a 2 ms target; the tap
// resolves microseconds. A classic BPF filter in the kernel keeps only
// UDP to or from the caller's and the answering member's ports whose
// payload starts with "INVI", "SIP/2.0 18" or "SIP/2.0 20", and only the
// incoming copy of each datagram (loopback shows both), so the tap reads
// about six datagrams a call.
type tap struct {
	fd                   int
	caller, sut, answers int
	stopping             atomic.Bool
	done                 chan struct{}

	mu    sync.Mutex
	calls map[string]*tapCall
	err   error
}

type tapCall struct{ inv, r180, r200, minv, m200 int64 }

// tapResult is the SUT's delay, in microseconds, over the calls the tap
// saw whole.
type tapResult struct {
	Calls int    // calls with all five time stamps
	Seen  int    // calls whose INVITE the tap saw
	Drops uint32 // datagrams the kernel dropped from the tap's queue
	// Setup: INVITE→200 at the caller. Ring: INVITE→200 at the
	// answering member (its own ring time, as SIPp kept it). Added:
	// Setup − Ring − the nominal ring time of the members tried before
	// (linear: 2 × 500 ms): what the SUT adds to call setup. Fork: the
	// caller's INVITE to the answering member's INVITE, less that same
	// nominal time. Answer: the member's 200 to the caller's 200.
	Setup, R180, Ring, Added, Fork, Answer pct
}

const tapAvailable = true

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func startTap(caller, sutPort, answers int) (*tap, error) {
	lo, err := loopbackIndex()
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, int(htons(syscall.ETH_P_IP)))
	if err != nil {
		return nil, err
	}
	t := &tap{fd: fd, caller: caller, sut: sutPort, answers: answers, done: make(chan struct{}), calls: map[string]*tapCall{}}
	fail := func(err error) (*tap, error) {
		syscall.Close(fd)
		return nil, err
	}
	prog := tapFilter(caller, answers)
	fp := syscall.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, e := syscall.Syscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_ATTACH_FILTER, uintptr(unsafe.Pointer(&fp)), unsafe.Sizeof(fp), 0); e != 0 {
		return fail(e)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_IP), Ifindex: lo}); err != nil {
		return fail(err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		return fail(err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 16<<20)
	tv := syscall.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return fail(err)
	}
	packetStats(fd) // reset the counters
	go t.read()
	return t, nil
}

func loopbackIndex() (int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			return i.Index, nil
		}
	}
	return 0, errors.New("tap: no loopback interface")
}

// tapFilter is the classic BPF program described on tap, over an IPv4
// datagram without link header (SOCK_DGRAM).
func tapFilter(caller, answers int) []syscall.SockFilter {
	const (
		ldwAbs  = syscall.BPF_LD | syscall.BPF_W | syscall.BPF_ABS
		ldbAbs  = syscall.BPF_LD | syscall.BPF_B | syscall.BPF_ABS
		ldhAbs  = syscall.BPF_LD | syscall.BPF_H | syscall.BPF_ABS
		ldhInd  = syscall.BPF_LD | syscall.BPF_H | syscall.BPF_IND
		ldwInd  = syscall.BPF_LD | syscall.BPF_W | syscall.BPF_IND
		ldxMsh  = syscall.BPF_LDX | syscall.BPF_B | syscall.BPF_MSH
		jeq     = syscall.BPF_JMP | syscall.BPF_JEQ | syscall.BPF_K
		jset    = syscall.BPF_JMP | syscall.BPF_JSET | syscall.BPF_K
		retK    = syscall.BPF_RET | syscall.BPF_K
		pkttype = 0xfffff000 + 4 // SKF_AD_OFF + SKF_AD_PKTTYPE
		payload = 13             // first instruction of the payload test
		drop    = 19
		accept  = 20
	)
	var p []syscall.SockFilter
	add := func(code uint16, k uint32, jt, jf int) {
		i := len(p)
		f := syscall.SockFilter{Code: code, K: k}
		if code&0x07 == syscall.BPF_JMP {
			f.Jt, f.Jf = uint8(jt-i-1), uint8(jf-i-1)
		}
		p = append(p, f)
	}
	next := func() int { return len(p) + 1 }
	add(ldwAbs, pkttype, 0, 0)                  // 0
	add(jeq, syscall.PACKET_HOST, next(), drop) // 1: the incoming copy
	add(ldbAbs, 9, 0, 0)                        // 2: protocol
	add(jeq, syscall.IPPROTO_UDP, next(), drop) // 3
	add(ldhAbs, 6, 0, 0)                        // 4: fragment offset
	add(jset, 0x1fff, drop, next())             // 5
	add(ldxMsh, 0, 0, 0)                        // 6: X = IP header length
	add(ldhInd, 0, 0, 0)                        // 7: source port
	add(jeq, uint32(caller), payload, next())   // 8
	add(jeq, uint32(answers), payload, next())  // 9
	add(ldhInd, 2, 0, 0)                        // 10: destination port
	add(jeq, uint32(caller), payload, next())   // 11
	add(jeq, uint32(answers), payload, drop)    // 12
	add(ldwInd, 8, 0, 0)                        // 13: payload[0:4]
	add(jeq, 0x494e5649, accept, next())        // 14: "INVI"
	add(jeq, 0x5349502f, next(), drop)          // 15: "SIP/"
	add(ldhInd, 8+8, 0, 0)                      // 16: payload[8:10], the status code
	add(jeq, 0x3138, accept, next())            // 17: "18"
	add(jeq, 0x3230, accept, drop)              // 18: "20"
	add(retK, 0, 0, 0)                          // 19
	add(retK, 1<<16, 0, 0)                      // 20
	if len(p) != accept+1 {
		panic("tapFilter: layout")
	}
	return p
}

func packetStats(fd int) (packets, drops uint32) {
	var st [2]uint32 // struct tpacket_stats
	l := uint32(unsafe.Sizeof(st))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_PACKET, 6 /* PACKET_STATISTICS */, uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, 0
	}
	return st[0], st[1]
}

func (t *tap) read() {
	defer close(t.done)
	buf := make([]byte, 1<<16)
	oob := make([]byte, 256)
	for {
		n, oobn, _, _, err := syscall.Recvmsg(t.fd, buf, oob, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				if t.stopping.Load() {
					return
				}
				continue
			}
			t.mu.Lock()
			t.err = err
			t.mu.Unlock()
			return
		}
		var at int64
		if oobn >= syscall.CmsgSpace(16) {
			if cms, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, cm := range cms {
					if cm.Header.Level == syscall.SOL_SOCKET && cm.Header.Type == syscall.SO_TIMESTAMPNS && len(cm.Data) >= 16 {
						ts := (*syscall.Timespec)(unsafe.Pointer(&cm.Data[0]))
						at = ts.Nano()
					}
				}
			}
		}
		if at == 0 {
			at = time.Now().UnixNano()
		}
		t.packet(buf[:n], at)
	}
}

func (t *tap) packet(b []byte, at int64) {
	if len(b) < 20 {
		return
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+8 {
		return
	}
	src := int(b[ihl])<<8 | int(b[ihl+1])
	dst := int(b[ihl+2])<<8 | int(b[ihl+3])
	msg := b[ihl+8:]
	invite := bytes.HasPrefix(msg, []byte("INVITE "))
	code := 0
	if bytes.HasPrefix(msg, []byte("SIP/2.0 180")) {
		code = 180
	} else if bytes.HasPrefix(msg, []byte("SIP/2.0 200")) {
		code = 200
	}
	if !invite && (code == 0 || !cseqInvite(msg)) {
		return
	}
	user := fromUser(msg)
	if user == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.calls[user]
	if c == nil {
		if !(invite && src == t.caller) {
			return // only calls the tap saw start
		}
		c = &tapCall{}
		t.calls[user] = c
	}
	set := func(f *int64) {
		if *f == 0 {
			*f = at
		}
	}
	switch {
	case invite && src == t.caller && dst == t.sut:
		set(&c.inv)
	case invite && dst == t.answers:
		set(&c.minv)
	case code == 180 && dst == t.caller:
		set(&c.r180)
	case code == 200 && dst == t.caller:
		set(&c.r200)
	case code == 200 && src == t.answers:
		set(&c.m200)
	}
}

// header returns the value of the first header named name (or its compact
// form) in a SIP message.
func header(msg []byte, name, compact string) []byte {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	for _, l := range bytes.Split(msg[:end], []byte("\r\n"))[1:] {
		k, v, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		k = bytes.TrimSpace(k)
		if bytes.EqualFold(k, []byte(name)) || compact != "" && bytes.EqualFold(k, []byte(compact)) {
			return bytes.TrimSpace(v)
		}
	}
	return nil
}

func cseqInvite(msg []byte) bool {
	return bytes.HasSuffix(header(msg, "CSeq", ""), []byte("INVITE"))
}

func fromUser(msg []byte) string {
	v := header(msg, "From", "f")
	i := bytes.Index(v, []byte("sip:"))
	if i < 0 {
		return ""
	}
	v = v[i+4:]
	at := bytes.IndexByte(v, '@')
	if at < 0 {
		return ""
	}
	return string(v[:at])
}

// halt stops the tap and computes the delays; before is the scenario's
// nominal ring time of the members tried before the answering one.
func (t *tap) halt(before time.Duration) (tapResult, error) {
	t.stopping.Store(true)
	<-t.done
	_, drops := packetStats(t.fd)
	syscall.Close(t.fd)
	t.mu.Lock()
	defer t.mu.Unlock()
	r := tapResult{Seen: len(t.calls), Drops: drops}
	var setup, r180, ring, added, fork, answer []float64
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	b := before.Nanoseconds()
	for _, c := range t.calls {
		if c.inv == 0 || c.r200 == 0 || c.minv == 0 || c.m200 == 0 {
			continue
		}
		r.Calls++
		setup = append(setup, us(c.r200-c.inv))
		ring = append(ring, us(c.m200-c.minv))
		added = append(added, us(c.r200-c.inv-(c.m200-c.minv)-b))
		fork = append(fork, us(c.minv-c.inv-b))
		answer = append(answer, us(c.r200-c.m200))
		if c.r180 != 0 {
			r180 = append(r180, us(c.r180-c.inv))
		}
	}
	r.Setup, r.R180, r.Ring, r.Added, r.Fork, r.Answer = percentiles(setup), percentiles(r180), percentiles(ring), percentiles(added), percentiles(fork), percentiles(answer)
	return r, t.err
}
