package sip

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// inviteServerTx is the server transaction of an INVITE that came in over
// UDP (RFC 3261 §17.2.1, with RFC 6026's change at the 2xx), kept by us
// instead of sipgo: udpReader takes the INVITE, its retransmissions, its
// CANCEL and the ACK of a failure off the socket, and the INVITE's handler
// runs on a goroutine of its own with this as its transaction.
//
// sipgo's transaction costs a call more than its transaction object, its
// channels and a timer: the handler has to stay blocked on sipgo's
// goroutine until the final response, an 8 KiB stack for every ringing
// call. With this one the handler's goroutine (serveInvite) returns once
// the call has nothing to do, and the call rings on no goroutine at all
// (call.begin); handlerDone, sipgo's TerminateGracefully, comes at its
// end (docs/behaviour.md).
//
// It behaves as sipgo's does toward the handler, which reads it through
// sipmsg.ServerTransaction: a CANCEL gets its 200 and the INVITE a 487
// unless a final response went first, the callback given to OnCancel runs
// under the transaction's lock, Respond fails once a CANCEL or the end got
// there first, and the transaction is gone at the 2xx (Timer L is 0, see
// linger). After a failure it sends the response again until the ACK
// (Timers G and H), then absorbs ACKs for T4 (Timer I). Every response is
// written under the lock, so that the wire sees them in the order they
// were decided (a UDP send does not block).
type inviteServerTx struct {
	t      *inviteTxs
	w      *net.UDPConn // the socket the INVITE came in on
	origin *sipmsg.Request
	branch string
	sentBy string // the top Via's host:port, with the branch the key (§17.2.3)
	dst    netip.AddrPort

	mu sync.Mutex
	// last is the most recent response as sent: a retransmitted INVITE
	// gets it again (a provisional in Proceeding, the failure in
	// Completed), and Timer G resends a failure from it. Kept as bytes,
	// not as the parsed response: a ringing call holds its 180 this way.
	last  []byte
	final bool // a final response went out
	err   error
	// armed: OnCancel was called, so the handler has finished changing
	// origin (the To tag, the request-URI) and the read loop may build
	// the 487 from it. A CANCEL before that is owed its 487, which the
	// handler's goroutine sends at its next Respond or when it returns.
	armed, owed bool
	onCancel    func(*sipmsg.Request)
	onTerm      func(string, error)
	done        chan struct{}
	closed      bool
	// Timers G, H and I on one timer: retransmit at gap, give up at
	// endAt; confirmed, the ACK came and endAt is Timer I's.
	timer     *time.Timer
	gap       time.Duration
	endAt     time.Time
	confirmed bool
}

var _ sipmsg.ServerTransaction = (*inviteServerTx)(nil)

// inviteTxs is the table of our INVITE server transactions, by the top
// Via's branch of the INVITE (a CANCEL and the ACK of a failure carry the
// same, RFC 3261 §9.1, §17.1.1.3).
type inviteTxs struct {
	mu sync.Mutex
	m  map[string]*inviteServerTx
}

// begin makes the transaction of a new INVITE, or returns the one that
// req retransmits (existing true).
func (t *inviteTxs) begin(w *net.UDPConn, req *sipmsg.Request, branch, sentBy string, from netip.AddrPort) (tx *inviteServerTx, existing bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tx := t.m[branch]; tx != nil {
		return tx, true
	}
	if t.m == nil {
		t.m = make(map[string]*inviteServerTx)
	}
	tx = &inviteServerTx{t: t, w: w, origin: req, branch: branch, sentBy: sentBy, dst: from, done: make(chan struct{})}
	t.m[branch] = tx
	return tx, false
}

func (t *inviteTxs) has(branch []byte) bool {
	t.mu.Lock()
	_, ok := t.m[string(branch)]
	t.mu.Unlock()
	return ok
}

// match is the transaction that a CANCEL or an ACK names, or nil.
func (t *inviteTxs) match(branch, sentBy string) *inviteServerTx {
	t.mu.Lock()
	tx := t.m[branch]
	t.mu.Unlock()
	if tx == nil || tx.sentBy != sentBy {
		return nil
	}
	return tx
}

func (t *inviteTxs) remove(tx *inviteServerTx) {
	t.mu.Lock()
	if t.m[tx.branch] == tx {
		delete(t.m, tx.branch)
	}
	t.mu.Unlock()
}

