package registrar

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by Apply after Close: the state file has been
// written for the last time, so a change now would be lost on restart.
var ErrClosed = errors.New("registrar: closed")

// Defaults for zero Options fields.
const (
	DefaultExpires      = time.Hour              // a REGISTER with no expires at all (RFC 3261 §10.3 step 6 "locally-configured default")
	DefaultMaxContacts  = 10                     // bindings per user
	DefaultPersistDelay = 200 * time.Millisecond // state file writes are at most this often
)

// Options configure a Registrar. Zero values take the defaults above.
type Options struct {
	// MinExpires: a REGISTER asking for less (but not 0) gets 423 with
	// Min-Expires. 0: no minimum.
	MinExpires time.Duration
	// MaxExpires: longer requests are cut to this. 0 or less: no maximum.
	MaxExpires time.Duration
	// DefaultExpires applies when neither the contact's expires parameter
	// nor the Expires header is present; it is kept within Min/MaxExpires.
	DefaultExpires time.Duration
	// MaxContacts bounds the bindings of one user. A REGISTER that would go
	// over removes the user's least recently registered bindings, so a
	// phone that changed address is not locked out by its own stale
	// binding (Asterisk's remove_existing does the same).
	MaxContacts int
	// StateFile, when set, is where bindings are kept as JSON across
	// restarts. Fixed for the life of the Registrar.
	StateFile string
	// PersistDelay coalesces bursts of changes into one write.
	PersistDelay time.Duration
	// Now is the clock every expiry decision uses; nil: time.Now.
	Now func() time.Time
	// OnChange, when set, is called after a user's bindings changed (added,
	// refreshed, removed, expired, dropped on reload), outside any lock, on
	// the goroutine that made the change. For metrics and the admin API; it
	// may call back into the Registrar.
	OnChange func(user string)
	// OnError, when set, receives errors of background state file writes
	// (the write is retried on the next change and at Close).
	OnError func(error)
}

// Contact is one Contact header value of a REGISTER, parsed by the caller.
type Contact struct {
	URI     string  // the URI inside <...>, without header parameters
	Expires int     // its expires parameter in seconds; -1: absent
	Q       float64 // its q parameter, 0 to 1; -1: absent
}

// Register is one REGISTER request as the registrar needs it. The caller
// has already authenticated the user.
type Register struct {
	// Contacts are the Contact header values other than "*". Empty and not
	// Wildcard: a query, answered with the current bindings.
	Contacts []Contact
	// Wildcard: a "Contact: *" was present. Valid only alone and with
	// Expires 0 (RFC 3261 §10.3 step 6).
	Wildcard bool
	// Expires is the Expires header in seconds; -1: absent.
	Expires int
	CallID  string
	CSeq    uint32
	// Source is the address the REGISTER came from, after any NAT: INVITEs
	// for these bindings go there, whatever host the Contact URI names.
	Source netip.AddrPort
	// Transport the REGISTER came over: "udp", "tcp", "tls", "ws" or
	// "wss" (case-insensitive).
	Transport string
	UserAgent string // User-Agent header, for the admin API; may be empty
}

// Binding is one registered contact of a user.
type Binding struct {
	User      string
	URI       string    // the Contact URI
	Expires   time.Time // when it lapses
	ExpiresIn int       // whole seconds left when this value was read, rounded up
	Q         float64   // -1: none given
	CallID    string    // of the last REGISTER that touched it
	CSeq      uint32    // of the last REGISTER that touched it
	Source    netip.AddrPort
	Transport string // lower case
	UserAgent string
	Updated   time.Time // when the last REGISTER touched it
}

// Destination is where requests for this binding go: the source address
// of the REGISTER, "ip:port" ("[v6]:port" for IPv6). This is
// routing.Contact.Destination.
func (b Binding) Destination() string { return b.Source.String() }

// ContactValue is the Contact header value that lists this binding in a
// 200 to REGISTER: "<uri>;expires=N" and ";q=Q" when one was given.
func (b Binding) ContactValue() string {
	v := "<" + b.URI + ">;expires=" + strconv.Itoa(b.ExpiresIn)
	if b.Q >= 0 {
		v += ";q=" + strconv.FormatFloat(math.Round(b.Q*1000)/1000, 'f', -1, 64)
	}
	return v
}

