package sip

import (
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/media"
	"github.com/ringroute/ringroute/routing"
)

// picker is a colleague who dialled a pickup code: its own INVITE, held as
// a UAS dialog of the call it picks up, and once routing connects it, the
// other side of that call's bridge.
type picker struct {
	u     *uas
	user  string
	group string

	mu    sync.Mutex
	ended bool
}

var _ bridged = (*picker)(nil)

func (p *picker) peerDialog() *dialog { return &p.u.dialog }
func (p *picker) groupName() string   { return p.group }

// answerBody is the picker's offer: the caller gets it as the answer to
// its own offer (both sides are phones that offered; each gets the
// other's SDP).
func (p *picker) answerBody() ([]byte, string) { return p.u.req.Body(), contentType(p.u.req) }

// ackAnswer: the picker's 200 was our answer already; nothing waits for
// the caller's ACK.
func (p *picker) ackAnswer([]byte, string) {}

func (p *picker) hangUp() {
	p.u.hangUp()
	p.end()
}

// end reports the picker's leg over, once.
func (p *picker) end() {
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		return
	}
	p.ended = true
	p.mu.Unlock()
	c := p.u.c
	c.s.dialogs.remove(p.u.callID, p.u.localTag())
	c.post(routing.LegEnded{Leg: c.pickerLeg})
}

// onPickup handles a call to pickup.any or pickup.group_prefix+GROUP from
// an authenticated user (SPEC "Registrar and pickup"): the oldest call
// ringing in a group the user may pick up is connected to the picker.
// Nothing ringing: 404; a group the user may not pick up: 403. It blocks
// until the picker's INVITE has its final response.
func (s *Server) onPickup(cfg *config.Config, req *sipmsg.Request, tx sipmsg.ServerTransaction, tag, user string, log *zap.Logger) {
	num := req.Recipient.User
	refuse := func(code int, why string) {
		log.Info("pickup refused", zap.Int("code", code), zap.String("why", why), zap.String("user", user))
		_ = s.respond(req, tx, code, reasonPhrase(code))
		s.writeRejected(req, code, user)
	}
	u := cfg.User(user)
	if u == nil {
		refuse(403, "a trunk has no pickup groups")
		return
	}
	allowed := map[string]bool{}
	for _, g := range u.PickupGroups {
		allowed[g] = true
	}
	if num != cfg.Pickup.Any {
		name := strings.TrimPrefix(num, cfg.Pickup.GroupPrefix)
		if cfg.Group(name) == nil {
			refuse(404, "no group "+name)
			return
		}
		if !allowed[name] {
			refuse(403, name+" is not in the user's pickup_groups")
			return
		}
		allowed = map[string]bool{name: true}
	}
	c := s.oldestRinging(allowed)
	if c == nil {
		refuse(404, "nothing ringing")
		return
	}
	p := &picker{u: newUAS(c, req, tx), user: user, group: c.group.Name}
	p.u.fillDialog()
	p.u.side = media.Member // the picker takes the members' place in the relay
	c.mu.Lock()
	busy := c.picker != nil
	if !busy {
		c.picker = p
	}
	c.mu.Unlock()
	if busy {
		refuse(404, "someone else is picking it up")
		return
	}
	s.dialogs.add(p.u.callID, tag, dialogRef{call: c, pick: p})
	var uri string
	if t := p.u.remoteTarget; t != nil {
		uri = t.String()
	}
	c.log.Info("pickup", zap.String("by", user))
	c.post(routing.PickedUp{By: user, URI: uri})
	select {
	case <-p.u.finalSent.wait():
	case <-tx.Done():
	case <-time.After(64 * sipmsg.T1):
		p.u.reject(500)
	}
}

// oldestRinging is the call ringing longest in one of groups.
func (s *Server) oldestRinging(groups map[string]bool) *call {
	var best *call
	s.active.Range(func(k, _ any) bool {
		c := k.(*call)
		if !groups[c.group.Name] || !c.ringing() {
			return true
		}
		if best == nil || c.start.Before(best.start) {
			best = c
		}
		return true
	})
	return best
}

// ringing reports whether the call waits for an answer.
func (c *call) ringing() bool {
	c.mu.Lock()
	bridgedOrPicked := c.winner != nil || c.picker != nil
	c.mu.Unlock()
	c.a.mu.Lock()
	defer c.a.mu.Unlock()
	return !bridgedOrPicked && !c.a.final
}

// connectPicker is routing's ConnectPicker: the picker gets 200 with the
// caller's offer (through the relay's member side), the caller 200 with
// the picker's.
func (c *call) connectPicker(leg routing.LegID) {
	c.a.fillDialog()
	c.mu.Lock()
	p := c.picker
	if p != nil {
		c.winner = p
		c.pickerLeg = leg
	}
	c.mu.Unlock()
	if p == nil {
		return
	}
	body, ct := c.a.req.Body(), contentType(c.a.req)
	if c.m != nil {
		body, ct = c.m.memberOffer(), "application/sdp"
	}
	p.u.ok(body, ct, func(*sipmsg.Request) {}, func() {
		c.log.Info("picker did not take the call")
		p.end()
	})
	c.a.answer(p)
}

// streamPicker reports whether a pickup over TCP or TLS waits for the
// call, whose next step may then write to its connection.
func (c *call) streamPicker() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.picker != nil && !c.picker.u.udp()
}

// refusePicker is routing's RefusePicker: the call was answered before the
// pickup reached it.
func (c *call) refusePicker() {
	c.mu.Lock()
	p := c.picker
	c.picker = nil
	c.mu.Unlock()
	if p == nil {
		return
	}
	c.s.dialogs.remove(p.u.callID, p.u.localTag())
	p.u.reject(404)
}
