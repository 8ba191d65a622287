package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// SPEC "Command line": `ringroute check -c ringroute.example.yaml` must pass,
// and the example is the reference for defaults and parsed values.
func TestExampleFile(t *testing.T) {
	path := filepath.Join("..", "..", "shared", "spec", "ringroute.example.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("spec example not here: %v", err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s):\n%v", path, err)
	}
	// check passes (exit 0) with one timing warning, and it is right: with
	// nobody answering, alice rings 0-10s, bob 17-32s (delay 2s after the
	// 5s retry_delay), and the 30s group timeout comes before the uri
	// member and the nested sales group get their turn.
	var warns []string
	for _, w := range c.Warnings {
		warns = append(warns, w.Path+": "+w.Msg)
	}
	wantWarns := []string{"groups[0].members[2]: members[2] and members[3] never ring: the group timeout 30s comes first (members[2] would start at 37s when nobody answers); raise timeout or shorten the ring times"}
	if !reflect.DeepEqual(warns, wantWarns) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warns, "\n"), strings.Join(wantWarns, "\n"))
	}
	if c.File != path {
		t.Errorf("File = %q, want %q", c.File, path)
	}
	wantListen := []Listen{
		{"udp", netip.MustParseAddrPort("0.0.0.0:5060")},
		{"tcp", netip.MustParseAddrPort("0.0.0.0:5060")},
	}
	if !reflect.DeepEqual(c.Listen, wantListen) {
		t.Errorf("Listen = %v, want %v", c.Listen, wantListen)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", what, got, want)
		}
	}
	check("Domains", c.Domains, []string{"pbx.example.com"})
	check("Realm", c.Realm, "pbx.example.com")
	check("Advertise", c.Advertise, "")
	check("Media", c.Media, Media{Mode: "relay", Address: netip.IPv4Unspecified(), PortMin: 10000, PortMax: 20000, RTPTimeout: 30 * time.Second})
	check("Admin", c.Admin, Admin{Listen: "127.0.0.1:8080"})
	check("DrainTimeout", c.DrainTimeout, 30*time.Second)
	check("Registrar", c.Registrar, Registrar{MinExpires: time.Minute, MaxExpires: time.Hour, StateFile: "registrations.json"})
	check("Limits", c.Limits, Limits{RequestsPerSource: 200, AuthFailuresPerSource: 10})
	check("Log", c.Log, Log{Level: "info", Format: "json"})
	check("CDR", c.CDR, CDR{Path: "cdr.jsonl"})
	check("Pickup", c.Pickup, Pickup{Any: "*8", GroupPrefix: "88"})

	if len(c.Users) != 2 {
		t.Fatalf("%d users, want 2", len(c.Users))
	}
	check("Users[0]", *c.Users[0], User{Name: "alice", Password: "s3cret", Extension: "1001", PickupGroups: []string{"support"}})
	check("Users[1]", *c.Users[1], User{Name: "bob", Password: "hunter2"})
	if len(c.Trunks) != 1 {
		t.Fatalf("%d trunks, want 1", len(c.Trunks))
	}
	check("Trunks[0].From", c.Trunks[0].From, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("127.0.0.1/32")})

	if len(c.Groups) != 3 {
		t.Fatalf("%d groups, want 3", len(c.Groups))
	}
	g := c.Groups[0]
	check("support.Strategy", g.Strategy, "linear")
	check("sales.Strategy", c.Groups[1].Strategy, "all")
	check("overflow.Strategy", c.Groups[2].Strategy, "memorized_round_robin")
	check("support.Numbers", g.Numbers, []string{"+15555550100"})
	check("support times", []time.Duration{g.Timeout, g.MemberTimeout, g.RetryDelay}, []time.Duration{30 * time.Second, 15 * time.Second, 5 * time.Second})
	check("support.CallerID", g.CallerID, CallerID{Mode: "prepend", Name: "Support: "})
	check("support.CallerID.Apply", g.CallerID.Apply("Ann"), "Support: Ann")
	check("support.Ringback", []string{g.Ringback, g.RingbackTone, g.MusicFile}, []string{"passthrough", "us", "testdata/moh.wav"})
	check("support.Record", g.Record, Record{Enabled: false, Dir: "recordings"})
	check("support.Permissions", g.Permissions, Permissions{Allow: []string{"*"}, Deny: []string{"sip:+1900*"}})
	check("support bools", []bool{g.Enabled, g.DistributeEvenly, g.RingInUse, g.AnsweredElsewhere, g.FollowForward}, []bool{true, false, true, true, true})
	check("support ints", []int{g.Repeats, g.MaxCalls}, []int{0, 0})
	check("support.Members", g.Members, []Member{
		{User: "alice", Timeout: 10 * time.Second, Weight: 1},
		{User: "bob", Delay: 2 * time.Second, Weight: 3},
		{URI: "sip:1002@192.0.2.5:5060", Weight: 1},
		{Group: "sales", Weight: 1},
	})
	check("support.RingTime(alice)", g.RingTime(g.Members[0]), 10*time.Second)
	check("support.RingTime(bob)", g.RingTime(g.Members[1]), 15*time.Second)
	check("support.Fallback", g.Fallback, Fallbacks{
		NoAnswer:   Fallback{URI: "sip:voicemail@192.0.2.9"},
		Busy:       Fallback{Reject: 486},
		Congestion: Fallback{Group: "overflow"},
		Closed:     Fallback{URI: "sip:closed-announcement@192.0.2.9"},
	})
	check("sales.Fallback (defaults)", c.Groups[1].Fallback, Fallbacks{
		NoAnswer: Fallback{Reject: 480}, Busy: Fallback{Reject: 486}, Congestion: Fallback{Reject: 486}, Closed: Fallback{Reject: 480},
	})

	s := g.Schedule
	if s == nil {
		t.Fatal("support has no schedule")
	}
	check("Schedule.Timezone", s.Timezone, "Europe/Paris")
	if s.Location == nil || s.Location.String() != "Europe/Paris" {
		t.Errorf("Schedule.Location = %v", s.Location)
	}
	weekdays := [7]bool{false, true, true, true, true, true, false}
	check("Schedule.Open", s.Open, []OpenRange{
		{Days: weekdays, From: 9 * 60, To: 17*60 + 30},
		{Days: [7]bool{time.Saturday: true}, From: 10 * 60, To: 12 * 60},
	})
	check("Schedule.ClosedDates", s.ClosedDates, []Date{{2026, time.December, 25}})

	// The lookups routing uses.
	check("GroupByNumber(600)", c.GroupByNumber("600"), g)
	check("GroupByNumber(+15555550100)", c.GroupByNumber("+15555550100"), g)
	check("GroupByNumber(601)", c.GroupByNumber("601"), c.Groups[1])
	check("Group(overflow)", c.Group("overflow"), c.Groups[2])
	check("User(bob)", c.User("bob"), c.Users[1])
	check("UserByExtension(1001)", c.UserByExtension("1001"), c.Users[0])
	if c.GroupByNumber("1001") != nil || c.Group("nobody") != nil || c.UserByExtension("600") != nil {
		t.Error("lookup of something undefined returned non-nil")
	}
	check("Trunk(198.51.100.7)", c.Trunk(netip.MustParseAddr("198.51.100.7")), c.Trunks[0])
	check("Trunk(::ffff:127.0.0.1)", c.Trunk(netip.MustParseAddr("::ffff:127.0.0.1")), c.Trunks[0])
	if c.Trunk(netip.MustParseAddr("192.0.2.1")) != nil {
		t.Error("Trunk(192.0.2.1) is not nil")
	}
	if !c.ServesDomain("PBX.example.com") || c.ServesDomain("other.example.com") {
		t.Error("ServesDomain disagrees with domains: [pbx.example.com]")
	}
}

