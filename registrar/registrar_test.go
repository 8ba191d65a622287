package registrar

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is the injected clock; tests move it by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	src1 = netip.MustParseAddrPort("203.0.113.5:40001")
	src2 = netip.MustParseAddrPort("203.0.113.6:5060")
)

// ct is a contact with no q.
func ct(uri string, expires int) Contact { return Contact{URI: uri, Expires: expires, Q: -1} }

// reg is a REGISTER from src1 over UDP.
func reg(callID string, cseq uint32, expires int, contacts ...Contact) Register {
	return Register{Contacts: contacts, Expires: expires, CallID: callID, CSeq: cseq,
		Source: src1, Transport: "udp", UserAgent: "test-phone/1.0"}
}

func wildcard(callID string, cseq uint32, expires int) Register {
	r := reg(callID, cseq, expires)
	r.Wildcard = true
	return r
}

// listing is "uri=expiresIn" per binding, in Result/Contacts order.
func listing(bs []Binding) string {
	if len(bs) == 0 {
		return "none"
	}
	var parts []string
	for _, b := range bs {
		parts = append(parts, b.URI+"="+strconv.Itoa(b.ExpiresIn))
	}
	return strings.Join(parts, " ")
}

func newTestRegistrar(c *fakeClock) *Registrar {
	return New(Options{MinExpires: 60 * time.Second, MaxExpires: time.Hour, Now: c.Now})
}

// step is one REGISTER (or, with only advance/contacts set, a look at the
// clock and the bindings).
type step struct {
	advance time.Duration
	user    string // default alice
	req     *Register
	status  int    // expected status when req is set
	minExp  int    // expected MinExpires on 423
	result  string // expected Result.Bindings listing; "none": empty; "": not checked
	after   string // expected Contacts(user) listing after the step; "none": empty; "": not checked
}

