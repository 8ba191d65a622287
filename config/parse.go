package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The keys allowed at each level. Read-only.
var (
	topKeys       = []string{"listen", "tls", "advertise", "domains", "realm", "digest_algorithms", "media", "admin", "drain_timeout", "registrar", "limits", "log", "cdr", "users", "trunks", "pickup", "groups"}
	tlsKeys       = []string{"cert", "key"}
	mediaKeys     = []string{"mode", "address", "ports", "rtp_timeout"}
	adminKeys     = []string{"listen", "token"}
	registrarKeys = []string{"min_expires", "max_expires", "state_file"}
	limitsKeys    = []string{"requests_per_source", "auth_failures_per_source"}
	logKeys       = []string{"level", "format"}
	cdrKeys       = []string{"path"}
	userKeys      = []string{"name", "password", "ha1", "extension", "pickup_groups"}
	trunkKeys     = []string{"name", "from"}
	pickupKeys    = []string{"any", "group_prefix"}
	groupKeys     = []string{"name", "label", "extension", "numbers", "enabled", "strategy", "timeout", "member_timeout", "retry_delay", "distribute_evenly", "repeats", "ring_in_use", "max_calls", "answered_elsewhere", "follow_forward", "caller_id", "ringback", "ringback_tone", "music_file", "record", "schedule", "permissions", "members", "fallback"}
	callerIDKeys  = []string{"mode", "name"}
	recordKeys    = []string{"enabled", "dir"}
	scheduleKeys  = []string{"timezone", "open", "closed_dates"}
	permKeys      = []string{"allow", "deny"}
	memberKeys    = []string{"user", "uri", "group", "timeout", "delay", "weight"}
	fallbackKeys  = []string{"noanswer", "busy", "congestion", "closed"}
	destKeys      = []string{"group", "user", "uri", "reject", "timeout"}

	// strategies are the canonical names; strategyAliases are accepted and
	// stored as what they stand for, so code compares one name.
	strategies      = []string{"all", "linear", "memorized_round_robin", "least_recent", "fewest_calls", "random", "weight_random", "progressive"}
	strategyAliases = map[string]string{"parallel": "all", "sequential": "linear", "round_robin": "memorized_round_robin"}
)

// keyHomes say where a misplaced key belongs, when exactly one block has
// it: "member_timeout" at the top level belongs in a group.
var keyHomes = []struct {
	where string
	keys  []string
}{
	{"the top level", topKeys},
	{"tls", tlsKeys},
	{"media", mediaKeys},
	{"admin", adminKeys},
	{"registrar", registrarKeys},
	{"limits", limitsKeys},
	{"log", logKeys},
	{"cdr", cdrKeys},
	{"a user", userKeys},
	{"a trunk", trunkKeys},
	{"pickup", pickupKeys},
	{"a group", groupKeys},
	{"caller_id", callerIDKeys},
	{"record", recordKeys},
	{"schedule", scheduleKeys},
	{"permissions", permKeys},
	{"a member", memberKeys},
	{"fallback", fallbackKeys},
	{"a fallback destination", destKeys},
}

func keyHome(key string) (string, bool) {
	where, n := "", 0
	for _, h := range keyHomes {
		if contains(h.keys, key) {
			where, n = h.where, n+1
		}
	}
	return where, n == 1
}

// defaults is the config an empty file gives. Every default lives here or
// in newGroup, in one place, so docs can be checked against it.
func defaults(file string) *Config {
	lo := netip.MustParseAddr("127.0.0.1")
	return &Config{
		File:   file,
		Listen: []Listen{{"udp", netip.AddrPortFrom(lo, 5060)}, {"tcp", netip.AddrPortFrom(lo, 5060)}},
		Realm:  "ringroute",
		// MD5 alone: SIPp 3.6 and phones on older SIP stacks (baresip 1.0's
		// libre among them) fail outright when any challenge names
		// SHA-256. Asterisk and Kamailio default to MD5 for the same
		// reason; SHA-256 (RFC 8760) is one line away.
		DigestAlgorithms: []string{"MD5"},
		Media: Media{
			Mode:       "relay",
			Address:    netip.IPv4Unspecified(),
			PortMin:    10000,
			PortMax:    20000,
			RTPTimeout: 30 * time.Second,
		},
		Admin:        Admin{Listen: "127.0.0.1:8080"},
		DrainTimeout: 30 * time.Second,
		Registrar:    Registrar{MinExpires: 60 * time.Second, MaxExpires: time.Hour, StateFile: "registrations.json"},
		Limits:       Limits{RequestsPerSource: 200, AuthFailuresPerSource: 10},
		Log:          Log{Level: "info", Format: "json"},
		CDR:          CDR{Path: "cdr.jsonl"},
		Pickup:       Pickup{Any: "*8", GroupPrefix: "88"},
	}
}

