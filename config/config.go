// Package config loads, validates and describes ringroute's one YAML file.
//
// Load is the only way to get a *Config, and `ringroute check`, `ringroute
// run` and reload all call it, so the validator can never disagree with the
// daemon. A *Config is an immutable snapshot: a call keeps the snapshot it
// started with while a reload swaps in a new one.
//
// Every problem in a file is reported at once, sorted by position, one line
// each, in the form
//
//	ringroute.yaml:41:7: groups[0].members[2].timeout: "ten" is not a duration (like 10s)
//
// The package is a leaf: it imports nothing of ringroute's but the
// stdlib-only internal/wav (to check a music file with the reader that
// plays it), and no SIP or network library, so routing and strategy may
// read it.
package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config is one validated configuration. Fields hold defaults where the file
// left them out. Treat it as read-only.
type Config struct {
	File      string // the path it was loaded from
	Listen    []Listen
	TLS       TLS
	Advertise string   // address for Via/Contact/SDP; empty: the listen address
	Domains   []string // request-URI hosts served, lower case; empty: any
	Realm     string
	// DigestAlgorithms are offered in digest challenges, most preferred
	// first: "MD5", "SHA-256".
	DigestAlgorithms []string

	Media        Media
	Admin        Admin
	DrainTimeout time.Duration
	Registrar    Registrar
	Limits       Limits
	Log          Log
	CDR          CDR

	Users  []*User
	Trunks []*Trunk
	Pickup Pickup
	Groups []*Group

	// Warnings are problems that do not stop the file from loading, such as
	// timing that cannot work. `check` prints them and still exits 0.
	Warnings []Diagnostic

	groupsByName   map[string]*Group
	groupsByNumber map[string]*Group // extension and numbers
	usersByName    map[string]*User
	usersByExt     map[string]*User
}

// Listen is one SIP transport from `listen`.
type Listen struct {
	Transport string         // "udp", "tcp" or "tls"
	Addr      netip.AddrPort // e.g. 127.0.0.1:5060
}

// TLS holds the certificate for tls:// listeners.
type TLS struct {
	Cert, Key string
}

// Media is the `media:` block.
type Media struct {
	Mode       string     // "relay" or "direct"
	Address    netip.Addr // where relay sockets bind
	PortMin    int        // even
	PortMax    int        // > PortMin, as written; streams use even p in [PortMin, PortMax) with RTCP on p+1
	RTPTimeout time.Duration
}

// Relay reports whether media flows through ringroute.
func (m Media) Relay() bool { return m.Mode == "relay" }

// Admin is the `admin:` block.
type Admin struct {
	Listen string // host:port; empty: off
	Token  string
}

// Registrar is the `registrar:` block.
type Registrar struct {
	MinExpires time.Duration
	MaxExpires time.Duration
	StateFile  string // empty: memory only
}

// Limits is the `limits:` block; 0 turns a limit off.
type Limits struct {
	RequestsPerSource     int
	AuthFailuresPerSource int
}

// Log is the `log:` block.
type Log struct {
	Level  string // debug | info | warn | error
	Format string // json | console
}

// CDR is the `cdr:` block.
type CDR struct {
	Path string // empty: off
}

// User is one account that may REGISTER and call.
type User struct {
	Name         string
	Password     string
	HA1          string // lower-case hex MD5 of name:realm:password
	Extension    string
	PickupGroups []string
}

// Trunk is a set of source networks trusted to send INVITEs unchallenged.
type Trunk struct {
	Name string
	From []netip.Prefix
}

// Pickup holds the pickup feature codes.
type Pickup struct {
	Any         string // default "*8"
	GroupPrefix string // default "88"
}

// Group is one ring group.
type Group struct {
	Name              string
	Label             string
	Extension         string
	Numbers           []string
	Enabled           bool
	Strategy          string // canonical name: an alias is stored as what it stands for
	Timeout           time.Duration
	MemberTimeout     time.Duration
	RetryDelay        time.Duration
	DistributeEvenly  bool
	Repeats           int
	RingInUse         bool
	MaxCalls          int
	AnsweredElsewhere bool
	FollowForward     bool
	CallerID          CallerID
	Ringback          string // passthrough | tone | music
	RingbackTone      string // us | eu | uk
	MusicFile         string
	Record            Record
	Schedule          *Schedule // nil: always open
	Permissions       Permissions
	Members           []Member
	Fallback          Fallbacks
}

// RingTime is how long member m rings: its own timeout, else the group's
// member_timeout.
func (g *Group) RingTime(m Member) time.Duration {
	if m.Timeout > 0 {
		return m.Timeout
	}
	return g.MemberTimeout
}

