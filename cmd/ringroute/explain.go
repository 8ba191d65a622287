package main

// ringroute explain: what a call to a group would do, from the daemon's own
// routing code. It runs routing.Start and Call.Step exactly as a Runner
// would, on a virtual clock (the next deadline, at once) and with legs that
// sip would never produce by themselves: members named in --busy answer
// 486 the moment they are rung, everyone else rings until cancelled, and
// nobody ever answers. Every timeline line comes from an action the Call
// returned or a decision it reported through Setup.Trace.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/routing"
)

const explainUsage = `usage: ringroute explain -c FILE GROUP [--at TIME] [--busy m1,m2] [--calls N] [--seed N]
                         [--from URI] [--ringing N]

Prints the ring timeline of a call to GROUP (its name, extension or number),
from the same routing code the daemon runs, with nobody answering:
who rings from when to when, pauses, where the group timeout lands, and which
fallback fires and why.

  -c FILE      the config file
  --at TIME    when the call arrives: RFC 3339 (2026-12-24T09:00:00+01:00), or
               2026-12-24T09:00 read in the group's schedule zone (UTC if none);
               default now
  --busy LIST  members that answer 486 at once: user names, URIs, or member keys
               (user:alice, uri:sip:1002@192.0.2.5)
  --calls N    N calls in a row, each starting when the one before ended, sharing
               round robin memory; prints each call's ring order
  --seed N     seed for random strategies (call k uses the seed and k, as the
               daemon's k-th call does); default $RINGROUTE_SEED, else 1
  --from URI   the caller's From URI, for permissions; default sip:caller@example.invalid
  --ringing N  N other calls already ringing in the group (they hold max_calls slots
               and ring its members)

Users are taken as registered with one contact each.
`

type explainOpts struct {
	file, group string
	at          time.Time
	atGiven     string
	busy        []string
	calls       int
	seed        uint64
	from        string
	ringing     int
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	o, err := parseExplain(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "ringroute explain: %v\n\n%s", err, explainUsage)
		}
		return 2
	}
	cfg, err := config.Load(o.file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	g := cfg.Group(o.group)
	if g == nil {
		g = cfg.GroupByNumber(o.group)
	}
	if g == nil {
		var names []string
		for _, x := range cfg.Groups {
			names = append(names, x.Name)
		}
		fmt.Fprintf(stderr, "ringroute explain: no group %q in %s (groups: %s)\n", o.group, o.file, strings.Join(names, ", "))
		return 2
	}
	if o.atGiven != "" {
		if o.at, err = parseAt(o.atGiven, g); err != nil {
			fmt.Fprintf(stderr, "ringroute explain: --at: %v\n", err)
			return 2
		}
	}
	if err := checkBusy(cfg, o.busy); err != nil {
		fmt.Fprintf(stderr, "ringroute explain: --busy: %v\n", err)
		return 2
	}
	explain(stdout, cfg, g, o)
	return 0
}

// parseExplain reads the flags, which may come before and after GROUP.
func parseExplain(args []string, stderr io.Writer) (explainOpts, error) {
	o := explainOpts{calls: 1, from: "sip:caller@example.invalid"}
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.file, "c", "", "config file")
	fs.StringVar(&o.atGiven, "at", "", "when the call arrives")
	busy := fs.String("busy", "", "members that answer 486")
	fs.IntVar(&o.calls, "calls", 1, "calls in a row")
	seed := seedFlag(fs)
	fs.StringVar(&o.from, "from", o.from, "caller From URI")
	fs.IntVar(&o.ringing, "ringing", 0, "other calls ringing in the group")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stderr, explainUsage)
			}
			return o, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case o.file == "":
		return o, errors.New("-c FILE is required")
	case len(pos) != 1:
		return o, fmt.Errorf("want one GROUP, got %d (%s)", len(pos), strings.Join(pos, " "))
	case o.calls < 1 || o.calls > 1000:
		return o, fmt.Errorf("--calls %d: want 1 to 1000", o.calls)
	case o.ringing < 0 || o.ringing > 1000:
		return o, fmt.Errorf("--ringing %d: want 0 to 1000", o.ringing)
	}
	o.group = pos[0]
	o.seed = *seed
	if o.seed == 0 {
		// Deterministic by default: explain predicts, and the same
		// command should print the same thing twice.
		o.seed = 1
	}
	for _, b := range strings.Split(*busy, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.busy = append(o.busy, b)
		}
	}
	o.at = time.Now()
	return o, nil
}

