package routing

// A small script language for Call, in the manner of raft's interaction
// tests: each file in testdata/*.txt is a list of cases
//
//	# comments
//	command
//	command
//	----
//	expected output
//	<blank line>
//
// and `go test ./routing -run TestScripts -update` rewrites the expected
// parts from what the Call does now (review the diff!).
//
// Config commands (no output), building a *config.Config by hand:
//
//	group NAME [strategy=linear] [timeout=0] [member_timeout=15s] [retry_delay=0]
//	      [repeats=0] [enabled=true] [answered_elsewhere=true] [follow_forward=true]
//	      [caller_id=MODE:NAME] [ring_in_use=true] [max_calls=0] [distribute_evenly=false]
//	member uri=URI|user=NAME|group=NAME [timeout=D] [delay=D] [weight=N]   (adds to the last group)
//	fallback noanswer|busy|closed|congestion=reject:CODE|uri:URI|user:NAME|group:NAME [timeout=D]
//	permissions [allow=GLOB,...] [deny=GLOB,...]              (the last group)
//	schedule ZONE "DAYS HH:MM-HH:MM"... [closed=DATE,...]     (the last group)
//	contacts USER URI...                                      (the Directory)
//	caller URI [display="NAME"] [user=NAME]
//
// `reload` starts a new config (the groups that follow) while calls, the
// directory and the State stay, as SIGHUP does; `reloaded` then tells the
// State, as sip does after a reload.
//
// `reset` forgets the config, the directory, the caller, the calls and the
// shared State, so one file can hold several scenarios. Every call of a
// scenario shares one State, as the calls of one server do.
//
// Several calls can be up at once: `call` parks the current one and starts
// another at the current call's time; `switch NAME` makes a parked one
// current again. Only the current call moves; once there are two, every
// line says which call it is about.
//
// Call commands print a timeline: time since the call started, then "<-"
// and the event fed in, or an action the Call returned.
//
//	call GROUP [as=NAME]    Start (at 0s for the first call; names call1, call2, ...)
//	switch NAME             make that call the current one
//	trace on|off            print what Setup.Trace is told, as "~ kind: text"
//	state                   print the shared State: calls per group, members in use, memory
//	run [until=D]           Tick at every deadline (up to D), as a Runner would
//	at D EVENT              run until D, then Step EVENT at D; EVENT is one of
//	                        ringing LEG | answer LEG | fail LEG CODE [CONTACT...] |
//	                        ended LEG | caller-cancel | caller-bye | answer-failed | tick
//	late D EVENT            Step EVENT at D without the Ticks before it
//	auto on|off             answer every CancelLeg with LegFailed 487 and every
//	                        HangUpLeg with LegEnded at once, as sip would
//	over                    print Over() and the legs still open
//	deadline                print Deadline()
//	record                  print the CDR from Finish
//
// Every Step is also checked against the invariants FuzzCall checks.

import (
	"bufio"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringroute/ringroute/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.txt expectations from the current behaviour")

func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScriptFile(t, f) })
	}
}

type scriptCase struct {
	line     int      // of the first command, for messages
	pre      []string // comment and blank lines before the commands
	cmds     []string
	expected string
}

