package config

import (
	"crypto/tls"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Cross-checks need the whole file: a member may name a group defined
// further down. Parsing records definitions, references and dialable
// numbers with their positions here; crossCheck then judges them.

type site struct {
	path string
	node *yaml.Node
}

type ref struct {
	name, path string
	node       *yaml.Node
}

// claim is one dialable string (an extension, a number or a feature code)
// and who owns it.
type claim struct {
	num, owner, path string
	node             *yaml.Node
}

// edge is a group naming another: as a member or as a fallback.
type edge struct {
	from, to, path string
	node           *yaml.Node
}

type xref struct {
	users         map[string]site
	groups        map[string]site
	groupOrder    []string
	claims        []claim
	userRefs      []ref
	groupRefs     []ref
	memberEdges   []edge
	fallbackEdges []edge
	tlsListen     []site
	tls           *fields
	media         *fields
	infos         []*groupInfo
	nestCycle     map[string]bool // groups on a nesting cycle (an error): no nesting lint
}

func (x *xref) claim(num, owner, path string, n *yaml.Node) {
	x.claims = append(x.claims, claim{num, owner, path, n})
}

func (l *loader) defineUser(name, path string, n *yaml.Node) {
	if l.x.users == nil {
		l.x.users = map[string]site{}
	}
	if prev, ok := l.x.users[name]; ok {
		l.errorf(n, path, "user %q is already defined at line %d (%s)", name, prev.node.Line, prev.path)
		return
	}
	l.x.users[name] = site{path, n}
}

func (l *loader) defineGroup(name, path string, n *yaml.Node) {
	if l.x.groups == nil {
		l.x.groups = map[string]site{}
	}
	if prev, ok := l.x.groups[name]; ok {
		l.errorf(n, path, "group %q is already defined at line %d (%s)", name, prev.node.Line, prev.path)
		return
	}
	l.x.groups[name] = site{path, n}
	l.x.groupOrder = append(l.x.groupOrder, name)
}

func (l *loader) crossCheck(c *Config) {
	l.references()
	l.numbers(c)
	l.x.nestCycle = l.cycles(l.x.memberEdges, "nesting cycle", "a group cannot contain itself, even through other groups")
	cyclic := l.cycles(l.x.fallbackEdges, "fallback cycle", "a call would go round forever")
	l.chains(cyclic)
	l.relayOnly(c)
	l.tlsCheck(c)
	l.timing()
	l.unreachable()
}

func (l *loader) references() {
	userNames := keys(l.x.users)
	for _, r := range l.x.userRefs {
		if _, ok := l.x.users[r.name]; !ok {
			l.errorf(r.node, r.path, "no user %q is defined%s", r.name, didYouMean(r.name, userNames))
		}
	}
	for _, r := range l.x.groupRefs {
		if _, ok := l.x.groups[r.name]; !ok {
			l.errorf(r.node, r.path, "no group %q is defined%s", r.name, didYouMean(r.name, l.x.groupOrder))
		}
	}
}

func didYouMean(s string, candidates []string) string {
	if h := suggest(s, candidates); h != "" {
		return fmt.Sprintf(" (did you mean %q?)", h)
	}
	return ""
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// numbers reports a dialable string used twice, at the later place in the
// file, naming the earlier one: whichever an operator added last is the
// likely mistake.
func (l *loader) numbers(c *Config) {
	cl := append([]claim(nil), l.x.claims...)
	sort.SliceStable(cl, func(i, j int) bool {
		a, b := cl[i].node, cl[j].node
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	first := map[string]claim{}
	// The default pickup code is not in the file but is still taken.
	if c.Pickup.Any != "" && !l.claimed("pickup.any") {
		first[c.Pickup.Any] = claim{num: c.Pickup.Any, owner: "the default pickup code (pickup.any)"}
	}
	for _, cl := range cl {
		prev, taken := first[cl.num]
		if !taken {
			first[cl.num] = cl
			continue
		}
		if prev.node == nil {
			l.errorf(cl.node, cl.path, "%q is %s; choose another or change pickup.any", cl.num, prev.owner)
			continue
		}
		l.errorf(cl.node, cl.path, "%q is already %s (%s, line %d)", cl.num, prev.owner, prev.path, prev.node.Line)
	}
}

func (l *loader) claimed(path string) bool {
	for _, c := range l.x.claims {
		if c.path == path {
			return true
		}
	}
	return false
}

// cycles reports each loop in the graph once, at the edge leaving the
// loop's first group in file order, and returns the groups on loops. Edges
// to undefined groups are left to references.
func (l *loader) cycles(edges []edge, what, why string) map[string]bool {
	adj := map[string][]edge{}
	for _, e := range edges {
		if _, ok := l.x.groups[e.to]; !ok || e.from == "" {
			continue
		}
		if _, ok := l.x.groups[e.from]; !ok {
			continue
		}
		adj[e.from] = append(adj[e.from], e)
	}
	onLoop := map[string]bool{}
	for _, comp := range sccs(l.x.groupOrder, adj) {
		in := map[string]bool{}
		for _, g := range comp {
			in[g] = true
		}
		start := comp[0] // sccs keeps file order within a component
		loop, first := shortestLoop(start, adj, in)
		if loop == nil {
			continue
		}
		for _, g := range comp {
			onLoop[g] = true
		}
		l.errorf(first.node, first.path, "%s: groups: %s; %s", what, strings.Join(loop, " -> "), why)
	}
	return onLoop
}

// sccs is Tarjan's algorithm over groups in file order; each component's
// names come back in file order too.
func sccs(order []string, adj map[string][]edge) [][]string {
	pos := map[string]int{}
	for i, g := range order {
		pos[g] = i
	}
	idx, low := map[string]int{}, map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var out [][]string
	n := 0
	var visit func(v string)
	visit = func(v string) {
		idx[v], low[v] = n, n
		n++
		stack = append(stack, v)
		onStack[v] = true
		for _, e := range adj[v] {
			w := e.to
			if _, seen := idx[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], idx[w])
			}
		}
		if low[v] == idx[v] {
			var comp []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp = append(comp, w)
				if w == v {
					break
				}
			}
			sort.Slice(comp, func(i, j int) bool { return pos[comp[i]] < pos[comp[j]] })
			out = append(out, comp)
		}
	}
	for _, g := range order {
		if _, seen := idx[g]; !seen {
			visit(g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return pos[out[i][0]] < pos[out[j][0]] })
	return out
}

// shortestLoop finds the shortest path from start back to itself inside the
// component, or nil when the component is a single group without a
// self-edge. It returns the loop's names and its first edge.
func shortestLoop(start string, adj map[string][]edge, in map[string]bool) ([]string, edge) {
	type step struct {
		prev string
		e    edge
	}
	came := map[string]step{}
	queue := []string{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, e := range adj[v] {
			if !in[e.to] {
				continue
			}
			if e.to == start {
				// Walk back to start to spell the loop out.
				loop := []string{start}
				first := e
				for at := v; at != start; at = came[at].prev {
					loop = append(loop, at)
					first = came[at].e
				}
				loop = append(loop, start)
				for i, j := 1, len(loop)-2; i < j; i, j = i+1, j-1 {
					loop[i], loop[j] = loop[j], loop[i]
				}
				return loop, first
			}
			if _, seen := came[e.to]; !seen && e.to != start {
				came[e.to] = step{v, e}
				queue = append(queue, e.to)
			}
		}
	}
	return nil, edge{}
}

// maxFallbackHops is how many {group:} fallbacks a call may follow; the
// router enforces it too, this makes a long chain a load-time error.
const maxFallbackHops = 5

// chains reports fallback chains longer than maxFallbackHops, once per
// chain, at the group that starts it.
func (l *loader) chains(cyclic map[string]bool) {
	adj := map[string][]edge{}
	hasPred := map[string]bool{}
	for _, e := range l.x.fallbackEdges {
		if _, ok := l.x.groups[e.to]; !ok || cyclic[e.from] || cyclic[e.to] || e.from == "" {
			continue
		}
		if _, ok := l.x.groups[e.from]; !ok {
			continue
		}
		adj[e.from] = append(adj[e.from], e)
		hasPred[e.to] = true
	}
	depth := map[string]int{}
	next := map[string]edge{}
	var longest func(g string) int
	longest = func(g string) int {
		if d, ok := depth[g]; ok {
			return d
		}
		depth[g] = 0 // acyclic here, but never loop on a bug
		best := 0
		for _, e := range adj[g] {
			if d := 1 + longest(e.to); d > best {
				best, next[g] = d, e
			}
		}
		depth[g] = best
		return best
	}
	for _, g := range l.x.groupOrder {
		if d := longest(g); d > maxFallbackHops && !hasPred[g] {
			chain := []string{g}
			for at := g; depth[at] > 0; at = next[at].to {
				chain = append(chain, next[at].to)
			}
			e := next[g]
			l.errorf(e.node, e.path, "fallback chain of %d hops is longer than the %d a call may follow: groups: %s", d, maxFallbackHops, strings.Join(chain, " -> "))
		}
	}
}

// relayOnly rejects features that need ringroute in the media path when
// media passes end to end.
func (l *loader) relayOnly(c *Config) {
	if c.Media.Relay() {
		return
	}
	where := ""
	if l.x.media != nil && l.x.media.has("mode") {
		where = fmt.Sprintf(" (media.mode is direct at line %d)", l.x.media.vals["mode"].Line)
	}
	for _, gi := range l.x.infos {
		g := gi.g
		if g.Ringback == "tone" || g.Ringback == "music" {
			l.errorf(gi.f.pos("ringback"), gi.f.at("ringback"), "%s needs media.mode: relay%s; use passthrough, or relay media", g.Ringback, where)
		}
		if g.Record.Enabled {
			l.errorf(gi.record.pos("enabled"), gi.record.at("enabled"), "recording needs media.mode: relay%s", where)
		}
	}
}

func (l *loader) tlsCheck(c *Config) {
	if len(l.x.tlsListen) == 0 {
		if l.x.tls != nil && l.x.tls.node != nil && (c.TLS.Cert != "" || c.TLS.Key != "") {
			l.warnf(l.x.tls.node, "tls", "is set but no listen entry is tls://, so it is not used")
		}
		return
	}
	first := l.x.tlsListen[0]
	var missing []string
	for _, k := range []struct{ key, val string }{{"cert", c.TLS.Cert}, {"key", c.TLS.Key}} {
		if k.val == "" {
			missing = append(missing, "tls."+k.key)
			continue
		}
		if p := fileProblem(k.val); p != "" {
			l.errorf(l.x.tls.pos(k.key), "tls."+k.key, "%q %s (relative paths are from the directory ringroute runs in)", k.val, p)
		}
	}
	if len(missing) > 0 {
		l.errorf(first.node, first.path, "tls:// needs %s (tls: {cert: FILE, key: FILE})", strings.Join(missing, " and "))
		return
	}
	if fileProblem(c.TLS.Cert) != "" || fileProblem(c.TLS.Key) != "" {
		return
	}
	// The daemon loads the pair at start and at every reload; a pair it
	// cannot use must fail `check` and a reload, not the next handshake.
	if _, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key); err != nil {
		l.errorf(l.x.tls.pos("cert"), "tls.cert", "%q with tls.key %q is not a usable certificate and key: %v (both PEM; the key must match the certificate)", c.TLS.Cert, c.TLS.Key, err)
	}
}

// unreachable warns about a group nothing can reach: no extension, no
// numbers, and no member or fallback naming it.
func (l *loader) unreachable() {
	named := map[string]bool{}
	for _, e := range l.x.memberEdges {
		named[e.to] = true
	}
	for _, e := range l.x.fallbackEdges {
		named[e.to] = true
	}
	for _, gi := range l.x.infos {
		g := gi.g
		if g.Name == "" || g.Extension != "" || len(g.Numbers) > 0 || named[g.Name] {
			continue
		}
		l.warnf(gi.f.pos("name"), gi.f.at("name"), "group %q has no extension or numbers and no member or fallback names it, so no call can reach it", g.Name)
	}
}

// indexes fills the lookup maps behind Config's methods. On a duplicate the
// first definition wins; the duplicate is already an error.
func (l *loader) indexes(c *Config) {
	c.groupsByName = map[string]*Group{}
	c.groupsByNumber = map[string]*Group{}
	c.usersByName = map[string]*User{}
	c.usersByExt = map[string]*User{}
	for _, g := range c.Groups {
		if _, dup := c.groupsByName[g.Name]; !dup && g.Name != "" {
			c.groupsByName[g.Name] = g
		}
		nums := g.Numbers
		if g.Extension != "" {
			nums = append([]string{g.Extension}, nums...)
		}
		for _, n := range nums {
			if _, dup := c.groupsByNumber[n]; !dup {
				c.groupsByNumber[n] = g
			}
		}
	}
	for _, u := range c.Users {
		if _, dup := c.usersByName[u.Name]; !dup && u.Name != "" {
			c.usersByName[u.Name] = u
		}
		if _, dup := c.usersByExt[u.Extension]; !dup && u.Extension != "" {
			c.usersByExt[u.Extension] = u
		}
	}
}