// Result tells the SIP layer how to answer a REGISTER.
type Result struct {
	// Status is the response code: 200, 400, 423 or 500.
	Status int
	// Reason is the reason phrase for the status line.
	Reason string
	// Detail says why, for logs; empty on 200.
	Detail string
	// MinExpires, on 423, is the Min-Expires header value in seconds.
	MinExpires int
	// Bindings, on 200, are every current binding of the user after the
	// request, one Contact header each (Binding.ContactValue). Empty after
	// a removal of the last one: the 200 then carries no Contact.
	Bindings []Binding
	// Changed: the request added, refreshed or removed something.
	Changed bool
}

// entry is a stored binding; seq orders registrations for MaxContacts
// eviction without depending on clock resolution.
type entry struct {
	Binding
	seq uint64
}

// Registrar is the bindings store. Safe for concurrent use.
type Registrar struct {
	opts Options
	now  func() time.Time

	mu       sync.Mutex
	min, max time.Duration
	users    map[string][]entry
	seq      uint64
	closed   bool
	dirty    bool        // state differs from the file
	timer    *time.Timer // pending coalesced write

	writeMu sync.Mutex // one writer of the state file at a time, in order
}

// New makes an empty Registrar. Call Load before serving to restore the
// state file.
func New(opts Options) *Registrar {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DefaultExpires <= 0 {
		opts.DefaultExpires = DefaultExpires
	}
	if opts.MaxContacts <= 0 {
		opts.MaxContacts = DefaultMaxContacts
	}
	if opts.PersistDelay <= 0 {
		opts.PersistDelay = DefaultPersistDelay
	}
	return &Registrar{
		opts:  opts,
		now:   opts.Now,
		min:   opts.MinExpires,
		max:   opts.MaxExpires,
		users: map[string][]entry{},
	}
}

var validTransports = []string{"udp", "tcp", "tls", "ws", "wss"}

// Apply processes one REGISTER of an authenticated user, following RFC
// 3261 §10.3 steps 6 to 8: either every change in the request is made or
// none is. The error is for calls the SIP layer should never make (empty
// user, invalid source, unknown transport, after Close): answer 500.
// Everything a client can get wrong comes back as a Result status.
func (r *Registrar) Apply(user string, req Register) (Result, error) {
	if user == "" {
		return Result{}, errors.New("registrar: apply: empty user")
	}
	if !req.Source.IsValid() {
		return Result{}, fmt.Errorf("registrar: apply for %q: invalid source address", user)
	}
	transport := strings.ToLower(req.Transport)
	if !slices.Contains(validTransports, transport) {
		return Result{}, fmt.Errorf("registrar: apply for %q: unknown transport %q", user, req.Transport)
	}
	req.Transport = transport

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return Result{}, ErrClosed
	}
	now := r.now()
	// Expired bindings neither count against MaxContacts nor take part in
	// the Call-ID/CSeq check: for the RFC they no longer exist.
	expired := r.expireUserLocked(user, now)
	res := r.applyLocked(user, req, now)
	if res.Changed || expired {
		r.markDirtyLocked()
	}
	r.mu.Unlock()
	if (res.Changed || expired) && r.opts.OnChange != nil {
		r.opts.OnChange(user)
	}
	return res, nil
}

func bad(detail string) Result {
	return Result{Status: 400, Reason: "Bad Request", Detail: detail}
}

