package config

import (
	"fmt"
	"math"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ringroute/ringroute/internal/wav"
)

// groupInfo is what cross-checks need to know about one group beyond the
// Group itself: where its fields are.
type groupInfo struct {
	g       *Group
	path    string
	f       *fields
	members []*fields // parallel to g.Members
	record  *fields   // set when Record.Enabled can be true
	bad     bool      // the group had errors: its timing warnings would mislead
}

func (l *loader) groups(f *fields, c *Config) {
	items, _ := f.list("groups")
	for i, it := range items {
		path := index("groups", i)
		before := len(l.errs)
		gf := l.mapping(it, path, groupKeys)
		if gf == nil {
			continue
		}
		g := newGroup()
		gi := &groupInfo{g: g, path: path, f: gf}
		l.group(gf, gi)
		gi.bad = len(l.errs) > before
		c.Groups = append(c.Groups, g)
		l.x.infos = append(l.x.infos, gi)
	}
}

func (l *loader) group(f *fields, gi *groupInfo) {
	g := gi.g
	if l.required(f, "name", "group") && f.str("name", &g.Name) {
		v := f.vals["name"]
		switch err := name(g.Name, "_-"); {
		case err != nil:
			l.errorf(v, f.at("name"), "%q %v", g.Name, err)
		case strings.Trim(g.Name, "0123456789") == "":
			l.errorf(v, f.at("name"), "%q is all digits, which would read as an extension when dialled after pickup.group_prefix; add a letter", g.Name)
		default:
			l.defineGroup(g.Name, f.at("name"), v)
		}
	}
	f.str("label", &g.Label)
	if v, ok := f.scalar("extension"); ok {
		if err := dialString(v.Value); err != nil {
			l.errorf(v, f.at("extension"), "%q %v", v.Value, err)
		} else {
			g.Extension = v.Value
			l.x.claim(v.Value, fmt.Sprintf("the extension of group %q", g.Name), f.at("extension"), v)
		}
	}
	nums, nodes, _ := f.strings("numbers")
	for i, s := range nums {
		p := index(f.at("numbers"), i)
		if err := dialString(s); err != nil {
			l.errorf(nodes[i], p, "%q %v", s, err)
			continue
		}
		g.Numbers = append(g.Numbers, s)
		l.x.claim(s, fmt.Sprintf("a number of group %q", g.Name), p, nodes[i])
	}
	f.boolean("enabled", &g.Enabled)
	f.enum("strategy", &g.Strategy, strategies, strategyAliases)
	f.dur("timeout", &g.Timeout, false)
	f.dur("member_timeout", &g.MemberTimeout, true)
	f.dur("retry_delay", &g.RetryDelay, false)
	f.boolean("distribute_evenly", &g.DistributeEvenly)
	f.integer("repeats", &g.Repeats, 0)
	f.boolean("ring_in_use", &g.RingInUse)
	f.integer("max_calls", &g.MaxCalls, 0)
	f.boolean("answered_elsewhere", &g.AnsweredElsewhere)
	f.boolean("follow_forward", &g.FollowForward)
	if cf := l.mapping(f.vals["caller_id"], f.at("caller_id"), callerIDKeys); cf != nil && cf.node != nil {
		if cf.has("mode") {
			cf.enum("mode", &g.CallerID.Mode, []string{"prepend", "append", "overwrite"}, nil)
		} else {
			l.errorf(cf.pos("mode"), cf.at("mode"), "is missing; caller_id needs a mode: prepend, append or overwrite")
		}
		cf.str("name", &g.CallerID.Name)
	}
	f.enum("ringback", &g.Ringback, []string{"passthrough", "tone", "music"}, nil)
	f.enum("ringback_tone", &g.RingbackTone, []string{"us", "eu", "uk"}, nil)
	f.str("music_file", &g.MusicFile)
	// The music file is only looked for when it would be played, so a
	// file that names one for later still loads.
	if g.Ringback == "music" {
		switch {
		case g.MusicFile == "":
			l.errorf(f.pos("music_file"), f.at("music_file"), "is missing; ringback: music plays music_file (8 kHz mono PCM or G.711 WAV)")
		default:
			if p := fileProblem(g.MusicFile); p != "" {
				l.errorf(f.pos("music_file"), f.at("music_file"), "%q %s (relative paths are from the directory ringroute runs in)", g.MusicFile, p)
			} else if err := wav.CheckMusicFile(g.MusicFile); err != nil {
				// The same reader media plays it with.
				l.errorf(f.pos("music_file"), f.at("music_file"), "%q cannot be played: %v", g.MusicFile, err)
			}
		}
	}
	if rf := l.mapping(f.vals["record"], f.at("record"), recordKeys); rf != nil {
		gi.record = rf
		rf.boolean("enabled", &g.Record.Enabled)
		rf.str("dir", &g.Record.Dir)
		if g.Record.Enabled && g.Record.Dir == "" {
			l.errorf(rf.pos("dir"), rf.at("dir"), "is empty; recording needs a directory")
		}
	}
	if sn := f.vals["schedule"]; sn != nil {
		g.Schedule = l.schedule(sn, f.at("schedule"))
	}
	l.permissions(f, gi)
	l.members(f, gi)
	l.fallbacks(f, gi)
}