// An empty file is a valid config of defaults, so the defaults are pinned
// here once; docs/config.md lists the same values.
func TestDefaults(t *testing.T) {
	c, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File: "empty.yaml",
		Listen: []Listen{
			{"udp", netip.MustParseAddrPort("127.0.0.1:5060")},
			{"tcp", netip.MustParseAddrPort("127.0.0.1:5060")},
		},
		Realm:            "ringroute",
		DigestAlgorithms: []string{"MD5"},
		Media:            Media{Mode: "relay", Address: netip.MustParseAddr("0.0.0.0"), PortMin: 10000, PortMax: 20000, RTPTimeout: 30 * time.Second},
		Admin:            Admin{Listen: "127.0.0.1:8080"},
		DrainTimeout:     30 * time.Second,
		Registrar:        Registrar{MinExpires: 60 * time.Second, MaxExpires: time.Hour, StateFile: "registrations.json"},
		Limits:           Limits{RequestsPerSource: 200, AuthFailuresPerSource: 10},
		Log:              Log{Level: "info", Format: "json"},
		CDR:              CDR{Path: "cdr.jsonl"},
		Pickup:           Pickup{Any: "*8", GroupPrefix: "88"},
	}
	c.groupsByName, c.groupsByNumber, c.usersByName, c.usersByExt = nil, nil, nil, nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(empty) =\n%+v\nwant\n%+v", c, want)
	}

	// A group with only a name gets every group default.
	c, err = Parse("g.yaml", []byte("groups: [{name: g, extension: '1', members: [{uri: 'sip:a@b'}]}]"))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Groups[0]
	wantG := newGroup()
	wantG.Name, wantG.Extension = "g", "1"
	wantG.Members = []Member{{URI: "sip:a@b", Weight: 1}}
	if !reflect.DeepEqual(g, wantG) {
		t.Errorf("group defaults =\n%+v\nwant\n%+v", g, wantG)
	}
	for what, got := range map[string]any{
		"Enabled": g.Enabled, "Strategy": g.Strategy, "Timeout": g.Timeout, "MemberTimeout": g.MemberTimeout,
		"RetryDelay": g.RetryDelay, "RingInUse": g.RingInUse, "AnsweredElsewhere": g.AnsweredElsewhere,
		"FollowForward": g.FollowForward, "Ringback": g.Ringback, "RingbackTone": g.RingbackTone,
		"Record.Dir": g.Record.Dir, "Allow": g.Permissions.Allow, "NoAnswer": g.Fallback.NoAnswer.String(),
		"Busy": g.Fallback.Busy.String(), "Congestion": g.Fallback.Congestion.String(), "Closed": g.Fallback.Closed.String(),
		"Schedule": g.Schedule == nil, "CallerID.Mode": g.CallerID.Mode,
	} {
		want := map[string]any{
			"Enabled": true, "Strategy": "linear", "Timeout": 30 * time.Second, "MemberTimeout": 15 * time.Second,
			"RetryDelay": 5 * time.Second, "RingInUse": true, "AnsweredElsewhere": true,
			"FollowForward": true, "Ringback": "passthrough", "RingbackTone": "us",
			"Record.Dir": "recordings", "Allow": []string{"*"}, "NoAnswer": "reject:480",
			"Busy": "reject:486", "Congestion": "reject:486", "Closed": "reject:480",
			"Schedule": true, "CallerID.Mode": "",
		}[what]
		if !reflect.DeepEqual(got, want) {
			t.Errorf("group default %s = %#v, want %#v", what, got, want)
		}
	}
}