func (r *Registrar) applyLocked(user string, req Register, now time.Time) Result {
	old := r.users[user]
	if req.Expires < -1 {
		return bad(fmt.Sprintf("Expires %d is negative", req.Expires))
	}
	if req.Wildcard {
		if len(req.Contacts) > 0 {
			return bad("Contact: * together with other contacts")
		}
		if req.Expires != 0 {
			return bad("Contact: * needs Expires: 0")
		}
		for _, e := range old {
			if res, ok := outOfOrder(e, req); !ok {
				return res
			}
		}
		delete(r.users, user)
		return Result{Status: 200, Reason: "OK", Changed: len(old) > 0}
	}
	if len(req.Contacts) == 0 {
		return r.okLocked(user, now, false)
	}

	// Validate everything and work out each contact's expiry before
	// touching anything (step 6 and the 423 check apply to the whole
	// request).
	expires := make([]int, len(req.Contacts))
	for i, c := range req.Contacts {
		if c.URI == "" || strings.ContainsAny(c.URI, "<>\r\n\x00") {
			return bad(fmt.Sprintf("Contact URI %q is not usable", c.URI))
		}
		if c.Q != -1 && (c.Q < 0 || c.Q > 1 || math.IsNaN(c.Q)) {
			return bad(fmt.Sprintf("Contact %s: q %v is outside 0..1", c.URI, c.Q))
		}
		if c.Expires < -1 {
			return bad(fmt.Sprintf("Contact %s: expires %d is negative", c.URI, c.Expires))
		}
		e := c.Expires
		if e < 0 {
			e = req.Expires
		}
		if e < 0 {
			e = int(r.clampLocked(r.opts.DefaultExpires) / time.Second)
		}
		// RFC 3261 §20.19 caps delta-seconds at 2**32-1; bigger values
		// would overflow the Duration arithmetic below.
		e = min(e, math.MaxUint32)
		if e > 0 && time.Duration(e)*time.Second < r.min {
			minSec := int(r.min / time.Second)
			return Result{Status: 423, Reason: "Interval Too Brief", MinExpires: minSec,
				Detail: fmt.Sprintf("Contact %s: expires %d is below the minimum %d", c.URI, e, minSec)}
		}
		if r.max > 0 && time.Duration(e)*time.Second > r.max {
			e = int(r.max / time.Second)
		}
		expires[i] = e
	}

	// Step 7, against the bindings as they were before this request (a
	// contact listed twice must not trip over its own first occurrence).
	for _, c := range req.Contacts {
		if i := indexOf(old, c.URI); i >= 0 {
			if res, ok := outOfOrder(old[i], req); !ok {
				return res
			}
		}
	}

	next := slices.Clone(old)
	for i, c := range req.Contacts {
		j := indexOf(next, c.URI)
		if expires[i] == 0 {
			if j >= 0 {
				next = slices.Delete(next, j, j+1)
			}
			continue
		}
		r.seq++
		e := entry{seq: r.seq, Binding: Binding{
			User:      user,
			URI:       c.URI,
			Expires:   now.Add(time.Duration(expires[i]) * time.Second),
			Q:         c.Q,
			CallID:    req.CallID,
			CSeq:      req.CSeq,
			Source:    req.Source,
			Transport: req.Transport,
			UserAgent: req.UserAgent,
			Updated:   now,
		}}
		if j >= 0 {
			next[j] = e
		} else {
			next = append(next, e)
		}
	}
	if over := len(next) - r.opts.MaxContacts; over > 0 {
		slices.SortFunc(next, func(a, b entry) int { return cmpUint(a.seq, b.seq) })
		next = slices.Delete(next, 0, over)
	}
	if len(next) == 0 {
		delete(r.users, user)
	} else {
		r.users[user] = next
	}
	return r.okLocked(user, now, true)
}

// outOfOrder is RFC 3261 §10.3 step 7: the same Call-ID with a CSeq that is
// not higher means a delayed or replayed REGISTER; the whole request fails.
func outOfOrder(e entry, req Register) (Result, bool) {
	if e.CallID == req.CallID && req.CSeq <= e.CSeq {
		return Result{Status: 500, Reason: "Server Internal Error",
			Detail: fmt.Sprintf("out of order: CSeq %d is not above %d for Call-ID %q (contact %s)", req.CSeq, e.CSeq, req.CallID, e.URI)}, false
	}
	return Result{}, true
}

func (r *Registrar) okLocked(user string, now time.Time, changed bool) Result {
	return Result{Status: 200, Reason: "OK", Bindings: view(r.users[user], now), Changed: changed}
}

func (r *Registrar) clampLocked(d time.Duration) time.Duration {
	if r.max > 0 && d > r.max {
		d = r.max
	}
	if d < r.min {
		d = r.min
	}
	return d.Truncate(time.Second)
}