func parseScript(path string) ([]scriptCase, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cases []scriptCase
	var cur scriptCase
	inOut := false
	var out []string
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case inOut && line == "":
			cur.expected = strings.Join(out, "\n")
			cases = append(cases, cur)
			cur, out, inOut = scriptCase{}, nil, false
		case inOut:
			out = append(out, line)
		case line == "----":
			if len(cur.cmds) == 0 {
				return nil, fmt.Errorf("%s:%d: ---- without commands", path, n)
			}
			inOut = true
		case len(cur.cmds) == 0 && (line == "" || strings.HasPrefix(line, "#")):
			cur.pre = append(cur.pre, line)
		default:
			if len(cur.cmds) == 0 {
				cur.line = n
			}
			cur.cmds = append(cur.cmds, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if inOut {
		cur.expected = strings.Join(out, "\n")
		cases = append(cases, cur)
	} else if len(cur.cmds) > 0 {
		return nil, fmt.Errorf("%s:%d: commands without ----", path, cur.line)
	}
	return cases, nil
}

func runScriptFile(t *testing.T, path string) {
	cases, err := parseScript(path)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness()
	var rewritten strings.Builder
	for _, c := range cases {
		h.out.Reset()
		for _, cmd := range c.cmds {
			if err := h.exec(cmd); err != nil {
				t.Fatalf("%s:%d: %s: %v", path, c.line, cmd, err)
			}
		}
		got := strings.TrimRight(h.out.String(), "\n")
		if !*update && got != c.expected {
			t.Errorf("%s:%d: %s\n--- got\n%s\n--- want\n%s", path, c.line, strings.Join(c.cmds, "; "), got, c.expected)
		}
		for _, p := range c.pre {
			rewritten.WriteString(p + "\n")
		}
		rewritten.WriteString(strings.Join(c.cmds, "\n") + "\n----\n")
		if got != "" {
			rewritten.WriteString(got + "\n")
		}
		rewritten.WriteString("\n")
	}
	if *update {
		if err := os.WriteFile(path, []byte(strings.TrimRight(rewritten.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// t0 is when every scripted call starts; output shows times relative to it.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

type harness struct {
	cfg    *config.Config
	dir    fakeDir
	caller Party
	state  *State
	call   *Call
	now    time.Time
	auto   bool
	trace  bool
	check  *checker
	finish *Record
	out    strings.Builder

	name   string              // of the current call
	parked map[string]callSlot // the other calls
	calls  int                 // started since reset
}

// callSlot is a call not current in the harness.
type callSlot struct {
	call   *Call
	now    time.Time
	check  *checker
	finish *Record
}

func newHarness() *harness {
	return &harness{
		cfg:    &config.Config{},
		dir:    fakeDir{},
		caller: Party{URI: "sip:caller@198.51.100.7"},
		state:  NewState(),
		parked: map[string]callSlot{},
	}
}

func (h *harness) park() {
	if h.call != nil {
		h.parked[h.name] = callSlot{call: h.call, now: h.now, check: h.check, finish: h.finish}
	}
}

func (h *harness) unpark(name string) error {
	sl, ok := h.parked[name]
	if !ok {
		return fmt.Errorf("no call %q", name)
	}
	h.park()
	delete(h.parked, name)
	h.name, h.call, h.now, h.check, h.finish = name, sl.call, sl.now, sl.check, sl.finish
	return nil
}

// fakeDir is a Directory from a map.
type fakeDir map[string][]Contact

func (d fakeDir) Contacts(user string) []Contact { return d[user] }

func (h *harness) exec(line string) error {
	f, err := fields(line)
	if err != nil {
		return err
	}
	if len(f) == 0 {
		return fmt.Errorf("empty command")
	}
	args, kv := splitArgs(f[1:])
	switch f[0] {
	case "group":
		return h.group(args, kv)
	case "member":
		return h.member(kv)
	case "fallback":
		return h.fallback(kv)
	case "contacts":
		if len(args) < 1 {
			return fmt.Errorf("contacts USER URI...")
		}
		for _, u := range args[1:] {
			h.dir[args[0]] = append(h.dir[args[0]], Contact{URI: u})
		}
		return nil
	case "caller":
		if len(args) != 1 {
			return fmt.Errorf("caller URI [display=NAME]")
		}
		h.caller = Party{URI: args[0], Display: kv["display"], User: kv["user"]}
		return nil
	case "permissions":
		g, err := h.lastGroup()
		if err != nil {
			return err
		}
		split := func(v string) []string {
			if v == "" {
				return []string{}
			}
			return strings.Split(v, ",")
		}
		if v, ok := kv["allow"]; ok {
			g.Permissions.Allow = split(v)
		}
		if v, ok := kv["deny"]; ok {
			g.Permissions.Deny = split(v)
		}
		return nil
	case "schedule":
		return h.schedule(args, kv)
	case "switch":
		if len(args) != 1 {
			return fmt.Errorf("switch NAME")
		}
		return h.unpark(args[0])
	case "trace":
		h.trace = len(args) == 0 || args[0] == "on"
		return nil
	case "state":
		h.printState()
		return nil
	case "reset":
		*h = *newHarness()
		return nil
	case "reload":
		h.cfg = &config.Config{}
		return nil
	case "reloaded":
		h.state.Reload(h.cfg)
		return nil
	case "call":
		return h.start(args, kv)
	case "run":
		until := time.Duration(-1)
		if s, ok := kv["until"]; ok {
			d, err := time.ParseDuration(s)
			if err != nil {
				return err
			}
			until = d
		}
		return h.run(until)
	case "at":
		if len(f) < 3 {
			return fmt.Errorf("at D EVENT")
		}
		d, err := time.ParseDuration(f[1])
		if err != nil {
			return err
		}
		ev, err := parseEvent(f[2:])
		if err != nil {
			return err
		}
		if err := h.run(d); err != nil {
			return err
		}
		return h.step(t0.Add(d), ev, "")
	case "late":
		// Like at, without the Ticks before: a Runner whose timer fired
		// late, or an event that beat the Tick into the queue.
		if len(f) < 3 {
			return fmt.Errorf("late D EVENT")
		}
		d, err := time.ParseDuration(f[1])
		if err != nil {
			return err
		}
		ev, err := parseEvent(f[2:])
		if err != nil {
			return err
		}
		return h.step(t0.Add(d), ev, "")
	case "auto":
		h.auto = len(args) == 0 || args[0] == "on"
		return nil
	case "over":
		return h.over()
	case "deadline":
		if h.call == nil {
			return fmt.Errorf("no call")
		}
		if d, ok := h.call.Deadline(); ok {
			fmt.Fprintf(&h.out, "deadline %s\n", rel(d))
		} else {
			fmt.Fprintf(&h.out, "deadline none\n")
		}
		return nil
	case "record":
		if h.finish == nil {
			h.out.WriteString("no Finish yet\n")
			return nil
		}
		h.out.WriteString(formatRecord(*h.finish))
		return nil
	}
	return fmt.Errorf("unknown command %q", f[0])
}

func (h *harness) lastGroup() (*config.Group, error) {
	if len(h.cfg.Groups) == 0 {
		return nil, fmt.Errorf("no group yet")
	}
	return h.cfg.Groups[len(h.cfg.Groups)-1], nil
}

func (h *harness) group(args []string, kv map[string]string) error {
	if len(args) != 1 {
		return fmt.Errorf("group NAME key=value...")
	}
	g := &config.Group{
		Name:              args[0],
		Enabled:           true,
		Strategy:          "linear",
		MemberTimeout:     15 * time.Second,
		AnsweredElsewhere: true,
		FollowForward:     true,
		RingInUse:         true,
	}
	for k, v := range kv {
		var err error
		switch k {
		case "strategy":
			g.Strategy = v
		case "timeout":
			g.Timeout, err = time.ParseDuration(v)
		case "member_timeout":
			g.MemberTimeout, err = time.ParseDuration(v)
		case "retry_delay":
			g.RetryDelay, err = time.ParseDuration(v)
		case "repeats":
			g.Repeats, err = strconv.Atoi(v)
		case "enabled":
			g.Enabled, err = strconv.ParseBool(v)
		case "answered_elsewhere":
			g.AnsweredElsewhere, err = strconv.ParseBool(v)
		case "follow_forward":
			g.FollowForward, err = strconv.ParseBool(v)
		case "caller_id":
			mode, name, _ := strings.Cut(v, ":")
			g.CallerID = config.CallerID{Mode: mode, Name: name}
		case "ring_in_use":
			g.RingInUse, err = strconv.ParseBool(v)
		case "max_calls":
			g.MaxCalls, err = strconv.Atoi(v)
		case "distribute_evenly":
			g.DistributeEvenly, err = strconv.ParseBool(v)
		default:
			return fmt.Errorf("unknown group key %q", k)
		}
		if err != nil {
			return fmt.Errorf("%s: %v", k, err)
		}
	}
	h.cfg.Groups = append(h.cfg.Groups, g)
	return nil
}

func (h *harness) member(kv map[string]string) error {
	g, err := h.lastGroup()
	if err != nil {
		return err
	}
	m := config.Member{URI: kv["uri"], User: kv["user"], Group: kv["group"], Weight: 1}
	if w, ok := kv["weight"]; ok {
		if m.Weight, err = strconv.Atoi(w); err != nil {
			return fmt.Errorf("weight: %v", err)
		}
	}
	for k, p := range map[string]*time.Duration{"timeout": &m.Timeout, "delay": &m.Delay} {
		if s, ok := kv[k]; ok {
			if *p, err = time.ParseDuration(s); err != nil {
				return fmt.Errorf("%s: %v", k, err)
			}
		}
	}
	g.Members = append(g.Members, m)
	return nil
}

func (h *harness) fallback(kv map[string]string) error {
	g, err := h.lastGroup()
	if err != nil {
		return err
	}
	var timeout time.Duration
	if s, ok := kv["timeout"]; ok {
		if timeout, err = time.ParseDuration(s); err != nil {
			return err
		}
	}
	for k, v := range kv {
		var p *config.Fallback
		switch k {
		case "timeout":
			continue
		case "noanswer":
			p = &g.Fallback.NoAnswer
		case "busy":
			p = &g.Fallback.Busy
		case "closed":
			p = &g.Fallback.Closed
		case "congestion":
			p = &g.Fallback.Congestion
		default:
			return fmt.Errorf("unknown fallback %q", k)
		}
		kind, dest, _ := strings.Cut(v, ":")
		fb := config.Fallback{Timeout: timeout}
		switch kind {
		case "reject":
			if fb.Reject, err = strconv.Atoi(dest); err != nil {
				return err
			}
		case "uri":
			fb.URI = dest
		case "user":
			fb.User = dest
		case "group":
			fb.Group = dest
		default:
			return fmt.Errorf("fallback %s: unknown kind %q", k, kind)
		}
		*p = fb
	}
	return nil
}

// schedule sets the last group's schedule by loading it as config does,
// so the harness cannot read one differently from Load.
func (h *harness) schedule(args []string, kv map[string]string) error {
	g, err := h.lastGroup()
	if err != nil {
		return err
	}
	if len(args) < 1 {
		return fmt.Errorf("schedule ZONE RANGE... [closed=DATE,...]")
	}
	var y strings.Builder
	fmt.Fprintf(&y, "groups:\n  - name: x\n    extension: \"1\"\n    members: [{uri: \"sip:x@x\"}]\n    schedule:\n      timezone: %s\n      open: [", args[0])
	for i, r := range args[1:] {
		if i > 0 {
			y.WriteString(", ")
		}
		fmt.Fprintf(&y, "%q", r)
	}
	y.WriteString("]\n")
	if v, ok := kv["closed"]; ok {
		fmt.Fprintf(&y, "      closed_dates: [%s]\n", v)
	}
	c, err := config.Parse("schedule", []byte(y.String()))
	if err != nil {
		return err
	}
	g.Schedule = c.Groups[0].Schedule
	return nil
}

func (h *harness) printState() {
	st := h.state
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(st.groups)) {
		gs := st.groups[name]
		fmt.Fprintf(&h.out, "group %s: calls=%d last=%q\n", name, gs.calls, gs.last)
		for _, k := range slices.Sorted(maps.Keys(gs.members)) {
			ms := gs.members[k]
			last := "-"
			if !ms.lastCall.IsZero() {
				last = rel(ms.lastCall)
			}
			fmt.Fprintf(&h.out, "  %s answered=%d last_call=%s\n", k, ms.answered, last)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(st.inUse)) {
		fmt.Fprintf(&h.out, "in use: %s (%d)\n", id, st.inUse[id])
	}
}

func (h *harness) start(args []string, kv map[string]string) error {
	if len(args) != 1 {
		return fmt.Errorf("call GROUP [as=NAME]")
	}
	var g *config.Group
	for _, x := range h.cfg.Groups {
		if x.Name == args[0] {
			g = x
		}
	}
	if g == nil {
		return fmt.Errorf("no group %q", args[0])
	}
	h.calls++
	name := kv["as"]
	if name == "" {
		name = fmt.Sprintf("call%d", h.calls)
	}
	at := t0
	if h.call != nil {
		at = h.now
	}
	h.park()
	h.name, h.finish = name, nil
	s := Setup{
		CallID:    fmt.Sprintf("call-%d@test", h.calls),
		Config:    h.cfg,
		Group:     g,
		Dialled:   g.Name,
		Caller:    h.caller,
		Directory: h.dir,
		State:     h.state,
		Trace: func(ev TraceEvent) {
			if h.trace {
				fmt.Fprintf(&h.out, "%-7s %s~ %s %s: %s\n", rel(ev.At), h.prefix(), ev.Group, ev.Kind, ev.Text)
			}
		},
	}
	h.now = at
	h.check = newChecker()
	c, acts := Start(at, s)
	h.call = c
	return h.emit(acts)
}

// run ticks at every deadline up to until (until < 0: while there is one).
func (h *harness) run(until time.Duration) error {
	if h.call == nil {
		return fmt.Errorf("no call")
	}
	for i := 0; ; i++ {
		if i > 10000 {
			return fmt.Errorf("still ticking after %d deadlines", i)
		}
		d, ok := h.call.Deadline()
		if !ok || until >= 0 && d.After(t0.Add(until)) {
			break
		}
		if err := h.step(d, Tick{}, "-"); err != nil {
			return err
		}
	}
	if until >= 0 && t0.Add(until).After(h.now) {
		h.now = t0.Add(until)
	}
	return nil
}

// step feeds ev at now and prints what happens. mark "" prints the event,
// "-" hides it (ticks of run), anything else is a prefix for it.
func (h *harness) step(now time.Time, ev Event, mark string) error {
	if h.call == nil {
		return fmt.Errorf("no call")
	}
	if now.Before(h.now) {
		return fmt.Errorf("time goes back: %s before %s", rel(now), rel(h.now))
	}
	h.now = now
	if mark != "-" {
		h.line("<- " + mark + formatEvent(ev))
	}
	h.check.event(ev)
	return h.emit(h.call.Step(now, ev))
}

func (h *harness) emit(acts []Action) error {
	if err := h.check.actions(h.call, h.now, acts); err != nil {
		return err
	}
	var replies []Event
	for _, a := range acts {
		h.line(formatAction(a))
		switch a := a.(type) {
		case Finish:
			r := a.Record
			h.finish = &r
		case CancelLeg:
			replies = append(replies, LegFailed{Leg: a.Leg, Code: 487})
		case HangUpLeg:
			replies = append(replies, LegEnded{Leg: a.Leg})
		}
	}
	if !h.auto {
		return nil
	}
	for _, ev := range replies {
		if err := h.step(h.now, ev, "(auto) "); err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) over() error {
	if h.call == nil {
		return fmt.Errorf("no call")
	}
	var open []string
	for _, l := range h.call.legs {
		if l.state != legDone {
			open = append(open, fmt.Sprintf("leg%d", l.id))
		}
	}
	fmt.Fprintf(&h.out, "over=%t", h.call.Over())
	if len(open) > 0 {
		fmt.Fprintf(&h.out, " open=%s", strings.Join(open, ","))
	}
	h.out.WriteString("\n")
	return nil
}

func (h *harness) line(s string) { fmt.Fprintf(&h.out, "%-7s %s%s\n", rel(h.now), h.prefix(), s) }

// prefix names the current call once a scenario has more than one.
func (h *harness) prefix() string {
	if h.calls < 2 {
		return ""
	}
	return "[" + h.name + "] "
}

// rel renders a time as seconds since t0, to the millisecond.
func rel(t time.Time) string { return secs(t.Sub(t0)) }

func secs(d time.Duration) string {
	s := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "s"
}

func parseEvent(f []string) (Event, error) {
	legArg := func(i int) (LegID, error) {
		if len(f) <= i {
			return 0, fmt.Errorf("%s: missing leg", f[0])
		}
		n, err := strconv.Atoi(strings.TrimPrefix(f[i], "leg"))
		return LegID(n), err
	}
	switch f[0] {
	case "ringing":
		l, err := legArg(1)
		return LegRinging{Leg: l, Code: 180}, err
	case "answer":
		l, err := legArg(1)
		return LegAnswered{Leg: l}, err
	case "ended":
		l, err := legArg(1)
		return LegEnded{Leg: l}, err
	case "fail":
		l, err := legArg(1)
		if err != nil {
			return nil, err
		}
		if len(f) < 3 {
			return nil, fmt.Errorf("fail LEG CODE [CONTACT...]")
		}
		code, err := strconv.Atoi(f[2])
		return LegFailed{Leg: l, Code: code, Contacts: f[3:]}, err
	case "caller-cancel":
		return CallerCancelled{}, nil
	case "caller-bye":
		return CallerEnded{}, nil
	case "answer-failed":
		return CallerAnswerFailed{}, nil
	case "shutdown":
		return Shutdown{}, nil
	case "media-timeout":
		return MediaTimeout{}, nil
	case "pickup":
		if len(f) < 2 {
			return nil, fmt.Errorf("pickup USER")
		}
		return PickedUp{By: f[1], URI: "sip:" + f[1] + "@phone"}, nil
	case "tick":
		return Tick{}, nil
	}
	return nil, fmt.Errorf("unknown event %q", f[0])
}

func formatEvent(ev Event) string {
	switch ev := ev.(type) {
	case LegRinging:
		return fmt.Sprintf("LegRinging leg%d %d", ev.Leg, ev.Code)
	case LegAnswered:
		return fmt.Sprintf("LegAnswered leg%d", ev.Leg)
	case LegFailed:
		s := fmt.Sprintf("LegFailed leg%d %d", ev.Leg, ev.Code)
		if len(ev.Contacts) > 0 {
			s += " " + strings.Join(ev.Contacts, " ")
		}
		return s
	case LegEnded:
		return fmt.Sprintf("LegEnded leg%d", ev.Leg)
	case CallerCancelled:
		return "CallerCancelled"
	case CallerEnded:
		return "CallerEnded"
	case CallerAnswerFailed:
		return "CallerAnswerFailed"
	case Shutdown:
		return "Shutdown"
	case MediaTimeout:
		return "MediaTimeout"
	case PickedUp:
		return "PickedUp " + ev.By
	case Tick:
		return "Tick"
	}
	return fmt.Sprintf("%T%+v", ev, ev)
}

func formatAction(a Action) string {
	switch a := a.(type) {
	case StartLeg:
		t := a.Target
		s := fmt.Sprintf("StartLeg leg%d %s (%s %s)", a.Leg, t.URI, t.Group, t.Member)
		if t.Display != "" {
			s += fmt.Sprintf(" display=%q", t.Display)
		}
		return s
	case CancelLeg:
		s := fmt.Sprintf("CancelLeg leg%d %s", a.Leg, a.Reason)
		if a.Elsewhere {
			s += " +elsewhere"
		}
		return s
	case HangUpLeg:
		return fmt.Sprintf("HangUpLeg leg%d", a.Leg)
	case RingCaller:
		return "RingCaller"
	case AnswerCaller:
		return fmt.Sprintf("AnswerCaller leg%d", a.Leg)
	case RejectCaller:
		return fmt.Sprintf("RejectCaller %d", a.Code)
	case HangUpCaller:
		return "HangUpCaller"
	case ConnectPicker:
		return fmt.Sprintf("ConnectPicker leg%d", a.Leg)
	case RefusePicker:
		return "RefusePicker"
	case Finish:
		return fmt.Sprintf("Finish %s %d", a.Record.Outcome, a.Record.Code)
	}
	return fmt.Sprintf("%T%+v", a, a)
}

func formatRecord(r Record) string {
	var b strings.Builder
	answer := "-"
	if r.Answer != nil {
		answer = rel(*r.Answer)
	}
	fmt.Fprintf(&b, "call_id=%s group=%s caller=%s dialled=%s\n", r.CallID, r.Group, r.Caller, r.Dialled)
	fmt.Fprintf(&b, "start=%s answer=%s end=%s outcome=%s code=%d\n", rel(r.Start), answer, rel(r.End), r.Outcome, r.Code)
	if r.AnsweredBy != "" || r.AnsweredAt != "" {
		fmt.Fprintf(&b, "answered_by=%s answered_uri=%s\n", r.AnsweredBy, r.AnsweredAt)
	}
	if r.Fallback != "" {
		fmt.Fprintf(&b, "fallback=%s\n", r.Fallback)
	}
	if r.EndedBy != "" {
		fmt.Fprintf(&b, "ended_by=%s\n", r.EndedBy)
	}
	fmt.Fprintf(&b, "groups=%s\n", strings.Join(r.Groups, ","))
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, l := range r.Legs {
		fmt.Fprintf(&b, "leg%d %s %s %s start=%s code=%d ring=%dms reason=%q\n",
			l.Leg, l.Group, l.Member, l.URI, rel(l.Start), l.Code, l.RingMS, l.Reason)
	}
	return b.String()
}

// fields splits a command line on spaces; double quotes group words (for
// display names) and are removed.
func fields(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, have := false, false
	for _, r := range line {
		switch {
		case r == '"':
			in, have = !in, true
		case r == ' ' && !in:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if in {
		return nil, fmt.Errorf("unclosed quote")
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}

// splitArgs separates positional arguments from key=value ones. A URI
// positional argument has no "=" before its first ":", which tells them
// apart from keys.
func splitArgs(f []string) ([]string, map[string]string) {
	kv := map[string]string{}
	var args []string
	for _, s := range f {
		k, v, ok := strings.Cut(s, "=")
		if ok && !strings.Contains(k, ":") {
			kv[k] = v
			continue
		}
		args = append(args, s)
	}
	return args, kv
}

// checker holds the invariants of a Call's output, for scripts and FuzzCall.
type checker struct {
	started   map[LegID]bool
	cancelled map[LegID]bool
	hungUp    map[LegID]bool
	next      LegID
	answered  bool
	rang      bool
	finished  bool
	rejected  bool
	events    []Event // the last few, for messages
}

func newChecker() *checker {
	return &checker{started: map[LegID]bool{}, cancelled: map[LegID]bool{}, hungUp: map[LegID]bool{}, next: 1}
}

func (k *checker) event(ev Event) {
	k.events = append(k.events, ev)
	if len(k.events) > 8 {
		k.events = k.events[1:]
	}
}

func (k *checker) actions(c *Call, now time.Time, acts []Action) error {
	for _, a := range acts {
		if err := k.action(a); err != nil {
			return fmt.Errorf("%s: %v (actions %v, after events %v)", formatAction(a), err, acts, k.events)
		}
	}
	if d, ok := c.Deadline(); ok && !d.After(now) {
		return fmt.Errorf("deadline %s not after now %s: Step left due work undone", rel(d), rel(now))
	}
	if c.Over() && !k.finished {
		return fmt.Errorf("Over without Finish")
	}
	return nil
}

func (k *checker) action(a Action) error {
	known := func(l LegID) error {
		if !k.started[l] {
			return fmt.Errorf("leg%d was never started", l)
		}
		return nil
	}
	if k.finished {
		switch a.(type) {
		case CancelLeg, HangUpLeg:
		default:
			return fmt.Errorf("after Finish, only leg cleanup may follow")
		}
	}
	switch a := a.(type) {
	case StartLeg:
		if a.Leg != k.next {
			return fmt.Errorf("leg ID %d, want %d (IDs count up from 1, never reused)", a.Leg, k.next)
		}
		if a.Target.URI == "" || a.Target.Group == "" || a.Target.Member == "" {
			return fmt.Errorf("incomplete target %+v", a.Target)
		}
		k.next++
		k.started[a.Leg] = true
	case CancelLeg:
		if err := known(a.Leg); err != nil {
			return err
		}
		if k.cancelled[a.Leg] || k.hungUp[a.Leg] {
			return fmt.Errorf("leg%d cancelled after CancelLeg or HangUpLeg", a.Leg)
		}
		if a.Elsewhere && a.Reason != CancelAnsweredElsewhere {
			return fmt.Errorf("Elsewhere on reason %s", a.Reason)
		}
		k.cancelled[a.Leg] = true
	case HangUpLeg:
		if err := known(a.Leg); err != nil {
			return err
		}
		if k.hungUp[a.Leg] {
			return fmt.Errorf("leg%d hung up twice", a.Leg)
		}
		k.hungUp[a.Leg] = true
	case RingCaller:
		if k.rang || k.answered || k.rejected {
			return fmt.Errorf("RingCaller again, or after answer or reject")
		}
		k.rang = true
	case AnswerCaller:
		if err := known(a.Leg); err != nil {
			return err
		}
		if k.answered || k.rejected {
			return fmt.Errorf("second answer, or answer after reject")
		}
		k.answered = true
	case ConnectPicker:
		// The picker's leg starts answered, with the next ID.
		if a.Leg != k.next {
			return fmt.Errorf("picker leg ID %d, want %d", a.Leg, k.next)
		}
		if k.answered || k.rejected {
			return fmt.Errorf("picker connected after answer or reject")
		}
		k.next++
		k.started[a.Leg] = true
		k.answered = true
	case RefusePicker:
	case RejectCaller:
		if k.answered || k.rejected {
			return fmt.Errorf("reject after answer or reject")
		}
		if a.Code < 400 || a.Code > 699 {
			return fmt.Errorf("reject code %d is not a failure", a.Code)
		}
		k.rejected = true
	case HangUpCaller:
		if !k.answered {
			return fmt.Errorf("HangUpCaller before AnswerCaller")
		}
	case Finish:
		if k.finished {
			return fmt.Errorf("second Finish")
		}
		k.finished = true
		r := a.Record
		if (r.Outcome == OutcomeAnswered) != (r.Answer != nil) {
			return fmt.Errorf("outcome %s with answer %v", r.Outcome, r.Answer)
		}
		if !slices.Contains([]string{OutcomeAnswered, OutcomeNoAnswer, OutcomeBusy, OutcomeCancelled,
			OutcomeClosed, OutcomeFailed, OutcomeCongestion, OutcomeDenied}, r.Outcome) {
			return fmt.Errorf("outcome %q", r.Outcome)
		}
		if len(r.Legs) != int(k.next-1) {
			return fmt.Errorf("record has %d legs, %d started", len(r.Legs), k.next-1)
		}
	}
	return nil
}