func (l *loader) schedule(n *yaml.Node, path string) *Schedule {
	sf := l.mapping(n, path, scheduleKeys)
	if sf == nil {
		return nil
	}
	s := &Schedule{}
	if v, ok := sf.scalar("timezone"); ok {
		loc, err := time.LoadLocation(v.Value)
		switch {
		case v.Value == "":
			l.errorf(v, sf.at("timezone"), "is empty; name the zone, like Europe/Paris or UTC")
		case v.Value == "Local":
			l.errorf(v, sf.at("timezone"), "%q depends on the machine; name the zone, like Europe/Paris or UTC", v.Value)
		case err != nil:
			l.errorf(v, sf.at("timezone"), "%q is not an IANA time zone (like Europe/Paris, America/New_York or UTC)", v.Value)
		default:
			s.Timezone, s.Location = v.Value, loc
		}
	} else if !sf.has("timezone") {
		l.errorf(sf.pos("timezone"), sf.at("timezone"), "is missing; a schedule needs a time zone, like Europe/Paris")
	}
	opens, nodes, _ := sf.strings("open")
	for i, o := range opens {
		r, err := parseOpen(o)
		if err != nil {
			l.errorf(nodes[i], index(sf.at("open"), i), "%q %v", o, err)
			continue
		}
		s.Open = append(s.Open, r)
	}
	dates, nodes, _ := sf.strings("closed_dates")
	for i, d := range dates {
		dt, err := parseDate(d)
		if err != nil {
			l.errorf(nodes[i], index(sf.at("closed_dates"), i), "%q %v", d, err)
			continue
		}
		s.ClosedDates = append(s.ClosedDates, dt)
	}
	return s
}

func (l *loader) permissions(f *fields, gi *groupInfo) {
	pf := l.mapping(f.vals["permissions"], f.at("permissions"), permKeys)
	if pf == nil {
		return
	}
	globs := func(key string) ([]string, bool) {
		vals, nodes, ok := pf.strings(key)
		if !ok {
			return nil, false
		}
		out := []string{}
		for i, p := range vals {
			if err := checkPattern(p); err != nil {
				l.errorf(nodes[i], index(pf.at(key), i), "pattern %q %v", p, err)
				continue
			}
			out = append(out, p)
		}
		return out, true
	}
	if allow, ok := globs("allow"); ok {
		gi.g.Permissions.Allow = allow
		if len(allow) == 0 {
			l.warnf(pf.pos("allow"), pf.at("allow"), "allows no caller, so every call is denied (403); leave it out to allow everyone")
		}
	}
	if deny, ok := globs("deny"); ok {
		gi.g.Permissions.Deny = deny
	}
}