func indexOf(es []entry, uri string) int {
	return slices.IndexFunc(es, func(e entry) bool { return e.URI == uri })
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// view copies the live bindings with ExpiresIn filled in, highest q first
// (no q counts as 1), then the most recently registered first, then in
// the order one REGISTER listed them.
func view(es []entry, now time.Time) []Binding {
	var out []Binding
	var seqs []uint64
	for _, e := range es {
		if !e.Expires.After(now) {
			continue
		}
		b := e.Binding
		b.ExpiresIn = int(math.Ceil(e.Expires.Sub(now).Seconds()))
		out = append(out, b)
		seqs = append(seqs, e.seq)
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	q := func(b Binding) float64 {
		if b.Q < 0 {
			return 1
		}
		return b.Q
	}
	slices.SortStableFunc(idx, func(i, j int) int {
		if qi, qj := q(out[i]), q(out[j]); qi != qj {
			if qi > qj {
				return -1
			}
			return 1
		}
		if c := out[j].Updated.Compare(out[i].Updated); c != 0 {
			return c
		}
		return cmpUint(seqs[i], seqs[j])
	})
	sorted := make([]Binding, len(out))
	for k, i := range idx {
		sorted[k] = out[i]
	}
	return sorted
}

// Contacts are the user's live bindings at the clock's now (expired ones
// are left out even before Sweep removes them), highest q first. Each
// becomes routing.Contact{URI: b.URI, Destination: b.Destination(),
// Transport: b.Transport}.
func (r *Registrar) Contacts(user string) []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	return view(r.users[user], r.now())
}

// All is every live binding, by user name, for the admin API.
func (r *Registrar) All() []Binding {
	r.mu.Lock()
	now := r.now()
	names := make([]string, 0, len(r.users))
	for u := range r.users {
		names = append(names, u)
	}
	slices.Sort(names)
	var out []Binding
	for _, u := range names {
		out = append(out, view(r.users[u], now)...)
	}
	r.mu.Unlock()
	return out
}

// Count is the number of live bindings, for the registrations gauge.
func (r *Registrar) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	n := 0
	for _, es := range r.users {
		for _, e := range es {
			if e.Expires.After(now) {
				n++
			}
		}
	}
	return n
}

// expireUserLocked drops the user's dead bindings; reports whether any.
func (r *Registrar) expireUserLocked(user string, now time.Time) bool {
	es := r.users[user]
	live := slices.DeleteFunc(slices.Clone(es), func(e entry) bool { return !e.Expires.After(now) })
	if len(live) == len(es) {
		return false
	}
	if len(live) == 0 {
		delete(r.users, user)
	} else {
		r.users[user] = live
	}
	return true
}

// Sweep removes the bindings that have expired by the clock's now, writes
// the state file (coalesced) and calls OnChange for each user that lost
// one. It returns how many bindings it removed. Contacts never returns an
// expired binding, so Sweep only frees memory, keeps the file and metrics
// current; the caller drives it (Run, or its own ticker).
func (r *Registrar) Sweep() int {
	r.mu.Lock()
	now := r.now()
	var changed []string
	n := 0
	for u, es := range r.users {
		before := len(es)
		if r.expireUserLocked(u, now) {
			n += before - len(r.users[u])
			changed = append(changed, u)
		}
	}
	if n > 0 {
		r.markDirtyLocked()
	}
	r.mu.Unlock()
	r.notify(changed)
	return n
}

// Run calls Sweep every interval until ctx is done. Started by the
// caller: go reg.Run(ctx, 30*time.Second).
func (r *Registrar) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sweep()
		}
	}
}

// Reload applies a new configuration: bindings of users no longer in users
// are removed, the others are kept as they are (a binding longer than a
// lowered maximum keeps its expiry until its next refresh), and the new
// bounds apply to the next REGISTER. It returns how many bindings it
// removed. The state file path cannot change on reload.
func (r *Registrar) Reload(users []string, minExpires, maxExpires time.Duration) int {
	keep := make(map[string]bool, len(users))
	for _, u := range users {
		keep[u] = true
	}
	r.mu.Lock()
	r.min, r.max = minExpires, maxExpires
	var changed []string
	n := 0
	for u, es := range r.users {
		if !keep[u] {
			n += len(es)
			delete(r.users, u)
			changed = append(changed, u)
		}
	}
	if n > 0 {
		r.markDirtyLocked()
	}
	r.mu.Unlock()
	r.notify(changed)
	return n
}

func (r *Registrar) notify(users []string) {
	if r.opts.OnChange == nil {
		return
	}
	slices.Sort(users)
	for _, u := range users {
		r.opts.OnChange(u)
	}
}