// close ends every transaction left (Server.Close): their timers stop,
// nothing is sent again.
func (t *inviteTxs) close() {
	t.mu.Lock()
	left := make([]*inviteServerTx, 0, len(t.m))
	for _, tx := range t.m {
		left = append(left, tx)
	}
	t.mu.Unlock()
	for _, tx := range left {
		tx.Terminate()
	}
}

// inviteKey is what identifies the transaction of a request read over
// UDP: the top Via's branch, if it is RFC 3261's (z9hG4bK), and sent-by.
// ok is false for anything else; such a request is sipgo's.
func inviteKey(req *sipmsg.Request) (branch, sentBy string, ok bool) {
	via, cseq := req.Via(), req.CSeq()
	if via == nil || cseq == nil {
		return "", "", false
	}
	branch, _ = via.Params.Get("branch")
	if len(branch) <= len(sipmsg.RFC3261BranchMagicCookie) || branch[:len(sipmsg.RFC3261BranchMagicCookie)] != sipmsg.RFC3261BranchMagicCookie {
		return "", "", false
	}
	port := via.Port
	if port <= 0 {
		port = 5060
	}
	return branch, via.Host + ":" + strconv.Itoa(port), true
}

func (tx *inviteServerTx) Origin() *sipmsg.Request { return tx.origin }

// Respond sends res, as sipgo's transaction would in its state.
func (tx *inviteServerTx) Respond(res *sipmsg.Response) error {
	if res.IsCancel() {
		return sendUDP(tx.w, res, tx.dst, nil)
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.owed {
		tx.sendCancelled()
	}
	if tx.err != nil {
		return tx.err
	}
	if tx.final {
		return nil // sipgo's Completed state ignores it too
	}
	switch {
	case res.IsProvisional():
		var err error
		if tx.last, err = tx.writeKept(res); err != nil {
			tx.failed(err)
			return tx.err
		}
	case res.IsSuccess():
		tx.final = true
		tx.last = nil
		if err := sendUDP(tx.w, res, tx.dst, nil); err != nil {
			tx.failed(err)
			return tx.err
		}
		tx.endLocked(sipmsg.ErrTransactionTerminated)
	default:
		tx.sendFailure(res)
		return tx.err
	}
	return nil
}

// sendFailure sends a final failure and enters Completed: over UDP it is
// sent again until the ACK (Timer G), for at most 64*T1 (Timer H).
func (tx *inviteServerTx) sendFailure(res *sipmsg.Response) {
	tx.final = true
	var err error
	if tx.last, err = tx.writeKept(res); err != nil {
		tx.failed(err)
		return
	}
	tx.gap = sipmsg.T1
	tx.endAt = time.Now().Add(64 * sipmsg.T1)
	tx.timer = time.AfterFunc(tx.gap, tx.onTimer)
}

// onTimer is Timers G, H and I.
func (tx *inviteServerTx) onTimer() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.closed {
		return
	}
	now := time.Now()
	if !now.Before(tx.endAt) {
		if tx.confirmed {
			tx.endLocked(sipmsg.ErrTransactionTerminated)
		} else {
			tx.endLocked(sipmsg.ErrTransactionTimeout) // no ACK (Timer H)
		}
		return
	}
	if _, err := tx.w.WriteToUDPAddrPort(tx.last, tx.dst); err != nil {
		tx.failed(err)
		return
	}
	tx.gap = min(2*tx.gap, sipmsg.T2)
	tx.timer.Reset(min(tx.gap, tx.endAt.Sub(now)))
}

// retransmitted: the INVITE came again; it gets our last response again.
func (tx *inviteServerTx) retransmitted() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.closed || tx.confirmed || tx.last == nil {
		return
	}
	if _, err := tx.w.WriteToUDPAddrPort(tx.last, tx.dst); err != nil {
		tx.failed(err)
	}
}

// cancel: the caller's CANCEL (already answered 200) matched the INVITE.
// Before a final response it gets its 487, sipgo's way: the OnCancel
// callback first, then the 487, in one step under the lock.
func (tx *inviteServerTx) cancel(req *sipmsg.Request) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.closed || tx.final || tx.err != nil {
		return
	}
	tx.err = sipmsg.ErrTransactionCanceled
	if !tx.armed {
		tx.owed = true
		return
	}
	if tx.onCancel != nil {
		tx.onCancel(req)
	}
	tx.sendCancelled()
}

// sendCancelled sends the 487 a CANCEL asked for (cancel has set err).
func (tx *inviteServerTx) sendCancelled() {
	tx.owed = false
	tx.sendFailure(sipmsg.NewResponseFromRequest(tx.origin, 487, "Request Terminated", nil))
}