// parseAt reads --at: RFC 3339 with a zone, or a local date and time read
// in the group's schedule zone (what an operator looking at that schedule
// means), else UTC.
func parseAt(s string, g *config.Group) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	loc := time.UTC
	if g.Schedule != nil && g.Schedule.Location != nil {
		loc = g.Schedule.Location
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time like 2026-12-24T09:00 or 2026-12-24T09:00:00+01:00", s)
}

// busyNames is every name --busy can use for a member: the user name and
// user:NAME, the URI and uri:URI.
func busyNames(m config.Member) []string {
	switch {
	case m.User != "":
		return []string{m.User, "user:" + m.User}
	case m.URI != "":
		return []string{m.URI, "uri:" + m.URI}
	}
	return nil
}

// checkBusy refuses names that match nothing in the config: a typo would
// otherwise silently explain a call in which everyone is free.
func checkBusy(cfg *config.Config, busy []string) error {
	known := map[string]bool{}
	for _, u := range cfg.Users {
		for _, n := range busyNames(config.Member{User: u.Name}) {
			known[n] = true
		}
	}
	for _, g := range cfg.Groups {
		for _, m := range g.Members {
			for _, n := range busyNames(m) {
				known[n] = true
			}
		}
		for _, f := range []config.Fallback{g.Fallback.NoAnswer, g.Fallback.Busy, g.Fallback.Congestion, g.Fallback.Closed} {
			for _, n := range busyNames(config.Member{User: f.User, URI: f.URI}) {
				known[n] = true
			}
		}
	}
	for _, b := range busy {
		if !known[b] {
			return fmt.Errorf("%q is no user, member or fallback destination in the config", b)
		}
	}
	return nil
}

// registered is the Directory explain assumes: every user has one contact.
type registered struct{}

func (registered) Contacts(user string) []routing.Contact {
	return []routing.Contact{{URI: "sip:" + user + "@registered.invalid"}}
}

// entry is one line of a call's timeline.
type entry struct {
	at, end time.Time // end set for spans
	seq     int       // order of observation, for ties
	text    string
}

// legInfo is what explain saw of one leg.
type legInfo struct {
	who        string
	start, end time.Time
	startSeq   int
	endSeq     int
	how        string
	ended      bool
}

// callRun is one explained call.
type callRun struct {
	start   time.Time
	entries []entry
	legs    map[routing.LegID]*legInfo
	order   []routing.LegID
	rec     *routing.Record
	seq     int
}

func (r *callRun) add(at time.Time, text string) {
	r.seq++
	r.entries = append(r.entries, entry{at: at, seq: r.seq, text: text})
}

func explain(w io.Writer, cfg *config.Config, g *config.Group, o explainOpts) {
	st := routing.NewState()
	busy := map[string]bool{}
	for _, b := range o.busy {
		busy[b] = true
	}
	fmt.Fprintf(w, "call to %s at %s from %s\n", g.Name, explainTime(o.at, g), o.from)
	var notes []string
	if len(o.busy) > 0 {
		notes = append(notes, "busy (486 at once): "+strings.Join(o.busy, ", "))
	}
	if o.ringing > 0 {
		notes = append(notes, fmt.Sprintf("%d other call%s already ringing in %s", o.ringing, plural(o.ringing), g.Name))
	}
	notes = append(notes, "nobody answers")
	fmt.Fprintln(w, strings.Join(notes, "; "))
	if usesChance(cfg, g) {
		fmt.Fprintf(w, "seed %d\n", o.seed)
	}

	// Calls already there: real calls through the same code, started and
	// left ringing, so they hold what such calls hold.
	for i := 0; i < o.ringing; i++ {
		routing.Start(o.at, routing.Setup{
			CallID: fmt.Sprintf("other-%d", i+1), Config: cfg, Group: g, Dialled: g.Name,
			Caller: routing.Party{URI: "sip:other@example.invalid"}, Directory: registered{}, State: st,
			Rand: rand.New(rand.NewPCG(o.seed, uint64(1000000+i))),
		})
	}

	at := o.at
	var runs []*callRun
	for k := 1; k <= o.calls; k++ {
		r := runCall(cfg, g, o, st, busy, k, at)
		runs = append(runs, r)
		at = r.rec.End
	}
	if o.calls == 1 {
		fmt.Fprintln(w)
		printTimeline(w, runs[0])
		return
	}
	for k, r := range runs {
		fmt.Fprintf(w, "\ncall %d at %s: %s\n", k+1, rel(r.start, o.at), ringOrder(r))
		fmt.Fprintf(w, "  %s\n", verdict(r, o.at))
	}
}

