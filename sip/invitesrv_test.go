package sip

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// txWire is one inviteServerTx on a real socket, and the caller's end.
type txWire struct {
	tx     *inviteServerTx
	t      *inviteTxs
	caller *net.UDPConn
	inv    *sipmsg.Request
}

func newTxWire(t *testing.T) *txWire {
	t.Helper()
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	caller, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); caller.Close() })
	from := caller.LocalAddr().(*net.UDPAddr).AddrPort()
	text := fmt.Sprintf("INVITE sip:600@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-tx1\r\nFrom: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:600@127.0.0.1>\r\nCall-ID: tx-1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@%s>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", from, from)
	m, err := sipmsg.ParseMessage([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	inv := m.(*sipmsg.Request)
	inv.SetTransport("UDP")
	inv.SetSource(from.String())
	branch, sentBy, ok := inviteKey(inv)
	if !ok {
		t.Fatal("no key for the INVITE")
	}
	w := &txWire{t: &inviteTxs{}, caller: caller, inv: inv}
	w.tx, _ = w.t.begin(srv, inv, branch, sentBy, from)
	return w
}

// read is the next response the caller gets within d, or nil.
func (w *txWire) read(t *testing.T, d time.Duration) *sipmsg.Response {
	t.Helper()
	buf := make([]byte, 4096)
	_ = w.caller.SetReadDeadline(time.Now().Add(d))
	n, err := w.caller.Read(buf)
	if err != nil {
		return nil
	}
	m, err := sipmsg.ParseMessage(buf[:n])
	if err != nil {
		t.Fatalf("caller got what does not parse: %v\n%s", err, buf[:n])
	}
	res, ok := m.(*sipmsg.Response)
	if !ok {
		t.Fatalf("caller got a request:\n%s", m)
	}
	return res
}

func (w *txWire) respond(code int) error {
	return w.tx.Respond(sipmsg.NewResponseFromRequest(w.inv, code, reasonPhrase(code), nil))
}

func (w *txWire) cancel() {
	m, _ := sipmsg.ParseMessage([]byte(strings.Replace(strings.Replace(w.inv.String(), "INVITE sip:", "CANCEL sip:", 1), "1 INVITE", "1 CANCEL", 1)))
	w.tx.cancel(m.(*sipmsg.Request))
}

// TestInviteServerTx: our INVITE server transaction answers its handler
// as sipgo's does (see inviteServerTx), on the wire: what the caller gets
// for each order in which the handler, a CANCEL and the end come.
func TestInviteServerTx(t *testing.T) {
	const none = 0
	quick := 200 * time.Millisecond
	tests := []struct {
		name string
		run  func(t *testing.T, w *txWire, cancelled *int) (wire []int)
	}{
		{"180 then 200 ends it", func(t *testing.T, w *txWire, _ *int) []int {
			if err := w.respond(180); err != nil {
				t.Fatalf("180: %v", err)
			}
			if err := w.respond(200); err != nil {
				t.Fatalf("200: %v", err)
			}
			select {
			case <-w.tx.Done():
			default:
				t.Error("the transaction is not done at its 2xx")
			}
			if w.t.has([]byte("z9hG4bK-tx1")) {
				t.Error("the transaction is still in the table after its 2xx")
			}
			return []int{180, 200}
		}},
		{"CANCEL after OnCancel: callback, then 487, and the 200 fails", func(t *testing.T, w *txWire, cancelled *int) []int {
			if !w.tx.OnCancel(func(*sipmsg.Request) { *cancelled++ }) {
				t.Fatal("OnCancel refused before any CANCEL")
			}
			_ = w.respond(180)
			w.cancel()
			if err := w.respond(200); !errors.Is(err, sipmsg.ErrTransactionCanceled) {
				t.Errorf("200 after the CANCEL: %v, want ErrTransactionCanceled", err)
			}
			return []int{180, 487}
		}},
		{"CANCEL before OnCancel: the 487 waits for it", func(t *testing.T, w *txWire, cancelled *int) []int {
			w.cancel()
			// The handler may still be changing the INVITE: nothing is
			// built from it yet.
			if res := w.read(t, quick); res != nil {
				t.Fatalf("caller got %d before the handler armed the transaction", res.StatusCode)
			}
			if w.tx.OnCancel(func(*sipmsg.Request) { *cancelled++ }) {
				t.Error("OnCancel accepted after the CANCEL")
			}
			return []int{487}
		}},
		{"CANCEL before the handler's failure: 487 instead", func(t *testing.T, w *txWire, _ *int) []int {
			w.cancel()
			if err := w.respond(404); !errors.Is(err, sipmsg.ErrTransactionCanceled) {
				t.Errorf("404 after the CANCEL: %v, want ErrTransactionCanceled", err)
			}
			return []int{487}
		}},
		{"CANCEL, then the handler returns: 487", func(t *testing.T, w *txWire, _ *int) []int {
			w.cancel()
			w.tx.handlerDone()
			return []int{487}
		}},
		{"handler returns with no final response: ended, nothing sent", func(t *testing.T, w *txWire, _ *int) []int {
			w.tx.handlerDone()
			select {
			case <-w.tx.Done():
			default:
				t.Error("the transaction is not done")
			}
			return []int{none}
		}},
		{"CANCEL after the failure changes nothing", func(t *testing.T, w *txWire, cancelled *int) []int {
			w.tx.OnCancel(func(*sipmsg.Request) { *cancelled++ })
			_ = w.respond(486)
			w.cancel()
			w.tx.acked()
			return []int{486}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newTxWire(t)
			defer w.tx.Terminate()
			cancelled := 0
			want := tt.run(t, w, &cancelled)
			var got []int
			for res := w.read(t, quick); res != nil; res = w.read(t, quick) {
				got = append(got, res.StatusCode)
			}
			if want[0] == none {
				want = nil
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("caller got %v, want %v", got, want)
			}
			wantCancelled := 0
			if strings.HasPrefix(tt.name, "CANCEL after OnCancel") {
				wantCancelled = 1
			}
			if cancelled != wantCancelled {
				t.Errorf("OnCancel callback ran %d times, want %d", cancelled, wantCancelled)
			}
		})
	}
}

// A retransmitted INVITE gets the last provisional again from our
// transaction, and rings nobody twice (RFC 3261 §17.2.1).
func TestRetransmittedInviteGets180Again(t *testing.T) {
	caller, member, cid, inv, first := ringingCall(t)
	caller.send(caller.inviteText("600", cid))
	again := caller.response(180, wait)
	if tag(again.To()) != tag(first.To()) || viaBranch(again) != viaBranch(first) {
		t.Errorf("180 again has To tag %q and branch %q, want %q and %q", tag(again.To()), viaBranch(again), tag(first.To()), viaBranch(first))
	}
	member.quiet("a second INVITE", isReq(sipmsg.INVITE), 300*time.Millisecond)
	refuseRinging(caller, member, inv)
}

// A failure goes out again until its ACK, from T1 doubling (Timer G), and
// not after it (RFC 3261 §17.2.1).
func TestFailureResentUntilAck(t *testing.T) {
	member, caller := newPeer(t, "m1"), newPeer(t, "caller")
	startServer(t, groupConfig("all", member.uri("m1")), caller, member)
	caller.invite("600")
	inv := member.request(sipmsg.INVITE, wait)
	member.reply(inv, 486, "m1tag", "")
	member.request(sipmsg.ACK, wait)
	start := time.Now()
	res := caller.response(486, wait)
	var at []time.Duration
	for range 2 {
		caller.response(486, 3*time.Second)
		at = append(at, time.Since(start))
	}
	for i, want := range []time.Duration{sipmsg.T1, 3 * sipmsg.T1} {
		if d := at[i] - want; d < -100*time.Millisecond || d > 300*time.Millisecond {
			t.Errorf("486 copy %d came %v after the first, want about %v", i+2, at[i].Round(time.Millisecond), want)
		}
	}
	caller.send(fmt.Sprintf("ACK sip:600@127.0.0.1:%d SIP/2.0\nVia: %s\nFrom: %s\nTo: %s\nCall-ID: %s\nCSeq: 1 ACK\nMax-Forwards: 70\n\n",
		caller.to.Port, res.Via().Value(), res.From().Value(), res.To().Value(), res.CallID().Value()))
	caller.quiet("486 after the ACK", func(m sipmsg.Message) bool {
		r, ok := m.(*sipmsg.Response)
		return ok && r.StatusCode == 486
	}, 4*sipmsg.T1+300*time.Millisecond)
}

// A ringing call holds no goroutine: once its member rings, nothing of
// ringroute's waits in the call or in the INVITE's handling (call.begin).
// A goroutine that stepped the call may take a moment to return after the
// 180 went out, so the test looks again for up to a second.
func TestRingingCallHoldsNoGoroutine(t *testing.T) {
	caller, member, _, inv, _ := ringingCall(t)

	held := func() string {
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			for _, f := range []string{"sip.(*call).", "sip.(*Server).serveInvite(", "sip.(*Server).onInvite(", "sip.(*Server).startInvite("} {
				if strings.Contains(g, "ringroute/"+f) {
					return g
				}
			}
		}
		return ""
	}
	var g string
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if g = held(); g == "" {
			break
		}
	}
	if g != "" {
		t.Errorf("a goroutine is held by the ringing call:\n%s", g)
	}
	refuseRinging(caller, member, inv)
}

// ringingCall is a call from caller to a one-member group whose member
// rings: its Call-ID, the member's INVITE and the caller's 180.
func ringingCall(t *testing.T) (caller, member *peer, cid string, inv *sipmsg.Request, ringing *sipmsg.Response) {
	t.Helper()
	member, caller = newPeer(t, "m1"), newPeer(t, "caller")
	startServer(t, groupConfig("all", member.uri("m1")), caller, member)
	cid = caller.invite("600")
	inv = member.request(sipmsg.INVITE, wait)
	member.reply(inv, 180, "m1tag", "")
	return caller, member, cid, inv, caller.response(180, wait)
}

// refuseRinging ends a ringing call: the member is busy, and so is the call.
func refuseRinging(caller, member *peer, inv *sipmsg.Request) {
	member.reply(inv, 486, "m1tag", "")
	member.request(sipmsg.ACK, wait)
	caller.response(486, wait)
}
