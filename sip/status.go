package sip

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ringroute/ringroute/routing"
)

// GroupStatus is one group as /api/v1/groups shows it.
type GroupStatus struct {
	Name      string         `json:"name"`
	Label     string         `json:"label,omitempty"`
	Extension string         `json:"extension,omitempty"`
	Numbers   []string       `json:"numbers,omitempty"`
	Strategy  string         `json:"strategy"`
	Enabled   bool           `json:"enabled"`
	Calls     int            `json:"calls"` // calls in the group now, ringing or talking
	Members   []MemberStatus `json:"members"`
}

// MemberStatus is one member of a group and what it is doing.
type MemberStatus struct {
	Key      string   `json:"key"`
	State    string   `json:"state"`              // idle | ringing | in call
	Contacts []string `json:"contacts,omitempty"` // a user's registered contacts
}

// CallStatus is one live call as /api/v1/calls shows it.
type CallStatus struct {
	CallID    string      `json:"call_id"`
	Group     string      `json:"group"`
	Caller    string      `json:"caller"`
	Dialled   string      `json:"dialled"`
	Start     time.Time   `json:"start"`
	State     string      `json:"state"` // ringing | answered | ending
	Legs      []LegStatus `json:"legs"`
	Decisions []string    `json:"decisions,omitempty"` // only for /api/v1/calls/{id}
}

// LegStatus is one leg of a live call.
type LegStatus struct {
	Leg    int    `json:"leg"`
	Group  string `json:"group"`
	Member string `json:"member"`
	URI    string `json:"uri"`
	State  string `json:"state"` // calling | ringing | answered | ended
	Code   int    `json:"code,omitempty"`
}

// legState is what a leg shows in the status API; uac keeps it current.
type legState struct {
	mu    sync.Mutex
	state string
	code  int
}

func (s *legState) set(state string, code int) {
	s.mu.Lock()
	s.state, s.code = state, code
	s.mu.Unlock()
}

func (s *legState) get() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.code
}

// decisions is a call's decision log: why each member was or was not
// rung, group by group (routing's Trace), for debug logs and
// /api/v1/calls/{id}.
type decisions struct {
	mu     sync.Mutex
	events []routing.TraceEvent // formatted only when read: most calls' never are
}

// maxDecisions bounds a call's log: a group with a long timeout and a
// short retry_delay plans a pass every few seconds.
const maxDecisions = 200

func (c *call) trace(ev routing.TraceEvent) {
	// Checked first: the fields escape to zap's core, so a plain Debug
	// allocated them at every decision with debug logging off (300 bytes a
	// call).
	if ce := c.log.Check(zap.DebugLevel, "decision"); ce != nil {
		ce.Write(zap.String("group", ev.Group), zap.String("kind", ev.Kind), zap.String("text", ev.Text))
	}
	c.decisions.mu.Lock()
	if c.decisions.events == nil {
		// A routed call takes three to five decisions before its
		// first answer: room for them at once, not three regrowths.
		c.decisions.events = make([]routing.TraceEvent, 0, 4)
	}
	if len(c.decisions.events) < maxDecisions {
		c.decisions.events = append(c.decisions.events, ev)
	}
	c.decisions.mu.Unlock()
}

// Groups is every group of the running config with what its members do
// now.
func (s *Server) Groups() []GroupStatus {
	cfg := s.Config()
	ringing, talking := s.memberActivity()
	out := make([]GroupStatus, 0, len(cfg.Groups))
	for _, g := range cfg.Groups {
		gs := GroupStatus{Name: g.Name, Label: g.Label, Extension: g.Extension, Numbers: g.Numbers,
			Strategy: g.Strategy, Enabled: g.Enabled, Calls: s.state.Calls(g.Name), Members: []MemberStatus{}}
		for _, m := range g.Members {
			key := m.Key()
			ms := MemberStatus{Key: key, State: "idle"}
			switch {
			case activeUnder(ringing, key):
				ms.State = "ringing"
			case activeUnder(talking, key) || s.state.InCall(m):
				ms.State = "in call"
			}
			if m.User != "" {
				for _, b := range s.reg.Contacts(m.User) {
					ms.Contacts = append(ms.Contacts, b.URI)
				}
			}
			gs.Members = append(gs.Members, ms)
		}
		out = append(out, gs)
	}
	return out
}

// activeUnder reports whether member key, or a member reached through it
// (a nested group's "group:sales/user:bob"), is in the set.
func activeUnder(set map[string]bool, key string) bool {
	if set[key] {
		return true
	}
	for k := range set {
		if strings.HasPrefix(k, key+"/") {
			return true
		}
	}
	return false
}

// memberActivity is which member keys have a leg ringing, and which one
// answered, in any live call.
func (s *Server) memberActivity() (ringing, talking map[string]bool) {
	ringing, talking = map[string]bool{}, map[string]bool{}
	s.active.Range(func(k, _ any) bool {
		for _, l := range k.(*call).legList() {
			switch st, _ := l.status.get(); st {
			case "calling", "ringing":
				ringing[l.t.Member] = true
			case "answered":
				talking[l.t.Member] = true
			}
		}
		return true
	})
	return ringing, talking
}

// Calls are the live calls, oldest first.
func (s *Server) Calls() []CallStatus {
	var out []CallStatus
	s.active.Range(func(k, _ any) bool {
		out = append(out, k.(*call).status(false))
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Call is one live call with its decision log, by the caller's Call-ID.
func (s *Server) Call(id string) (CallStatus, bool) {
	var cs CallStatus
	found := false
	s.active.Range(func(k, _ any) bool {
		c := k.(*call)
		if c.a.callID == id {
			cs, found = c.status(true), true
			return false
		}
		return true
	})
	return cs, found
}

func (c *call) legList() []*uac {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*uac(nil), c.legOrder...)
}

func (c *call) status(withDecisions bool) CallStatus {
	cs := CallStatus{CallID: c.a.callID, Group: c.group.Name, Caller: c.party.URI,
		Dialled: c.a.req.Recipient.User, Start: c.start, State: "ringing", Legs: []LegStatus{}}
	c.mu.Lock()
	if c.winner != nil {
		cs.State = "answered"
	}
	c.mu.Unlock()
	c.a.mu.Lock()
	if c.a.ended || (c.a.final && !c.a.answered) {
		cs.State = "ending"
	}
	c.a.mu.Unlock()
	for _, l := range c.legList() {
		st, code := l.status.get()
		cs.Legs = append(cs.Legs, LegStatus{Leg: int(l.id), Group: l.t.Group, Member: l.t.Member, URI: l.t.URI, State: st, Code: code})
	}
	if withDecisions {
		c.decisions.mu.Lock()
		for _, ev := range c.decisions.events {
			cs.Decisions = append(cs.Decisions, fmt.Sprintf("%s %s %s: %s", ev.At.UTC().Format("15:04:05.000"), ev.Group, ev.Kind, ev.Text))
		}
		c.decisions.mu.Unlock()
	}
	return cs
}
