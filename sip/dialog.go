package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	sipgo "github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/media"
)

// dialog is one side of a bridged call as RFC 3261 §12 defines it: what we
// need to send requests inside it. sipgo's dialog helpers are not used
// because a B2BUA must hold both sides of every dialog in one place and
// decide itself when to ACK, CANCEL and BYE (see the notes on WaitAnswer).
type dialog struct {
	mu     sync.Mutex
	callID string
	// Pointers, not values: a member leg shares its INVITE's From and To
	// until an answer gives it a remote of its own, so a ringing leg does
	// not carry a second copy of each (half its size).
	local        *sipmsg.FromHeader // our party, with our tag
	remote       *sipmsg.ToHeader   // their party, with their tag
	remoteTarget *sipmsg.Uri        // their Contact; nil: none yet
	routeSet     []sipmsg.Uri       // in the order requests carry them
	cseq         uint32             // last CSeq we used
	remoteCSeq   uint32             // last CSeq they used
	client       *sipgo.Client
	transport    string // "UDP", "TCP"
	// destination overrides where requests go when there is no route set:
	// the source address of the peer's messages, so that phones behind NAT
	// and TCP connections the peer opened keep working.
	destination string
	contact     *sipmsg.ContactHeader
	side        media.Side // which side of the relay this dialog's peer is on
	// pending is a relayed re-INVITE whose 2xx we sent this peer and whose
	// ACK we wait for.
	pending *pendingAck
}

func (d *dialog) localTag() string {
	t, _ := d.local.Params.Get("tag")
	return t
}

// newRequest builds the next in-dialog request of method m (RFC 3261
// §12.2.1.1). ACK reuses the CSeq of the INVITE it acknowledges, which the
// caller passes as seq; other methods take the next number (seq 0).
func (d *dialog) newRequest(m sipmsg.RequestMethod, seq uint32) *sipmsg.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	if seq == 0 {
		d.cseq++
		seq = d.cseq
	}
	var target sipmsg.Uri
	if d.remoteTarget != nil {
		target = *d.remoteTarget.Clone()
	}
	req := sipmsg.NewRequest(m, target)
	for _, r := range d.routeSet {
		req.AppendHeader(&sipmsg.RouteHeader{Address: *r.Clone()})
	}
	from := *d.local
	from.Params = d.local.Params.Clone()
	req.AppendHeader(&from)
	to := *d.remote
	to.Params = d.remote.Params.Clone()
	req.AppendHeader(&to)
	cid := sipmsg.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: seq, MethodName: m})
	mf := sipmsg.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	if m == sipmsg.INVITE || m == sipmsg.UPDATE {
		req.AppendHeader(d.contact.Clone())
	}
	req.SetTransport(d.transport)
	if d.destination != "" && len(d.routeSet) == 0 {
		req.SetDestination(d.destination)
	} else {
		// What sipgo would work out (the first Route, else the
		// Request-URI), once: unset, it does so on every write and
		// retransmission, a Route header and a Sprintf each time.
		req.SetDestination(req.Destination())
	}
	return req
}