func newGroup() *Group {
	return &Group{
		Enabled:           true,
		Strategy:          "linear",
		Timeout:           30 * time.Second,
		MemberTimeout:     15 * time.Second,
		RetryDelay:        5 * time.Second,
		RingInUse:         true,
		AnsweredElsewhere: true,
		FollowForward:     true,
		Ringback:          "passthrough",
		RingbackTone:      "us",
		Record:            Record{Dir: "recordings"},
		Permissions:       Permissions{Allow: []string{"*"}, Deny: []string{}},
		Fallback: Fallbacks{
			NoAnswer:   Fallback{Reject: 480},
			Busy:       Fallback{Reject: 486},
			Congestion: Fallback{Reject: 486},
			Closed:     Fallback{Reject: 480},
		},
	}
}

func (l *loader) top(root *yaml.Node, c *Config) {
	f := l.mapping(root, "", topKeys)
	if f == nil {
		return
	}
	l.listen(f, c)
	l.tls(f, c)
	l.advertise(f, c)
	l.domains(f, c)
	if v, ok := f.scalar("realm"); ok {
		switch {
		case v.Value == "":
			l.errorf(v, "realm", "must not be empty; leave it out for the default %q", c.Realm)
		case strings.ContainsAny(v.Value, "\"\\") || strings.IndexFunc(v.Value, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
			l.errorf(v, "realm", "%q cannot go in a digest challenge: no quotes, backslashes or control characters", v.Value)
		default:
			c.Realm = v.Value
		}
	}
	l.digestAlgorithms(f, c)
	l.media(f, c)
	l.admin(f, c)
	f.dur("drain_timeout", &c.DrainTimeout, false)
	l.registrar(f, c)
	if lf := l.mapping(f.vals["limits"], "limits", limitsKeys); lf != nil {
		lf.integer("requests_per_source", &c.Limits.RequestsPerSource, 0)
		lf.integer("auth_failures_per_source", &c.Limits.AuthFailuresPerSource, 0)
	}
	if lf := l.mapping(f.vals["log"], "log", logKeys); lf != nil {
		lf.enum("level", &c.Log.Level, []string{"debug", "info", "warn", "error"}, nil)
		lf.enum("format", &c.Log.Format, []string{"json", "console"}, nil)
	}
	if cf := l.mapping(f.vals["cdr"], "cdr", cdrKeys); cf != nil {
		cf.str("path", &c.CDR.Path)
	}
	l.pickup(f, c)
	l.users(f, c)
	l.trunks(f, c)
	l.groups(f, c)
	l.crossCheck(c)
}

func (l *loader) listen(f *fields, c *Config) {
	items, ok := f.list("listen")
	if !ok {
		return
	}
	if len(items) == 0 {
		l.errorf(f.pos("listen"), "listen", "is empty, so nothing could call in; leave it out for the default (udp and tcp on 127.0.0.1:5060)")
		return
	}
	seen := map[listenSock]*yaml.Node{}
	var socks []listenSock
	var socksAt []*yaml.Node
	var out []Listen
	bad := false
	for i, it := range items {
		path := index("listen", i)
		v := resolve(it)
		if v == nil || v.Kind != yaml.ScalarNode {
			l.errorf(it, path, "must be an address like udp://0.0.0.0:5060, not %s", describeKey(it))
			bad = true
			continue
		}
		ln, err := parseListen(v.Value)
		if err != nil {
			l.errorf(v, path, "%q %v", v.Value, err)
			bad = true
			continue
		}
		s := listenSock{"udp", ln.Addr}
		if ln.Transport != "udp" {
			s.proto = "tcp"
		}
		if prev := seen[s]; prev != nil {
			if prev.Value == v.Value || strings.EqualFold(prev.Value, v.Value) {
				l.errorf(v, path, "%q is listed twice; the first is %s", v.Value, earlier(prev, v))
			} else {
				l.errorf(v, path, "%q and %q (line %d) both need TCP port %d on %s", v.Value, prev.Value, prev.Line, ln.Addr.Port(), ln.Addr.Addr())
			}
			bad = true
			continue
		}
		if prev, wild := overlap(socks, socksAt, s); prev != nil {
			l.errorf(v, path, "%q overlaps %q (line %d): %s already listens on every interface", v.Value, prev.Value, prev.Line, wild)
			bad = true
			continue
		}
		seen[s] = v
		socks, socksAt = append(socks, s), append(socksAt, v)
		if ln.Transport == "tls" {
			l.x.tlsListen = append(l.x.tlsListen, site{path, v})
		}
		out = append(out, ln)
	}
	if !bad {
		c.Listen = out
	}
}

// listenSock is what a listen entry binds: tls is TCP underneath, so
// tcp:// and tls:// on one address collide.
type listenSock struct {
	proto string
	addr  netip.AddrPort
}

// overlap finds an earlier socket on the same protocol and port that one of
// the two binds as a wildcard (0.0.0.0 or ::) of the same family: the
// second bind would fail with "address in use".
func overlap(earlier []listenSock, nodes []*yaml.Node, cur listenSock) (*yaml.Node, string) {
	for i, prev := range earlier {
		a, b := prev.addr.Addr(), cur.addr.Addr()
		if prev.proto != cur.proto || prev.addr.Port() != cur.addr.Port() || a.Is4() != b.Is4() || a == b {
			continue
		}
		if a.IsUnspecified() {
			return nodes[i], a.String()
		}
		if b.IsUnspecified() {
			return nodes[i], b.String()
		}
	}
	return nil, ""
}

func parseListen(s string) (Listen, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Listen{}, fmt.Errorf("needs a transport, like udp://%s", s)
	}
	scheme = strings.ToLower(scheme)
	switch scheme {
	case "udp", "tcp", "tls":
	default:
		hint := ""
		if h := suggest(scheme, []string{"udp", "tcp", "tls"}); h != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", h)
		}
		return Listen{}, fmt.Errorf("has unknown transport %q%s; use udp, tcp or tls", scheme, hint)
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		if a, err := netip.ParseAddr(strings.Trim(rest, "[]")); err == nil {
			if a.Is6() {
				return Listen{}, fmt.Errorf("has no port, like %s://[%s]:5060", scheme, a)
			}
			return Listen{}, fmt.Errorf("has no port, like %s://%s:5060", scheme, rest)
		}
		h, _, _ := strings.Cut(rest, ":")
		if strings.HasPrefix(rest, "[") {
			return Listen{}, errors.New("is not an address like udp://[::1]:5060")
		}
		if i := strings.LastIndex(rest, ":"); i >= 0 {
			if _, err := portNumber(rest[i+1:]); err != nil {
				if _, aerr := netip.ParseAddr(strings.Trim(rest[:i], "[]")); aerr == nil {
					return Listen{}, err
				}
			}
		}
		if h != "" && hostname(h) == nil {
			return Listen{}, fmt.Errorf("names host %q; listen needs an IP address (0.0.0.0 for every interface)", h)
		}
		return Listen{}, fmt.Errorf("is not an address like %s://0.0.0.0:5060", scheme)
	}
	if ap.Port() == 0 {
		return Listen{}, errors.New("has port 0; use a port 1-65535 (5060 is usual, 5061 for tls)")
	}
	return Listen{Transport: scheme, Addr: ap}, nil
}