// EvenRingTime is the ring time distribute_evenly gives each of n members
// so that one pass fills span (the group timeout; for a nested group, what
// it has of its member time in the parent). It depends on how the strategy
// lays a pass out: all rings everyone at once, so each rings the whole
// span; progressive adds a member every ring time, so span/n; the others
// ring one member per attempt with retry_delay between attempts, so
// (span - (n-1) x retry_delay) / n. It is rounded down to the millisecond,
// and 0 when nothing is left to share.
func (g *Group) EvenRingTime(n int, span time.Duration) time.Duration {
	if n <= 0 || span <= 0 {
		return 0
	}
	var d time.Duration
	switch g.Strategy {
	case "all", "parallel":
		d = span
	case "progressive":
		d = span / time.Duration(n)
	default:
		d = (span - time.Duration(n-1)*g.RetryDelay) / time.Duration(n)
	}
	return max(d.Truncate(time.Millisecond), 0)
}

// CallerID is how the caller's display name is changed toward members.
type CallerID struct {
	Mode string // "" (unchanged) | prepend | append | overwrite
	Name string
}

// Apply returns the display name members see for a caller whose display name
// is display.
func (c CallerID) Apply(display string) string {
	switch c.Mode {
	case "prepend":
		return c.Name + display
	case "append":
		return display + c.Name
	case "overwrite":
		return c.Name
	}
	return display
}

// Record is the group's call recording setting.
type Record struct {
	Enabled bool
	Dir     string
}

// Schedule is when a group is open.
type Schedule struct {
	Timezone    string
	Location    *time.Location
	Open        []OpenRange
	ClosedDates []Date
}

// OpenRange is one "mon-fri 09:00-17:30" entry. From and To are minutes
// after midnight; To < From means the range runs over midnight into the
// next day.
type OpenRange struct {
	Days     [7]bool // indexed by time.Weekday
	From, To int
}

// Date is a calendar date in the schedule's time zone.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// Permissions are glob patterns on the caller's From URI. Deny wins.
type Permissions struct {
	Allow []string
	Deny  []string
}

// Member is one entry of a group's `members`. Exactly one of User, URI and
// Group is set.
type Member struct {
	User    string
	URI     string
	Group   string
	Timeout time.Duration // 0: the group's member_timeout
	Delay   time.Duration
	Weight  int // default 1
}

// Key is the member's stable identity, for state that outlives a reload and
// for CDRs: "user:alice", "uri:sip:1002@192.0.2.5:5060", "group:sales".
func (m Member) Key() string {
	switch {
	case m.User != "":
		return "user:" + m.User
	case m.Group != "":
		return "group:" + m.Group
	}
	return "uri:" + m.URI
}

// Fallbacks are where a call goes when the group does not connect it.
type Fallbacks struct {
	NoAnswer   Fallback // default {reject: 480}
	Busy       Fallback // default {reject: 486}
	Congestion Fallback // default {reject: 486}
	Closed     Fallback // default {reject: 480}
}

// Fallback is one destination. Exactly one of Group, User, URI and Reject
// is set.
type Fallback struct {
	Group   string
	User    string
	URI     string
	Reject  int
	Timeout time.Duration // uri and user: how long it rings; 0: the group's member_timeout
}

// String renders the fallback as in the config file, e.g. "reject:480",
// "uri:sip:vm@192.0.2.9", "group:overflow", "user:alice".
func (f Fallback) String() string {
	switch {
	case f.Group != "":
		return "group:" + f.Group
	case f.User != "":
		return "user:" + f.User
	case f.URI != "":
		return "uri:" + f.URI
	}
	return "reject:" + strconv.Itoa(f.Reject)
}

// Group returns the group with that name, or nil.
func (c *Config) Group(name string) *Group { return c.groupsByName[name] }

// GroupByNumber returns the group whose extension or one of whose numbers
// is num, or nil.
func (c *Config) GroupByNumber(num string) *Group { return c.groupsByNumber[num] }

// User returns the user with that name, or nil.
func (c *Config) User(name string) *User { return c.usersByName[name] }

// UserByExtension returns the user whose extension is ext, or nil.
func (c *Config) UserByExtension(ext string) *User { return c.usersByExt[ext] }

// Trunk returns the first trunk whose `from` networks contain ip, or nil.
func (c *Config) Trunk(ip netip.Addr) *Trunk {
	ip = ip.Unmap()
	for _, t := range c.Trunks {
		for _, p := range t.From {
			if p.Contains(ip) {
				return t
			}
		}
	}
	return nil
}

// ServesDomain reports whether a request-URI host is ours: always when
// `domains` is empty.
func (c *Config) ServesDomain(host string) bool {
	if len(c.Domains) == 0 {
		return true
	}
	// A request-URI carries an IPv6 host in brackets; domains stores it
	// bare.
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	for _, d := range c.Domains {
		if strings.EqualFold(d, host) {
			return true
		}
	}
	return false
}