// checkRemoteCSeq records the CSeq of a request from the peer and reports
// whether it is in order (RFC 3261 §12.2.2: lower than the last is a 500).
func (d *dialog) checkRemoteCSeq(req *sipmsg.Request) bool {
	cs := req.CSeq()
	if cs == nil {
		return false
	}
	if cs.MethodName == sipmsg.ACK || cs.MethodName == sipmsg.CANCEL {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.remoteCSeq != 0 && cs.SeqNo <= d.remoteCSeq {
		return false
	}
	d.remoteCSeq = cs.SeqNo
	return true
}

// dialogRef tells which side of which call a dialog belongs to.
type dialogRef struct {
	call *call
	leg  *uac    // a member leg
	pick *picker // a colleague who picked the call up
	// neither: the caller side
}

// dialogTable finds the call for in-dialog requests, keyed by Call-ID and
// our own tag (the To tag of a request the peer sends us).
type dialogTable struct {
	mu sync.Mutex
	m  map[string]dialogRef
}

func dialogKey(callID, localTag string) string { return callID + "\x00" + localTag }

func (t *dialogTable) add(callID, localTag string, r dialogRef) {
	t.mu.Lock()
	t.m[dialogKey(callID, localTag)] = r
	t.mu.Unlock()
}

func (t *dialogTable) remove(callID, localTag string) {
	t.mu.Lock()
	delete(t.m, dialogKey(callID, localTag))
	t.mu.Unlock()
}

// match finds the dialog of a request the peer sent: our tag is its To tag.
func (t *dialogTable) match(req *sipmsg.Request) (dialogRef, bool) {
	cid, to := req.CallID(), req.To()
	if cid == nil || to == nil {
		return dialogRef{}, false
	}
	tag, ok := to.Params.Get("tag")
	if !ok {
		return dialogRef{}, false
	}
	t.mu.Lock()
	r, ok := t.m[dialogKey(cid.Value(), tag)]
	t.mu.Unlock()
	return r, ok
}

// errNoACK: a 2xx went unacknowledged for 64*T1.
var errNoACK = errors.New("no ACK for 64*T1")

// awaitACK keeps sending a 2xx until its ACK comes on acked (RFC
// 3261 §13.3.1.4: the transaction layer does not retransmit 2xx; over UDP
// the TU does, from T1 doubling up to T2). It gives up after 64*T1
// (errNoACK), or when stop closes or the server closes (nil, nil).
func (s *Server) awaitACK(res *sipmsg.Response, transport string, acked <-chan *sipmsg.Request, stop <-chan struct{}) (*sipmsg.Request, error) {
	reliable := sipmsg.IsReliable(transport)
	interval := sipmsg.T1
	deadline := time.NewTimer(64 * sipmsg.T1)
	defer deadline.Stop()
	tick := time.NewTimer(interval)
	defer tick.Stop()
	for {
		select {
		case ack := <-acked:
			return ack, nil
		case <-tick.C:
			if !reliable {
				// Straight to the transport: the INVITE transaction
				// is gone at its 2xx (Timer L is 0, see linger).
				if err := s.writeResponse(res); err != nil {
					s.log.Debug("2xx retransmission failed", zap.Error(err))
				}
				interval = min(2*interval, sipmsg.T2)
			}
			tick.Reset(interval)
		case <-deadline.C:
			return nil, errNoACK
		case <-stop:
			return nil, nil
		case <-s.closing:
			return nil, nil
		}
	}
}

// writeResponse sends res outside any transaction, to its destination.
// Over UDP it goes out of our socket itself: sipgo finds the socket by the
// peer's address, which it learns only from what it reads, and an INVITE
// over UDP is ours (inviteServerTx), not sipgo's.
func (s *Server) writeResponse(res *sipmsg.Response) error {
	if s.udpConn == nil || !strings.EqualFold(res.Transport(), "UDP") {
		return s.srv.WriteResponse(res)
	}
	to, err := netip.ParseAddrPort(res.Destination())
	if err != nil {
		return fmt.Errorf("response destination %q: %w", res.Destination(), err)
	}
	return sendUDP(s.udpConn, res, to, nil)
}

// setupTable holds the INVITEs being set up, by Call-ID and From tag, with
// their CSeq: the same call arriving again on a new branch must not ring
// the group twice. The same CSeq is a merged request (482, RFC 3261
// §8.2.2.2); another one arrives while the first has no final response yet
// (500 with Retry-After, §14.2). Once the first has its final response, a
// new CSeq is a new call (how a caller retries after a challenge).
type setupTable struct {
	mu sync.Mutex
	m  map[string]*sipmsg.Request // the INVITE that holds the place
}

// begin records req, or returns the code to refuse it with; done forgets
// it (end does the same from the paths that send the final response).
func (t *setupTable) begin(req *sipmsg.Request) (done func(), code int) {
	key := setupKey(req)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*sipmsg.Request{}
	}
	if old, ok := t.m[key]; ok {
		if old.CSeq().SeqNo == req.CSeq().SeqNo {
			return nil, 482
		}
		return nil, 500
	}
	t.m[key] = req
	return func() { t.end(req) }, 0
}

// end forgets req as it gets its final response, before the response is
// written: a caller that retries at once (after a 407, or a 486) must
// find its Call-ID free, not win a race with the handler's return. Only
// the INVITE that holds the place frees it: the 482 or 500 that refuses
// another one must not.
func (t *setupTable) end(req *sipmsg.Request) {
	if req.Method != sipmsg.INVITE || req.From() == nil || req.CallID() == nil || req.CSeq() == nil {
		return
	}
	key := setupKey(req)
	t.mu.Lock()
	if t.m[key] == req {
		delete(t.m, key)
	}
	t.mu.Unlock()
}

func setupKey(req *sipmsg.Request) string {
	ftag, _ := req.From().Params.Get("tag")
	return req.CallID().Value() + "\x00" + ftag
}