func (l *loader) tls(f *fields, c *Config) {
	tf := l.mapping(f.vals["tls"], "tls", tlsKeys)
	if tf == nil {
		return
	}
	tf.str("cert", &c.TLS.Cert)
	tf.str("key", &c.TLS.Key)
	l.x.tls = tf
}

func (l *loader) advertise(f *fields, c *Config) {
	v, ok := f.scalar("advertise")
	if !ok || v.Value == "" {
		return
	}
	h, err := host(v.Value)
	if err != nil {
		if _, _, perr := splitHostPort(v.Value); perr == nil {
			l.errorf(v, "advertise", "%q has a port; advertise is an address only (the port comes from listen)", v.Value)
			return
		}
		l.errorf(v, "advertise", "%q is neither an IP address nor a host name: it %v", v.Value, err)
		return
	}
	c.Advertise = h
}

func (l *loader) domains(f *fields, c *Config) {
	vals, nodes, ok := f.strings("domains")
	if !ok {
		return
	}
	seen := map[string]*yaml.Node{}
	for i, s := range vals {
		path := index("domains", i)
		h, err := host(s)
		if err != nil {
			l.errorf(nodes[i], path, "%q is not a host name: it %v", s, err)
			continue
		}
		if prev := seen[h]; prev != nil {
			l.errorf(nodes[i], path, "%q is listed twice; the first is %s", s, earlier(prev, nodes[i]))
			continue
		}
		seen[h] = nodes[i]
		c.Domains = append(c.Domains, h)
	}
}