func (l *loader) members(f *fields, gi *groupInfo) {
	g := gi.g
	items, ok := f.list("members")
	if !ok && f.present("members") && f.has("members") {
		return // not a list: already reported
	}
	for i, it := range items {
		path := index(f.at("members"), i)
		mf := l.mapping(it, path, memberKeys)
		if mf == nil {
			continue
		}
		m := Member{Weight: 1}
		kinds := l.oneOf(mf, path, []string{"user", "uri", "group"}, "a member is one of {user: NAME}, {uri: sip:...} or {group: NAME}")
		if kinds != "" {
			v, ok := mf.scalar(kinds)
			if ok {
				switch kinds {
				case "user":
					m.User = v.Value
					l.x.userRefs = append(l.x.userRefs, ref{name: v.Value, path: mf.at("user"), node: v})
				case "group":
					m.Group = v.Value
					if v.Value == g.Name && g.Name != "" {
						l.errorf(v, mf.at("group"), "group %q cannot be its own member", g.Name)
						break
					}
					l.x.groupRefs = append(l.x.groupRefs, ref{name: v.Value, path: mf.at("group"), node: v})
					l.x.memberEdges = append(l.x.memberEdges, edge{from: g.Name, to: v.Value, path: mf.at("group"), node: v})
				case "uri":
					if err := sipURI(v.Value); err != nil {
						l.errorf(v, mf.at("uri"), "%q is not a SIP URI (like sip:1002@192.0.2.5:5060): it %v", v.Value, err)
					}
					m.URI = v.Value
				}
			}
		}
		mf.dur("timeout", &m.Timeout, true)
		mf.dur("delay", &m.Delay, false)
		mf.integer("weight", &m.Weight, 1)
		g.Members = append(g.Members, m)
		gi.members = append(gi.members, mf)
	}
}

// oneOf checks that exactly one of keys is present in f and returns it, or
// "" after reporting none or several.
func (l *loader) oneOf(f *fields, path string, keys []string, what string) string {
	var set []string
	for _, k := range keys {
		if f.present(k) {
			set = append(set, k)
		}
	}
	switch len(set) {
	case 1:
		if v := f.vals[set[0]]; v == nil || v.Kind == yaml.ScalarNode && v.Value == "" {
			l.errorf(f.pos(set[0]), f.at(set[0]), "is empty; %s", what)
			return ""
		}
		return set[0]
	case 0:
		l.errorf(f.node, path, "needs one of %s; %s", strings.Join(keys, ", "), what)
	case 2:
		l.errorf(f.keys[set[1]], path, "has both %s and %s; %s", set[0], set[1], what)
	default:
		l.errorf(f.keys[set[1]], path, "has %s and %s; %s", strings.Join(set[:len(set)-1], ", "), set[len(set)-1], what)
	}
	return ""
}

func (l *loader) fallbacks(f *fields, gi *groupInfo) {
	ff := l.mapping(f.vals["fallback"], f.at("fallback"), fallbackKeys)
	if ff == nil {
		return
	}
	fb := &gi.g.Fallback
	for _, k := range []struct {
		key string
		dst *Fallback
	}{{"noanswer", &fb.NoAnswer}, {"busy", &fb.Busy}, {"congestion", &fb.Congestion}, {"closed", &fb.Closed}} {
		if n := ff.vals[k.key]; n != nil {
			l.dest(n, ff.at(k.key), k.dst, gi.g.Name)
		}
	}
}

const destWhat = "a fallback is one of {group: NAME}, {user: NAME}, {uri: sip:...} or {reject: CODE}"

func (l *loader) dest(n *yaml.Node, path string, dst *Fallback, group string) {
	df := l.mapping(n, path, destKeys)
	if df == nil {
		return
	}
	var fb Fallback
	kind := l.oneOf(df, path, []string{"group", "user", "uri", "reject"}, destWhat)
	if v, ok := df.scalar(kind); ok {
		at := df.at(kind)
		switch kind {
		case "group":
			fb.Group = v.Value
			l.x.groupRefs = append(l.x.groupRefs, ref{name: v.Value, path: at, node: v})
			l.x.fallbackEdges = append(l.x.fallbackEdges, edge{from: group, to: v.Value, path: at, node: v})
		case "user":
			fb.User = v.Value
			l.x.userRefs = append(l.x.userRefs, ref{name: v.Value, path: at, node: v})
		case "uri":
			if err := sipURI(v.Value); err != nil {
				l.errorf(v, at, "%q is not a SIP URI (like sip:voicemail@192.0.2.9): it %v", v.Value, err)
			}
			fb.URI = v.Value
		case "reject":
			if code, ok := l.number(v, at, math.MinInt); ok {
				if code < 400 || code > 699 {
					l.errorf(v, at, "%d is not a SIP failure code; use 400-699 (480 unavailable, 486 busy, 603 decline)", code)
				}
				fb.Reject = code
			}
		}
	}
	if df.present("timeout") {
		if kind == "uri" || kind == "user" {
			df.dur("timeout", &fb.Timeout, true)
		} else if kind != "" {
			l.errorf(df.keys["timeout"], df.at("timeout"), "only applies to uri and user fallbacks, which ring; %s takes none", kind)
		}
	}
	*dst = fb
}