// runCall drives one call to its end on a virtual clock.
func runCall(cfg *config.Config, g *config.Group, o explainOpts, st *routing.State, busy map[string]bool, k int, at time.Time) *callRun {
	r := &callRun{start: at, legs: map[routing.LegID]*legInfo{}}
	s := routing.Setup{
		CallID:    fmt.Sprintf("explain-%d", k),
		Config:    cfg,
		Group:     g,
		Dialled:   g.Name,
		Caller:    routing.Party{URI: o.from},
		Directory: registered{},
		Rand:      rand.New(rand.NewPCG(o.seed, uint64(k))),
		State:     st,
		Trace:     func(ev routing.TraceEvent) { r.add(ev.At, traceText(ev)) },
	}
	now := at
	var queue []routing.Event
	handle := func(acts []routing.Action) {
		for _, a := range acts {
			switch a := a.(type) {
			case routing.StartLeg:
				who := memberOf(a.Target)
				r.seq++
				r.legs[a.Leg] = &legInfo{who: who, start: now, startSeq: r.seq}
				r.order = append(r.order, a.Leg)
				if isBusy(busy, a.Target) {
					queue = append(queue, routing.LegFailed{Leg: a.Leg, Code: 486})
				}
			case routing.CancelLeg:
				endLeg(r, a.Leg, now, cancelHow(a.Reason))
				queue = append(queue, routing.LegFailed{Leg: a.Leg, Code: 487})
			case routing.HangUpLeg:
				queue = append(queue, routing.LegEnded{Leg: a.Leg})
			case routing.RejectCaller:
				r.add(now, fmt.Sprintf("caller gets %d", a.Code))
			case routing.Finish:
				rec := a.Record
				r.rec = &rec
			}
		}
	}
	c, acts := routing.Start(now, s)
	handle(acts)
	for i := 0; !c.Over() && i < 100000; i++ {
		if len(queue) > 0 {
			ev := queue[0]
			queue = queue[1:]
			if f, ok := ev.(routing.LegFailed); ok && f.Code == 486 {
				endLeg(r, f.Leg, now, "busy (486)")
			}
			handle(c.Step(now, ev))
			continue
		}
		d, ok := c.Deadline()
		if !ok {
			break
		}
		now = d
		handle(c.Step(now, routing.Tick{}))
	}
	if r.rec == nil {
		// Not reachable with legs that always end; say so rather than hang.
		r.add(now, "the call did not end (a bug: please report it)")
		r.rec = &routing.Record{End: now}
	}
	return r
}

func endLeg(r *callRun, id routing.LegID, at time.Time, how string) {
	l := r.legs[id]
	if l == nil || l.ended {
		return
	}
	r.seq++
	l.end, l.endSeq, l.how, l.ended = at, r.seq, how, true
}

func cancelHow(why routing.CancelReason) string {
	switch why {
	case routing.CancelRingTimeout:
		return "rang out"
	case routing.CancelGroupTimeout:
		return "group timeout"
	}
	return why.String()
}

// memberOf is how a leg is named in the timeline: its member path, with a
// fallback destination said as such.
func memberOf(t routing.Target) string {
	if f, ok := strings.CutPrefix(t.Member, "fallback:"); ok {
		return "fallback " + f
	}
	return t.Member
}

// isBusy matches a leg's member against --busy.
func isBusy(busy map[string]bool, t routing.Target) bool {
	key := t.Member
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		key = key[i+1:]
	}
	key = strings.TrimPrefix(key, "fallback:")
	if busy[key] {
		return true
	}
	if u, ok := strings.CutPrefix(key, "user:"); ok {
		return busy[u]
	}
	if u, ok := strings.CutPrefix(key, "uri:"); ok {
		return busy[u]
	}
	return false
}

func traceText(ev routing.TraceEvent) string {
	switch ev.Kind {
	case routing.TraceEnter:
		if strings.HasPrefix(ev.Text, "as member") {
			return "enter " + ev.Group + " " + ev.Text
		}
		return "enter " + ev.Group + ": " + ev.Text
	case routing.TraceRefused:
		return ev.Group + " refuses the call: " + ev.Text
	case routing.TracePass:
		return ev.Group + " " + ev.Text
	case routing.TraceGiveUp:
		return ev.Group + " stops: " + ev.Text
	case routing.TraceFallback:
		return ev.Group + " takes " + ev.Text
	}
	return ev.Text
}