func TestValues(t *testing.T) {
	tests := []struct {
		name, yaml string
		check      func(*Config) any
		want       any
	}{
		{"parallel is all", "groups: [{name: g, extension: '1', strategy: parallel, members: [{uri: 'sip:a@b'}]}]",
			func(c *Config) any { return c.Groups[0].Strategy }, "all"},
		{"sequential is linear", "groups: [{name: g, extension: '1', strategy: sequential, members: [{uri: 'sip:a@b'}]}]",
			func(c *Config) any { return c.Groups[0].Strategy }, "linear"},
		{"round_robin is memorized_round_robin", "groups: [{name: g, extension: '1', strategy: round_robin, members: [{uri: 'sip:a@b'}]}]",
			func(c *Config) any { return c.Groups[0].Strategy }, "memorized_round_robin"},
		{"every canonical strategy", "groups: [" +
			"{name: a, extension: '1', strategy: least_recent, members: [{uri: 'sip:a@b'}]}," +
			"{name: b, extension: '2', strategy: fewest_calls, members: [{uri: 'sip:a@b'}]}," +
			"{name: c, extension: '3', strategy: random, members: [{uri: 'sip:a@b'}]}," +
			"{name: d, extension: '4', strategy: weight_random, members: [{uri: 'sip:a@b'}]}," +
			"{name: e, extension: '5', strategy: progressive, members: [{uri: 'sip:a@b'}]}]",
			func(c *Config) any {
				var s []string
				for _, g := range c.Groups {
					s = append(s, g.Strategy)
				}
				return s
			}, []string{"least_recent", "fewest_calls", "random", "weight_random", "progressive"}},
		{"ha1 is stored lower case", "users: [{name: a, ha1: 0123456789ABCDEF0123456789ABCDEF}]",
			func(c *Config) any { return c.Users[0].HA1 }, "0123456789abcdef0123456789abcdef"},
		{"domains are stored lower case", "domains: [PBX.Example.COM]",
			func(c *Config) any { return c.Domains }, []string{"pbx.example.com"}},
		{"a bare IP trunk is one host", "trunks: [{name: t, from: [192.0.2.7, '2001:db8::7']}]",
			func(c *Config) any { return c.Trunks[0].From },
			[]netip.Prefix{netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::7/128")}},
		{"duration 0 and quoted durations", "drain_timeout: 0\nmedia: {rtp_timeout: '1m30s'}",
			func(c *Config) any { return []time.Duration{c.DrainTimeout, c.Media.RTPTimeout} },
			[]time.Duration{0, 90 * time.Second}},
		{"null means default", "realm:\nmedia: {mode: ~}\nlisten:",
			func(c *Config) any { return []any{c.Realm, c.Media.Mode, len(c.Listen)} }, []any{"ringroute", "relay", 2}},
		{"empty admin.listen is off", "admin: {listen: ''}",
			func(c *Config) any { return c.Admin.Listen }, ""},
		{"ipv6 listen", "listen: ['udp://[::1]:5060', 'TLS://[::1]:5061']\ntls: {cert: ../testdata/tls/a.crt, key: ../testdata/tls/a.key}",
			func(c *Config) any { return c.Listen },
			[]Listen{{"udp", netip.MustParseAddrPort("[::1]:5060")}, {"tls", netip.MustParseAddrPort("[::1]:5061")}}},
		{"advertise in brackets is stored bare", "advertise: '[2001:DB8::1]'",
			func(c *Config) any { return c.Advertise }, "2001:db8::1"},
		{"unquoted numbers are strings where strings are wanted", "users: [{name: a, password: 1234, extension: 1001}]",
			func(c *Config) any { return []string{c.Users[0].Password, c.Users[0].Extension} }, []string{"1234", "1001"}},
		{"merge keys, own keys win", "x-d: &d {timeout: 10s, strategy: all}\ngroups: [{<<: *d, name: g, extension: '1', timeout: 20s, members: [{uri: 'sip:a@b'}]}]",
			func(c *Config) any { return []any{c.Groups[0].Timeout, c.Groups[0].Strategy} }, []any{20 * time.Second, "all"}},
		{"fallback timeout", "users: [{name: a, password: x}]\ngroups: [{name: g, extension: '1', members: [{user: a}], fallback: {noanswer: {user: a, timeout: 7s}}}]",
			func(c *Config) any { return c.Groups[0].Fallback.NoAnswer }, Fallback{User: "a", Timeout: 7 * time.Second}},
		{"schedule over midnight and wrapping days", "groups: [{name: g, extension: '1', members: [{uri: 'sip:a@b'}], schedule: {timezone: UTC, open: ['fri-mon 22:00-06:00']}}]",
			func(c *Config) any { return c.Groups[0].Schedule.Open },
			[]OpenRange{{Days: [7]bool{time.Sunday: true, time.Monday: true, time.Friday: true, time.Saturday: true}, From: 22 * 60, To: 6 * 60}}},
		{"pickup codes may be turned off", "pickup: {any: '', group_prefix: ''}",
			func(c *Config) any { return c.Pickup }, Pickup{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse:\n%v", err)
			}
			if got := tt.check(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// Every Parse error is Errors, sorted, each positioned, and the config is
// nil.
func TestErrorsShape(t *testing.T) {
	data := []byte("groups:\n  - name: g\n    timeout: ten\n    member_timout: 1s\nrealm: ''\nlisen: []\n")
	c, err := Parse("ringroute.yaml", data)
	if c != nil {
		t.Error("config is not nil on error")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want Errors", err)
	}
	want := []string{
		`ringroute.yaml:3:14: groups[0].timeout: "ten" is not a duration (like 10s)`,
		`ringroute.yaml:4:5: groups[0]: unknown key "member_timout" (did you mean "member_timeout"?)`,
		`ringroute.yaml:5:8: realm: must not be empty; leave it out for the default "ringroute"`,
		`ringroute.yaml:6:1: unknown key "lisen" (did you mean "listen"?)`,
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if errs[0].Path != "groups[0].timeout" || errs[0].Line != 3 || errs[0].Col != 14 || errs[0].File != "ringroute.yaml" {
		t.Errorf("errs[0] = %+v", errs[0])
	}
}

func TestLoadReadError(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	var b strings.Builder
	if Check(filepath.Join(t.TempDir(), "missing.yaml"), &b) {
		t.Error("Check(missing) = true")
	}
	if !strings.HasSuffix(b.String(), "\n1 error\n") {
		t.Errorf("Check(missing) printed %q", b.String())
	}
}

func TestWarningsDoNotFail(t *testing.T) {
	c, err := Parse("w.yaml", []byte("groups: [{name: g, extension: '1', timeout: 20s, repeats: 1, members: [{uri: 'sip:a@b'}]}]"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || c.Warnings[0].Path != "groups[0].repeats" {
		t.Errorf("Warnings = %v", c.Warnings)
	}
}

func TestPortRange(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi int
		err    string
	}{
		{"10000-20000", 10000, 20000, ""},
		{"10000-20001", 10000, 20001, ""},
		{"10000-10001", 10000, 10001, ""},
		{" 1024 - 65535 ", 1024, 65535, ""},
		{"10001-20000", 0, 0, "odd port"},
		{"20000-10000", 0, 0, "reversed"},
		{"10000-10000", 0, 0, "no RTP/RTCP pair"},
		{"1000-2000", 0, 0, "within 1024-65535"},
		{"10000-65536", 0, 0, "within 1024-65535"},
		{"10000", 0, 0, "not a port range"},
		{"a-b", 0, 0, "not a port range"},
		{"-1-5", 0, 0, "not a port range"},
	}
	for _, tt := range tests {
		lo, hi, err := portRange(tt.in)
		if tt.err == "" {
			if err != nil || lo != tt.lo || hi != tt.hi {
				t.Errorf("portRange(%q) = %d, %d, %v; want %d, %d", tt.in, lo, hi, err, tt.lo, tt.hi)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("portRange(%q) error = %v, want %q", tt.in, err, tt.err)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "sip:alice@example.com", true},
		{"sip:+1900*", "sip:+19005551234@carrier", true},
		{"sip:+1900*", "sip:+18005551234@carrier", false},
		{"sip:*@pbx.example.com", "sip:alice@pbx.example.com", true},
		{"sip:*@pbx.example.com", "sip:alice@evil.com", false},
		{"sip:*/x", "sip:a/b/x", true}, // * crosses '/', unlike path.Match
		{"sip:???@*", "sip:100@h", true},
		{"sip:???@*", "sip:1000@h", false},
		{"sip:ü?", "sip:üx", true}, // ? is one character, not one byte
		{`sip:\*8@*`, "sip:*8@h", true},
		{`sip:\*8@*`, "sip:98@h", false},
		{"sip:[2001:db8::1]", "sip:[2001:db8::1]", true}, // brackets are literal
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"**", "x", true},
		{"", "", true},
		{"", "x", false},
		{`a\`, "a", false}, // malformed: matches nothing
		{`*\`, "a", false},
		{"Sip:*", "sip:a", false}, // case-sensitive
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 200), false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestSIPURI(t *testing.T) {
	good := []string{
		"sip:1002@192.0.2.5:5060", "sip:voicemail@192.0.2.9", "sips:alice@example.com", "SIP:Alice@Example.COM",
		"sip:example.com", "sip:[2001:db8::1]", "sip:alice@[2001:db8::1]:5061", "sip:+15555550100@carrier.example;user=phone",
		"sip:alice@example.com;transport=tcp;lr", "sip:*97@pbx", "sip:alice:secret@example.com", "sip:%61lice@example.com",
		"sip:a#1@h",
	}
	for _, s := range good {
		if err := sipURI(s); err != nil {
			t.Errorf("sipURI(%q) = %v, want nil", s, err)
		}
	}
	bad := []string{
		"", "sip", "sip:", "tel:+1555", "http://example.com", "sip:@h", "sip:a@", "sip:a@h:0", "sip:a@h:65536",
		"sip:a@h:x", "sip:a@[::1", "sip:a@[::1]x", "sip:a@[1.2.3.4]", "sip:a@h?X=1", "sip:a b@h", "sip:a@h_h",
		"sip:a@h;=1", "sip:a<b@h", "sip:a%zz@h", "sip:a@256.1.1.1", "sip:a@-h", "sip:a@h;p=<x>",
	}
	for _, s := range bad {
		if err := sipURI(s); err == nil {
			t.Errorf("sipURI(%q) = nil, want an error", s)
		}
	}
}

func TestOpenAt(t *testing.T) {
	c, err := Parse("s.yaml", []byte(`
groups:
  - name: g
    extension: "1"
    members: [{uri: "sip:a@b"}]
    schedule:
      timezone: Europe/Paris
      open: ["mon-fri 09:00-17:30", "sat 22:00-02:00"]
      closed_dates: ["2026-12-25"]
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Groups[0].Schedule
	paris := s.Location
	at := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, paris) }
	tests := []struct {
		t    time.Time
		want bool
	}{
		{at(2026, 12, 1, 9, 0), true},   // Tuesday, opening minute
		{at(2026, 12, 1, 8, 59), false}, // before opening
		{at(2026, 12, 1, 17, 29), true},
		{at(2026, 12, 1, 17, 30), false}, // To is exclusive
		{at(2026, 12, 5, 23, 0), true},   // Saturday evening
		{at(2026, 12, 6, 1, 59), true},   // Sunday morning: Saturday's range
		{at(2026, 12, 6, 2, 0), false},
		{at(2026, 12, 6, 23, 0), false},                       // Sunday evening: no range starts Sunday
		{at(2026, 12, 25, 10, 0), false},                      // closed date (a Friday)
		{time.Date(2026, 12, 1, 8, 30, 0, 0, time.UTC), true}, // 08:30 UTC is 09:30 in Paris
	}
	for _, tt := range tests {
		if got := s.OpenAt(tt.t); got != tt.want {
			t.Errorf("OpenAt(%v) = %v, want %v", tt.t, got, tt.want)
		}
	}
	var none *Schedule
	if !none.OpenAt(time.Now()) {
		t.Error("a nil schedule is closed")
	}
	closedOnly := &Schedule{Location: time.UTC, ClosedDates: []Date{{2026, time.January, 1}}}
	if !closedOnly.OpenAt(time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)) || closedOnly.OpenAt(time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)) {
		t.Error("a schedule without open ranges should be open except on closed dates")
	}
}

// The syntax error position comes from re-parsing prefixes; these pin the
// cases yaml.v3 gets wrong on its own (no line, or the block's line).
func TestSyntaxPositions(t *testing.T) {
	tests := []struct{ data, want string }{
		{"a: b: c\n", "f:1:5: "},
		{"groups:\n  - name: x\n    extension: '1'\n   members: []\n", "f:4:4: "},
		{"a:\n  b:\n    c: 1\n   d: 2\n", "f:4:4: "},
		{"a: 1\nb: [1, 2\n", "f:2:"},
		{"a: 1\nb: \"x\n", "f:2:4: "},
		{"a: 1\nb: @x\n", "f:2:4: "},
		{"a: 1\n\tb: 2\n", "f:2:1: "},
		{"a: 1\nb: \xff\n", "f:2:4: "},
		{"a: 1\nb: *nope\n", "f:2:4: "},
	}
	for _, tt := range tests {
		_, err := Parse("f", []byte(tt.data))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want prefix %q", tt.data, err, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		s    string
		want string
	}{
		{"member_timout", "member_timeout"},
		{"Timeout", "timeout"},
		{"warning", "warn"},
		{"xyz", ""},
		{"ha", "ha1"},
		{"to", ""}, // too short to guess at distance 2
	}
	cands := []string{"member_timeout", "timeout", "warn", "ha1", "uri"}
	for _, tt := range tests {
		if got := suggest(tt.s, cands); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.s, got, tt.want)
		}
	}
}

var linePrefix = regexp.MustCompile(`^f\.yaml:[0-9]+:[0-9]+: `)

// FuzzParse: Parse never panics, fails with nil config and Errors, and
// every error line starts with name:LINE:COL.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "config", "*.yaml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a]\nb: {<<: *a}\n"))
	f.Add([]byte("x-a: &a {<<: *a}\ngroups: [{<<: *a}]\n"))
	f.Add([]byte("x-1: &1 {timeout: 1s}\nx-2: &2 {<<: [*1, *1]}\nx-3: &3 {<<: [*2, *2]}\ngroups: [{<<: *3, name: g}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err == nil {
			if c == nil {
				t.Fatal("nil config and nil error")
			}
			for _, w := range c.Warnings {
				if !linePrefix.MatchString(w.String()) {
					t.Fatalf("warning %q lacks a position", w)
				}
			}
			return
		}
		if c != nil {
			t.Fatal("config and error both set")
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %T %v is not Errors", err, err)
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !linePrefix.MatchString(line) {
				t.Fatalf("error line %q lacks name:LINE:COL", line)
			}
		}
	})
}

// A request-URI carries an IPv6 host in brackets; domains may list it
// either way.
func TestServesDomainIPv6(t *testing.T) {
	c, err := Parse("d.yaml", []byte(`domains: ["[2001:db8::1]", pbx.example.com]`))
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"[2001:db8::1]": true, "2001:db8::1": true, "PBX.example.com": true,
		"[2001:db8::2]": false, "example.com": false,
	} {
		if got := c.ServesDomain(host); got != want {
			t.Errorf("ServesDomain(%q) = %v, want %v", host, got, want)
		}
	}
}

// caller_id modes on the display name members see.
func TestCallerIDApply(t *testing.T) {
	for _, tt := range []struct {
		mode, name, display, want string
	}{
		{"prepend", "Support: ", "Ann", "Support: Ann"},
		{"append", " (support)", "Ann", "Ann (support)"},
		{"overwrite", "Support", "Ann", "Support"},
		{"prepend", "Support: ", "", "Support: "},
		{"overwrite", "Support", "", "Support"},
		{"", "ignored", "Ann", "Ann"}, // no caller_id: unchanged
	} {
		if got := (CallerID{Mode: tt.mode, Name: tt.name}).Apply(tt.display); got != tt.want {
			t.Errorf("CallerID{%s, %q}.Apply(%q) = %q, want %q", tt.mode, tt.name, tt.display, got, tt.want)
		}
	}
}

// EvenRingTime: distribute_evenly by strategy shape.
func TestEvenRingTime(t *testing.T) {
	s := time.Second
	for _, tt := range []struct {
		strategy string
		n        int
		span     time.Duration
		pause    time.Duration
		want     time.Duration
	}{
		{"linear", 3, 30 * s, 3 * s, 8 * s},                              // (30 - 2x3) / 3
		{"memorized_round_robin", 5, 30 * s, s, 5200 * time.Millisecond}, // (30 - 4) / 5
		{"linear", 7, 30 * s, 0, 4285 * time.Millisecond},                // rounded down to the ms
		{"all", 3, 30 * s, 5 * s, 30 * s},                                // everyone rings the whole span
		{"progressive", 3, 30 * s, 5 * s, 10 * s},                        // a member joins every span/n
		{"linear", 3, 4 * s, 5 * s, 0},                                   // the pauses eat it all
		{"linear", 0, 30 * s, 0, 0},
		{"linear", 3, 0, 0, 0},
	} {
		g := &Group{Strategy: tt.strategy, RetryDelay: tt.pause}
		if got := g.EvenRingTime(tt.n, tt.span); got != tt.want {
			t.Errorf("%s n=%d span=%v pause=%v: %v, want %v", tt.strategy, tt.n, tt.span, tt.pause, got, tt.want)
		}
	}
}