func TestApply(t *testing.T) {
	r := func(x Register) *Register { return &x }
	tests := []struct {
		name  string
		steps []step
	}{
		{"register, then it expires", []step{
			{req: r(reg("c1", 1, 3600, ct("sip:alice@10.0.0.2:5060", -1))), status: 200,
				result: "sip:alice@10.0.0.2:5060=3600", after: "sip:alice@10.0.0.2:5060=3600"},
			{advance: 1000 * time.Second, after: "sip:alice@10.0.0.2:5060=2600"},
			{advance: 2599*time.Second + 500*time.Millisecond, after: "sip:alice@10.0.0.2:5060=1"},
			{advance: 500 * time.Millisecond, after: "none"},
		}},
		{"refresh keeps one binding with a new expiry", []step{
			{req: r(reg("c1", 1, 600, ct("sip:a@10.0.0.2", -1))), status: 200, result: "sip:a@10.0.0.2=600"},
			{advance: 500 * time.Second, req: r(reg("c1", 2, 600, ct("sip:a@10.0.0.2", -1))), status: 200,
				result: "sip:a@10.0.0.2=600", after: "sip:a@10.0.0.2=600"},
			{advance: 599 * time.Second, after: "sip:a@10.0.0.2=1"},
		}},
		{"several contacts per user, 200 lists all", []step{
			{req: r(reg("desk", 1, 3600, ct("sip:a@10.0.0.2", -1))), status: 200, result: "sip:a@10.0.0.2=3600"},
			{advance: 10 * time.Second, req: r(reg("mobile", 1, 600, ct("sip:a@10.0.0.3", -1))), status: 200,
				result: "sip:a@10.0.0.3=600 sip:a@10.0.0.2=3590"},
			{advance: 10 * time.Second, req: r(reg("soft", 7, 300, ct("sip:a@10.0.0.4", -1), ct("sip:a@10.0.0.5", 120))), status: 200,
				after: "sip:a@10.0.0.4=300 sip:a@10.0.0.5=120 sip:a@10.0.0.3=590 sip:a@10.0.0.2=3580"},
		}},
		{"query without contacts changes nothing", []step{
			{req: r(reg("c1", 1, 3600, ct("sip:a@h", -1))), status: 200},
			{advance: time.Minute, req: r(reg("other", 1, -1)), status: 200, result: "sip:a@h=3540"},
		}},
		{"Contact * with Expires 0 removes all", []step{
			{req: r(reg("desk", 1, 3600, ct("sip:a@10.0.0.2", -1))), status: 200},
			{req: r(reg("mobile", 1, 3600, ct("sip:a@10.0.0.3", -1))), status: 200},
			{req: r(wildcard("desk", 2, 0)), status: 200, result: "none", after: "none"},
		}},
		{"Contact * with Expires other than 0 is 400", []step{
			{req: r(reg("desk", 1, 3600, ct("sip:a@10.0.0.2", -1))), status: 200},
			{req: r(wildcard("desk", 2, 3600)), status: 400, after: "sip:a@10.0.0.2=3600"},
			{req: r(wildcard("desk", 3, -1)), status: 400, after: "sip:a@10.0.0.2=3600"},
		}},
		{"Contact * mixed with a contact is 400", []step{
			{req: r(reg("desk", 1, 3600, ct("sip:a@10.0.0.2", -1))), status: 200},
			{req: func() *Register {
				x := wildcard("desk", 2, 0)
				x.Contacts = []Contact{ct("sip:a@10.0.0.2", -1)}
				return &x
			}(),
				status: 400, after: "sip:a@10.0.0.2=3600"},
		}},
		{"Contact * out of order is 500 and removes nothing", []step{
			{req: r(reg("desk", 5, 3600, ct("sip:a@10.0.0.2", -1))), status: 200},
			{req: r(reg("mobile", 1, 3600, ct("sip:a@10.0.0.3", -1))), status: 200},
			{req: r(wildcard("desk", 5, 0)), status: 500, after: "sip:a@10.0.0.2=3600 sip:a@10.0.0.3=3600"},
		}},
		{"below the minimum is 423 with Min-Expires", []step{
			{req: r(reg("c1", 1, 30, ct("sip:a@h", -1))), status: 423, minExp: 60, after: "none"},
			{req: r(reg("c1", 2, 3600, ct("sip:a@h", 59))), status: 423, minExp: 60},
			{req: r(reg("c1", 3, 60, ct("sip:a@h", -1))), status: 200, result: "sip:a@h=60"},
		}},
		{"423 for one contact rejects the whole request", []step{
			{req: r(reg("c1", 1, 3600, ct("sip:a@h1", -1), ct("sip:a@h2", 10))), status: 423, minExp: 60, after: "none"},
		}},
		{"Expires 0 below the minimum removes, no 423", []step{
			{req: r(reg("c1", 1, 3600, ct("sip:a@h1", -1), ct("sip:a@h2", -1))), status: 200},
			{req: r(reg("c1", 2, 0, ct("sip:a@h1", -1))), status: 200, result: "sip:a@h2=3600"},
			{req: r(reg("c1", 3, 3600, ct("sip:a@h2", 0))), status: 200, result: "none"},
		}},
		{"removing a contact that is not bound is fine", []step{
			{req: r(reg("c1", 1, 0, ct("sip:a@nowhere", -1))), status: 200, result: "none"},
		}},
		{"above the maximum is cut to it", []step{
			{req: r(reg("c1", 1, 7200, ct("sip:a@h", -1))), status: 200, result: "sip:a@h=3600"},
			{req: r(reg("c1", 2, -1, ct("sip:a@h", 99999999999))), status: 200, result: "sip:a@h=3600"},
		}},
		{"contact expires param wins over the Expires header", []step{
			{req: r(reg("c1", 1, 3600, ct("sip:a@h1", 120), ct("sip:a@h2", -1))), status: 200,
				result: "sip:a@h1=120 sip:a@h2=3600"},
			{req: r(reg("c1", 2, 600, ct("sip:a@h1", -1))), status: 200, result: "sip:a@h2=3600 sip:a@h1=600"},
			{req: r(reg("c1", 3, 0, ct("sip:a@h3", 300))), status: 200,
				result: "sip:a@h2=3600 sip:a@h1=600 sip:a@h3=300"},
		}},
		{"neither param nor header: the default, within the bounds", []step{
			{req: r(reg("c1", 1, -1, ct("sip:a@h", -1))), status: 200, result: "sip:a@h=3600"},
		}},
		{"same Call-ID needs a higher CSeq", []step{
			{req: r(reg("c1", 10, 3600, ct("sip:a@h", -1))), status: 200},
			{advance: time.Minute, req: r(reg("c1", 10, 3600, ct("sip:a@h", -1))), status: 500, after: "sip:a@h=3540"},
			{req: r(reg("c1", 9, 0, ct("sip:a@h", -1))), status: 500, after: "sip:a@h=3540"},
			{req: r(reg("c1", 11, 3600, ct("sip:a@h", -1))), status: 200, after: "sip:a@h=3600"},
		}},
		{"another Call-ID may have any CSeq", []step{
			{req: r(reg("c1", 10, 3600, ct("sip:a@h", -1))), status: 200},
			{advance: time.Minute, req: r(reg("c2", 1, 600, ct("sip:a@h", -1))), status: 200, result: "sip:a@h=600"},
			{req: r(reg("c1", 11, 600, ct("sip:a@h", -1))), status: 200},
		}},
		{"out of order aborts every change of the request", []step{
			{req: r(reg("c1", 5, 3600, ct("sip:a@old", -1))), status: 200},
			{req: r(reg("c1", 4, 3600, ct("sip:a@new", -1), ct("sip:a@old", 0))), status: 500, after: "sip:a@old=3600"},
		}},
		{"expired binding no longer blocks its Call-ID", []step{
			{req: r(reg("c1", 5, 60, ct("sip:a@h", -1))), status: 200},
			{advance: time.Hour, req: r(reg("c1", 1, 60, ct("sip:a@h", -1))), status: 200, result: "sip:a@h=60"},
		}},
		{"a contact twice in one request is not out of order", []step{
			{req: r(reg("c1", 1, 3600, ct("sip:a@h", 120), ct("sip:a@h", 300))), status: 200, result: "sip:a@h=300"},
		}},
		{"q orders the bindings", []step{
			{req: r(reg("c1", 1, 3600, Contact{URI: "sip:a@low", Expires: -1, Q: 0.1},
				Contact{URI: "sip:a@none", Expires: -1, Q: -1}, Contact{URI: "sip:a@mid", Expires: -1, Q: 0.5})),
				status: 200, result: "sip:a@none=3600 sip:a@mid=3600 sip:a@low=3600"},
		}},
		{"bad input is 400", []step{
			{req: r(reg("c1", 1, 3600, Contact{URI: "sip:a@h", Expires: -1, Q: 1.5})), status: 400},
			{req: r(reg("c1", 2, 3600, ct("sip:a@h", -7))), status: 400},
			{req: r(reg("c1", 3, -2, ct("sip:a@h", -1))), status: 400},
			{req: r(reg("c1", 4, 3600, ct("", -1))), status: 400},
			{req: r(reg("c1", 5, 3600, ct("sip:a@h>\r\nX: y", -1))), status: 400, after: "none"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			rg := newTestRegistrar(c)
			for i, s := range tt.steps {
				c.Advance(s.advance)
				user := s.user
				if user == "" {
					user = "alice"
				}
				if s.req != nil {
					res, err := rg.Apply(user, *s.req)
					if err != nil {
						t.Fatalf("step %d: Apply: %v", i, err)
					}
					if res.Status != s.status {
						t.Fatalf("step %d: status %d (%s), want %d", i, res.Status, res.Detail, s.status)
					}
					if res.Status != 200 && res.Detail == "" {
						t.Errorf("step %d: status %d without a Detail", i, res.Status)
					}
					if s.minExp != 0 && res.MinExpires != s.minExp {
						t.Errorf("step %d: MinExpires %d, want %d", i, res.MinExpires, s.minExp)
					}
					if s.result != "" {
						if got := listing(res.Bindings); got != s.result {
							t.Errorf("step %d: 200 lists %q, want %q", i, got, s.result)
						}
					}
				}
				if s.after != "" {
					if got := listing(rg.Contacts(user)); got != s.after {
						t.Errorf("step %d: Contacts %q, want %q", i, got, s.after)
					}
				}
			}
		})
	}
}

func TestRefreshUpdatesNATSource(t *testing.T) {
	c := newClock()
	rg := newTestRegistrar(c)
	if _, err := rg.Apply("alice", reg("c1", 1, 600, ct("sip:alice@192.168.1.10:5060", -1))); err != nil {
		t.Fatal(err)
	}
	again := reg("c1", 2, 600, ct("sip:alice@192.168.1.10:5060", -1))
	again.Source, again.Transport, again.UserAgent = src2, "TCP", "phone/2"
	res, err := rg.Apply("alice", again)
	if err != nil || res.Status != 200 || !res.Changed {
		t.Fatalf("refresh: %+v %v", res, err)
	}
	bs := rg.Contacts("alice")
	if len(bs) != 1 {
		t.Fatalf("Contacts: %+v", bs)
	}
	b := bs[0]
	if b.Destination() != "203.0.113.6:5060" || b.Transport != "tcp" || b.UserAgent != "phone/2" || b.CSeq != 2 || b.CallID != "c1" {
		t.Errorf("binding after refresh: %+v", b)
	}
	if b.URI != "sip:alice@192.168.1.10:5060" {
		t.Errorf("URI %q: the private contact is kept, the source is used for routing", b.URI)
	}
	if rg.Count() != 1 {
		t.Errorf("Count %d", rg.Count())
	}
}

func TestContactValue(t *testing.T) {
	b := Binding{URI: "sip:a@h;transport=tcp", ExpiresIn: 120, Q: -1}
	if got := b.ContactValue(); got != "<sip:a@h;transport=tcp>;expires=120" {
		t.Errorf("ContactValue %q", got)
	}
	b.Q = 0.5
	if got := b.ContactValue(); got != "<sip:a@h;transport=tcp>;expires=120;q=0.5" {
		t.Errorf("ContactValue %q", got)
	}
	b.Q = 1.0 / 3
	if got := b.ContactValue(); got != "<sip:a@h;transport=tcp>;expires=120;q=0.333" {
		t.Errorf("ContactValue %q", got)
	}
	v6 := Binding{Source: netip.MustParseAddrPort("[2001:db8::1]:5060")}
	if v6.Destination() != "[2001:db8::1]:5060" {
		t.Errorf("Destination %q", v6.Destination())
	}
}

func TestMaxContactsEvictsOldest(t *testing.T) {
	c := newClock()
	rg := New(Options{MaxContacts: 2, Now: c.Now})
	for i, uri := range []string{"sip:a@1", "sip:a@2", "sip:a@3"} {
		c.Advance(time.Second)
		if res, err := rg.Apply("alice", reg("c"+uri, uint32(i+1), 3600, ct(uri, -1))); err != nil || res.Status != 200 {
			t.Fatalf("%s: %+v %v", uri, res, err)
		}
	}
	got := listing(rg.Contacts("alice"))
	if got != "sip:a@3=3600 sip:a@2=3599" {
		t.Errorf("Contacts %q, want the two most recent", got)
	}
	// A refresh makes a binding the most recent again.
	c.Advance(time.Second)
	rg.Apply("alice", reg("csip:a@2", 9, 3600, ct("sip:a@2", -1)))
	rg.Apply("alice", reg("x", 1, 3600, ct("sip:a@4", -1)))
	if got := listing(rg.Contacts("alice")); got != "sip:a@2=3600 sip:a@4=3600" {
		t.Errorf("Contacts %q", got)
	}
}

func TestApplyCallerErrors(t *testing.T) {
	rg := newTestRegistrar(newClock())
	good := reg("c1", 1, 3600, ct("sip:a@h", -1))
	noSrc := good
	noSrc.Source = netip.AddrPort{}
	sctp := good
	sctp.Transport = "sctp"
	for name, tc := range map[string]struct {
		user string
		req  Register
	}{"empty user": {"", good}, "no source": {"alice", noSrc}, "transport": {"alice", sctp}} {
		if _, err := rg.Apply(tc.user, tc.req); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := rg.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rg.Apply("alice", good); err != ErrClosed {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

func TestSweepAndOnChange(t *testing.T) {
	c := newClock()
	var mu sync.Mutex
	var changes []string
	rg := New(Options{Now: c.Now, OnChange: func(u string) {
		mu.Lock()
		changes = append(changes, u)
		mu.Unlock()
	}})
	rg.Apply("alice", reg("a", 1, 100, ct("sip:a@h", -1)))
	rg.Apply("bob", reg("b", 1, 300, ct("sip:b@h", -1)))
	rg.Apply("bob", reg("b", 2, 300)) // a query: no change
	c.Advance(200 * time.Second)
	if n := rg.Sweep(); n != 1 {
		t.Errorf("Sweep removed %d, want 1", n)
	}
	if n := rg.Sweep(); n != 0 {
		t.Errorf("second Sweep removed %d", n)
	}
	if rg.Count() != 1 || len(rg.All()) != 1 || rg.All()[0].User != "bob" {
		t.Errorf("after sweep: %+v", rg.All())
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(changes, []string{"alice", "bob", "alice"}) {
		t.Errorf("OnChange calls %v", changes)
	}
}

func TestReloadDropsRemovedUsers(t *testing.T) {
	c := newClock()
	rg := newTestRegistrar(c)
	rg.Apply("alice", reg("a", 1, 3600, ct("sip:a@h", -1)))
	rg.Apply("bob", reg("b", 1, 3600, ct("sip:b@h", -1), ct("sip:b@h2", -1)))
	if n := rg.Reload([]string{"alice", "carol"}, 120*time.Second, 1800*time.Second); n != 2 {
		t.Errorf("Reload removed %d, want 2", n)
	}
	if len(rg.Contacts("bob")) != 0 || len(rg.Contacts("alice")) != 1 {
		t.Errorf("after reload: alice %v bob %v", rg.Contacts("alice"), rg.Contacts("bob"))
	}
	// Kept bindings keep their expiry; the new bounds apply to the next REGISTER.
	if got := listing(rg.Contacts("alice")); got != "sip:a@h=3600" {
		t.Errorf("alice %q", got)
	}
	if res, _ := rg.Apply("alice", reg("a", 2, 60, ct("sip:a@h", -1))); res.Status != 423 || res.MinExpires != 120 {
		t.Errorf("new minimum: %+v", res)
	}
	if res, _ := rg.Apply("alice", reg("a", 3, 3600, ct("sip:a@h", -1))); listing(res.Bindings) != "sip:a@h=1800" {
		t.Errorf("new maximum: %+v", res)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := newClock()
	rg := New(Options{Now: c.Now, StateFile: t.TempDir() + "/s.json", PersistDelay: time.Millisecond})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := []string{"alice", "bob"}[w%2]
			for i := range 200 {
				rg.Apply(user, reg("w"+strconv.Itoa(w), uint32(i+1), 3600, ct("sip:"+user+"@"+strconv.Itoa(w), -1)))
				rg.Contacts(user)
				if i%50 == 0 {
					c.Advance(time.Second)
					rg.Sweep()
					rg.All()
				}
			}
		}()
	}
	wg.Wait()
	if err := rg.Close(); err != nil {
		t.Fatal(err)
	}
	if rg.Count() != 8 {
		t.Errorf("Count %d, want 8", rg.Count())
	}
}