func printTimeline(w io.Writer, r *callRun) {
	es := append([]entry(nil), r.entries...)
	for _, id := range r.order {
		l := r.legs[id]
		how := l.how
		if how == "" {
			how = "still ringing"
		}
		es = append(es, entry{at: l.start, end: l.end, seq: l.startSeq, text: l.who + ": " + how})
	}
	es = append(es, gaps(r)...)
	sort.SliceStable(es, func(i, j int) bool {
		if !es[i].at.Equal(es[j].at) {
			return es[i].at.Before(es[j].at)
		}
		return es[i].seq < es[j].seq
	})
	for _, e := range es {
		when := rel(e.at, r.start)
		if !e.end.IsZero() && !e.end.Equal(e.at) {
			when += "-" + rel(e.end, r.start)
		}
		fmt.Fprintf(w, "%-14s %s\n", when, e.text)
	}
	fmt.Fprintf(w, "%-14s %s\n", rel(r.rec.End, r.start), outcomeLine(r))
}

// gaps are the stretches between the first ring and the end of the call
// in which nothing rings: retry_delay pauses, delays, the wait before a
// group timeout that falls in a pause.
func gaps(r *callRun) []entry {
	type span struct {
		from, to time.Time
		seq      int
	}
	var spans []span
	for _, id := range r.order {
		l := r.legs[id]
		spans = append(spans, span{l.start, l.end, l.endSeq})
	}
	if len(spans) == 0 {
		return nil
	}
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].from.Before(spans[j].from) })
	var out []entry
	add := func(from, to time.Time, seq int) {
		if to.After(from) {
			out = append(out, entry{at: from, end: to, seq: seq, text: "nothing rings"})
		}
	}
	add(r.start, spans[0].from, 0)
	reach, seq := spans[0].to, spans[0].seq
	for _, s := range spans[1:] {
		if s.from.After(reach) {
			add(reach, s.from, seq)
		}
		if s.to.After(reach) || s.to.Equal(reach) {
			reach, seq = s.to, max(seq, s.seq)
		}
	}
	add(reach, r.rec.End, seq)
	return out
}

func outcomeLine(r *callRun) string {
	rec := r.rec
	s := "outcome " + rec.Outcome
	if rec.Fallback != "" {
		s += ", fallback " + rec.Fallback
	}
	for _, n := range rec.Notes {
		s += "\n" + strings.Repeat(" ", 15) + "note: " + n
	}
	return s
}

// ringOrder is who rang in a call, in order; members that started at the
// same moment are joined with +.
func ringOrder(r *callRun) string {
	var parts []string
	var last time.Time
	for i, id := range r.order {
		l := r.legs[id]
		who := l.who
		if l.how == "busy (486)" {
			who += " (busy)"
		}
		if i > 0 && l.start.Equal(last) {
			parts[len(parts)-1] += " + " + who
		} else {
			parts = append(parts, who)
		}
		last = l.start
	}
	if len(parts) == 0 {
		return "nobody rings"
	}
	return strings.Join(parts, ", ")
}

func verdict(r *callRun, base time.Time) string {
	rec := r.rec
	s := fmt.Sprintf("at %s caller gets %d, outcome %s", rel(rec.End, base), rec.Code, rec.Outcome)
	if rec.Fallback != "" {
		s += ", fallback " + rec.Fallback
	}
	return s
}

// usesChance reports whether a call to g can meet a random strategy: g,
// groups nested in it, and groups its fallbacks lead to.
func usesChance(cfg *config.Config, g *config.Group) bool {
	seen := map[string]bool{}
	var walk func(x *config.Group) bool
	walk = func(x *config.Group) bool {
		if x == nil || seen[x.Name] {
			return false
		}
		seen[x.Name] = true
		if x.Strategy == "random" || x.Strategy == "weight_random" {
			return true
		}
		for _, m := range x.Members {
			if m.Group != "" && walk(cfg.Group(m.Group)) {
				return true
			}
		}
		for _, f := range []config.Fallback{x.Fallback.NoAnswer, x.Fallback.Busy, x.Fallback.Congestion, x.Fallback.Closed} {
			if f.Group != "" && walk(cfg.Group(f.Group)) {
				return true
			}
		}
		return false
	}
	return walk(g)
}

// explainTime is the call's time, in the group's schedule zone when it has
// one (that is how the schedule reads it), else in UTC.
func explainTime(t time.Time, g *config.Group) string {
	if g.Schedule != nil && g.Schedule.Location != nil {
		return t.In(g.Schedule.Location).Format("Mon 2006-01-02 15:04:05") + " " + g.Schedule.Timezone
	}
	return t.UTC().Format("Mon 2006-01-02 15:04:05") + " UTC"
}

// rel renders t as seconds after base, to the millisecond: 0s, 6s, 12.5s.
func rel(t, base time.Time) string {
	s := strconv.FormatFloat(t.Sub(base).Seconds(), 'f', 3, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "s"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