// acked: the ACK of our failure came (Completed → Confirmed). Its
// retransmissions are absorbed until Timer I (T4) ends the transaction.
func (tx *inviteServerTx) acked() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.closed || !tx.final || tx.confirmed || tx.timer == nil {
		return
	}
	tx.confirmed = true
	tx.endAt = time.Now().Add(sipmsg.T4)
	tx.timer.Reset(sipmsg.T4)
}

// OnCancel registers f for a CANCEL; false if the CANCEL, or the end,
// came first (then it does not run). A CANCEL that came first gets its
// 487 now.
func (tx *inviteServerTx) OnCancel(f sipmsg.FnTxCancel) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.armed = true
	if tx.owed {
		tx.sendCancelled()
	}
	if tx.closed || tx.err == sipmsg.ErrTransactionCanceled {
		return false
	}
	if prev := tx.onCancel; prev != nil {
		tx.onCancel = func(r *sipmsg.Request) { prev(r); f(r) }
	} else {
		tx.onCancel = f
	}
	return true
}

// handlerDone is sipgo's TerminateGracefully: the handler returned. A
// transaction with its failure sent stays for its timers; without a final
// response it ends now (a CANCEL that came meanwhile still gets its 487).
func (tx *inviteServerTx) handlerDone() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.owed {
		tx.sendCancelled()
	}
	if !tx.final {
		tx.endLocked(sipmsg.ErrTransactionTerminated)
	}
}

func (tx *inviteServerTx) Terminate() {
	tx.mu.Lock()
	tx.endLocked(sipmsg.ErrTransactionTerminated)
	tx.mu.Unlock()
}

func (tx *inviteServerTx) OnTerminate(f sipmsg.FnTxTerminate) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.closed {
		return false
	}
	if prev := tx.onTerm; prev != nil {
		tx.onTerm = func(k string, err error) { prev(k, err); f(k, err) }
	} else {
		tx.onTerm = f
	}
	return true
}

func (tx *inviteServerTx) Done() <-chan struct{} { return tx.done }

func (tx *inviteServerTx) Err() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}

// Acks is never sent on: the ACK of a failure ends in the transaction,
// and the ACK of a 2xx is a transaction of its own (RFC 3261 §17.1.1.3).
func (tx *inviteServerTx) Acks() <-chan *sipmsg.Request { return nil }

// failed: a response could not be sent (RFC 3261 §17.2.4), which ends the
// transaction.
func (tx *inviteServerTx) failed(err error) {
	tx.endLocked(fmt.Errorf("udp %s: %w", tx.dst, err))
}

func (tx *inviteServerTx) endLocked(err error) {
	if tx.closed {
		return
	}
	tx.closed = true
	if tx.err == nil || err != sipmsg.ErrTransactionTerminated {
		tx.err = err
	}
	if tx.timer != nil {
		tx.timer.Stop()
	}
	tx.last = nil
	close(tx.done)
	tx.t.remove(tx)
	if f := tx.onTerm; f != nil {
		f(tx.branch, err)
	}
}

// writeKept sends res and returns it as sent, in last's memory when it
// fits, else in a copy of its own size: a ringing call keeps its 180 for
// as long as it rings.
func (tx *inviteServerTx) writeKept(res *sipmsg.Response) (kept []byte, err error) {
	err = sendUDP(tx.w, res, tx.dst, func(b []byte) { kept = append(tx.last[:0], b...) })
	return kept, err
}

var wireBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// sendUDP writes m to to out of w, serialized in a pooled buffer; keep,
// if set, sees the bytes before the buffer goes back to the pool.
func sendUDP(w *net.UDPConn, m sipmsg.Message, to netip.AddrPort, keep func([]byte)) error {
	b := wireBufs.Get().(*bytes.Buffer)
	defer wireBufs.Put(b)
	b.Reset()
	m.StringWrite(b)
	if keep != nil {
		keep(b.Bytes())
	}
	_, err := w.WriteToUDPAddrPort(b.Bytes(), to)
	return err
}

// answerCancel sends 200 to a CANCEL that matched, before the 487 to the
// INVITE, as sipgo does: the CANCEL's sender stops retransmitting first.
func answerCancel(w *net.UDPConn, req *sipmsg.Request, to netip.AddrPort) {
	_ = sendUDP(w, sipmsg.NewResponseFromRequest(req, 200, "OK", nil), to, nil)
}