// digestAlgorithms reads the algorithms challenges offer, in order of
// preference (RFC 8760 §2.4).
func (l *loader) digestAlgorithms(f *fields, c *Config) {
	vals, nodes, ok := f.strings("digest_algorithms")
	if !ok {
		return
	}
	if len(vals) == 0 {
		l.errorf(f.pos("digest_algorithms"), "digest_algorithms", "is empty, so no phone could authenticate; leave it out for the default [MD5]")
		return
	}
	var out []string
	seen := map[string]bool{}
	for i, v := range vals {
		path := index("digest_algorithms", i)
		a := strings.ToUpper(v)
		if a != "MD5" && a != "SHA-256" {
			l.errorf(nodes[i], path, "%q is not a digest algorithm ringroute offers; use MD5 or SHA-256", v)
			continue
		}
		if seen[a] {
			l.errorf(nodes[i], path, "%q is listed twice", v)
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	if len(out) > 0 {
		c.DigestAlgorithms = out
	}
}

func (l *loader) media(f *fields, c *Config) {
	mf := l.mapping(f.vals["media"], "media", mediaKeys)
	if mf == nil {
		return
	}
	l.x.media = mf
	mf.enum("mode", &c.Media.Mode, []string{"relay", "direct"}, nil)
	if v, ok := mf.scalar("address"); ok {
		a, err := netip.ParseAddr(v.Value)
		if err != nil {
			l.errorf(v, "media.address", "%q is not an IP address (0.0.0.0 binds every interface)", v.Value)
		} else {
			c.Media.Address = a
		}
	}
	if v, ok := mf.scalar("ports"); ok {
		lo, hi, err := portRange(v.Value)
		if err != nil {
			l.errorf(v, "media.ports", "%q %v", v.Value, err)
		} else {
			c.Media.PortMin, c.Media.PortMax = lo, hi
		}
	}
	mf.dur("rtp_timeout", &c.Media.RTPTimeout, false)
}

var portRangeRE = regexp.MustCompile(`^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$`)

// portRange parses media.ports. Each stream takes an even RTP port p and
// the RTCP port p+1, so LOW must be even and the range must hold at least
// one pair (HIGH >= LOW+1). HIGH is kept as written, even or odd: the
// allocator uses the even ports LOW <= p < HIGH, whose p+1 <= HIGH. This
// lets the documented default 10000-20000 load as written (20000 itself
// goes unused).
func portRange(s string) (lo, hi int, err error) {
	m := portRangeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, errors.New("is not a port range like 10000-20000")
	}
	lo, _ = strconv.Atoi(m[1])
	hi, _ = strconv.Atoi(m[2])
	switch {
	case lo < 1024 || hi > 65535 || hi < 1024 || lo > 65535:
		return 0, 0, errors.New("must lie within 1024-65535")
	case hi < lo:
		return 0, 0, fmt.Errorf("is reversed; write %d-%d", hi, lo)
	case lo%2 == 1:
		return 0, 0, fmt.Errorf("starts on an odd port; RTP needs an even port, so start at %d", lo+1)
	case hi < lo+1:
		return 0, 0, fmt.Errorf("holds no RTP/RTCP pair; make it at least %d-%d", lo, lo+1)
	}
	return lo, hi, nil
}

func (l *loader) admin(f *fields, c *Config) {
	af := l.mapping(f.vals["admin"], "admin", adminKeys)
	if af == nil {
		return
	}
	af.str("token", &c.Admin.Token)
	v, ok := af.scalar("listen")
	if !ok {
		return
	}
	if v.Value == "" {
		c.Admin.Listen = ""
		return
	}
	h, _, err := splitHostPort(v.Value)
	if err == nil && h != "" {
		_, err = host(h)
		if err != nil {
			err = errors.New("has a host that " + err.Error())
		}
	}
	if err != nil {
		l.errorf(v, "admin.listen", "%q %v", v.Value, err)
		return
	}
	c.Admin.Listen = v.Value
	if c.Admin.Token == "" && !loopback(h) {
		what := fmt.Sprintf("%q is not a loopback address", h)
		if h == "" {
			what = "an empty host means every interface"
		}
		l.errorf(v, "admin.listen", "%s; without a token, admin may only listen on a loopback address (set admin.token, or listen on 127.0.0.1)", what)
	}
}

// loopback is decided from the text alone: config never resolves names, so
// only "localhost" counts among host names.
func loopback(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

func (l *loader) registrar(f *fields, c *Config) {
	rf := l.mapping(f.vals["registrar"], "registrar", registrarKeys)
	if rf == nil {
		return
	}
	// Expires travels in whole seconds, so sub-second values would be
	// rounded somewhere else without anyone noticing.
	seconds := func(key string, dst *time.Duration) bool {
		var d time.Duration
		if !rf.dur(key, &d, true) {
			return false
		}
		if d%time.Second != 0 {
			l.errorf(rf.pos(key), rf.at(key), "%s is not a whole number of seconds; SIP Expires counts seconds", human(d))
			return false
		}
		*dst = d
		return true
	}
	okMin := seconds("min_expires", &c.Registrar.MinExpires)
	okMax := seconds("max_expires", &c.Registrar.MaxExpires)
	if (okMin || okMax) && c.Registrar.MinExpires > c.Registrar.MaxExpires {
		key := "max_expires"
		if !rf.has(key) {
			key = "min_expires"
		}
		l.errorf(rf.pos(key), rf.at(key), "min_expires %s is more than max_expires %s", human(c.Registrar.MinExpires), human(c.Registrar.MaxExpires))
	}
	rf.str("state_file", &c.Registrar.StateFile)
}

func (l *loader) pickup(f *fields, c *Config) {
	pf := l.mapping(f.vals["pickup"], "pickup", pickupKeys)
	if pf == nil {
		return
	}
	// Either code may be "" to turn that kind of pickup off.
	for _, k := range []struct {
		key string
		dst *string
	}{{"any", &c.Pickup.Any}, {"group_prefix", &c.Pickup.GroupPrefix}} {
		v, ok := pf.scalar(k.key)
		if !ok {
			continue
		}
		if v.Value != "" {
			if err := dialString(v.Value); err != nil {
				l.errorf(v, pf.at(k.key), "%q %v", v.Value, err)
				continue
			}
		}
		*k.dst = v.Value
		if k.key == "any" && v.Value != "" {
			l.x.claim(v.Value, "the pickup code", "pickup.any", v)
		}
	}
	if c.Pickup.Any != "" && c.Pickup.Any == c.Pickup.GroupPrefix {
		l.errorf(pf.pos("group_prefix"), "pickup.group_prefix", "%q is also pickup.any; the two codes must differ", c.Pickup.GroupPrefix)
	}
}

var ha1RE = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)

func (l *loader) users(f *fields, c *Config) {
	items, _ := f.list("users")
	for i, it := range items {
		path := index("users", i)
		uf := l.mapping(it, path, userKeys)
		if uf == nil {
			continue
		}
		u := &User{}
		if l.required(uf, "name", "user") {
			uf.str("name", &u.Name)
			if v := uf.vals["name"]; v != nil && v.Kind == yaml.ScalarNode {
				if err := name(u.Name, "_.-"); err != nil {
					l.errorf(v, uf.at("name"), "%q %v", u.Name, err)
				} else {
					l.defineUser(u.Name, uf.at("name"), v)
				}
			}
		}
		l.secret(uf, u)
		if v, ok := uf.scalar("extension"); ok {
			if err := dialString(v.Value); err != nil {
				l.errorf(v, uf.at("extension"), "%q %v", v.Value, err)
			} else {
				u.Extension = v.Value
				l.x.claim(v.Value, fmt.Sprintf("the extension of user %q", u.Name), uf.at("extension"), v)
			}
		}
		groups, nodes, _ := uf.strings("pickup_groups")
		seen := map[string]*yaml.Node{}
		for j, g := range groups {
			p := index(uf.at("pickup_groups"), j)
			if prev := seen[g]; prev != nil {
				l.errorf(nodes[j], p, "%q is listed twice; the first is %s", g, earlier(prev, nodes[j]))
				continue
			}
			seen[g] = nodes[j]
			u.PickupGroups = append(u.PickupGroups, g)
			l.x.groupRefs = append(l.x.groupRefs, ref{name: g, path: p, node: nodes[j]})
		}
		c.Users = append(c.Users, u)
	}
}

// secret reads the user's password or ha1: exactly one, and not empty,
// since a user without a secret could be impersonated by anyone.
func (l *loader) secret(uf *fields, u *User) {
	pw, h := uf.has("password"), uf.has("ha1")
	switch {
	case pw && h:
		l.errorf(uf.keys["ha1"], uf.path, "has both password and ha1; keep one")
		return
	case !pw && !h:
		switch {
		case uf.present("password"):
			l.errorf(uf.keys["password"], uf.at("password"), "is empty; a user without a password could be impersonated")
		case uf.present("ha1"):
			l.errorf(uf.keys["ha1"], uf.at("ha1"), "is empty; give the 32 hex digits of md5(name:realm:password)")
		default:
			l.errorf(uf.node, uf.path, "needs a password or an ha1")
		}
		return
	case pw:
		if uf.str("password", &u.Password) && u.Password == "" {
			l.errorf(uf.vals["password"], uf.at("password"), "is empty; a user without a password could be impersonated")
		}
		return
	}
	if uf.str("ha1", &u.HA1) {
		if !ha1RE.MatchString(u.HA1) {
			l.errorf(uf.vals["ha1"], uf.at("ha1"), "%q is not an MD5 hex digest (32 hex digits of md5(name:realm:password))", u.HA1)
		}
		u.HA1 = strings.ToLower(u.HA1)
	}
}

// required reports whether key is set, reporting it missing otherwise.
func (l *loader) required(f *fields, key, what string) bool {
	if f.has(key) {
		return true
	}
	if k := f.keys[key]; k != nil {
		l.errorf(k, f.at(key), "is empty; every %s needs a %s", what, key)
	} else {
		l.errorf(f.node, f.path, "has no %s; every %s needs one", key, what)
	}
	return false
}

func (l *loader) trunks(f *fields, c *Config) {
	items, _ := f.list("trunks")
	names := map[string]*yaml.Node{}
	for i, it := range items {
		path := index("trunks", i)
		tf := l.mapping(it, path, trunkKeys)
		if tf == nil {
			continue
		}
		t := &Trunk{}
		if l.required(tf, "name", "trunk") && tf.str("name", &t.Name) {
			v := tf.vals["name"]
			if err := name(t.Name, "_.-"); err != nil {
				l.errorf(v, tf.at("name"), "%q %v", t.Name, err)
			} else if prev := names[t.Name]; prev != nil {
				l.errorf(v, tf.at("name"), "trunk %q is already defined at line %d", t.Name, prev.Line)
			} else {
				names[t.Name] = v
			}
		}
		vals, nodes, ok := tf.strings("from")
		if !ok || len(vals) == 0 {
			l.errorf(tf.pos("from"), tf.at("from"), "needs at least one network (like 198.51.100.0/24 or 192.0.2.7); a trunk is trusted by source address")
		}
		for j, s := range vals {
			p, err := prefix(s)
			if err != nil {
				l.errorf(nodes[j], index(tf.at("from"), j), "%q %v", s, err)
				continue
			}
			t.From = append(t.From, p)
		}
		c.Trunks = append(c.Trunks, t)
	}
}

// prefix parses a CIDR; a bare address is that one host. Host bits set
// below the mask are an error rather than silently cleared, since in a
// trust list a typo there may widen who is trusted.
func prefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New("is not an IP address or CIDR (like 198.51.100.0/24)")
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("has an IPv6 zone, which a network cannot have")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("is not a CIDR (like 198.51.100.0/24)")
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("has host bits set below /%d; did you mean %s?", p.Bits(), m)
	}
	if p.Addr().Is4In6() {
		a := p.Addr().Unmap()
		if p.Bits() < 96 {
			return netip.Prefix{}, errors.New("mixes IPv4-mapped and IPv6 networks; write the IPv4 network")
		}
		return netip.PrefixFrom(a, p.Bits()-96), nil
	}
	return p, nil
}

// fileProblem says why path is not a readable regular file, or "".
func fileProblem(path string) string {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist"
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return "cannot be read: " + pe.Err.Error()
		}
		return "cannot be read: " + err.Error()
	case st.IsDir():
		return "is a directory"
	}
	return ""
}
