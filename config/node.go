package config

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// This file is the schema-aware walk over yaml.Node. yaml.v3's Decode would
// lose positions and report Go type names; walking nodes keeps a line, a
// column and a field path for every value, and lets us keep going after the
// first problem.
//
// Value conventions, chosen so that a file means what an operator reading it
// thinks it means:
//   - A key with no value (`key:`, `key: ~`, `key: null`) is the same as
//     leaving the key out: the default applies. To turn something off, write
//     "" (or 0, or false).
//   - Quotes never change a scalar's meaning: "30s", "10" and "true" are a
//     duration, a number and a boolean where one is expected, and an
//     unquoted 600 is a string where an extension is expected.
//   - Booleans are true or false (any case); yes/no/on/off are rejected
//     rather than guessed at.
//   - Aliases (*name) and merge keys (<<: *name) work as in YAML; a value
//     reached through an alias is reported at the anchor's position.

// maxAliasDepth bounds alias chains; yaml.v3 can build an anchor that
// contains an alias to itself.
const maxAliasDepth = 32

// resolve follows aliases to the value n stands for, or nil when there is
// none: nil, an alias chain too long to follow and null all mean "absent".
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == maxAliasDepth {
			return nil
		}
		n = n.Alias
	}
	if n == nil || isNull(n) {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's kind for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "an empty value"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// fields is one YAML mapping checked against the keys allowed at its level.
// An absent mapping is an empty fields, so callers read defaults through the
// same code as values.
type fields struct {
	l    *loader
	path string
	node *yaml.Node            // the mapping; nil when absent
	keys map[string]*yaml.Node // key nodes, for positions
	vals map[string]*yaml.Node // resolved values; null values are left out
}

// mapping checks that n is a mapping whose keys are all in known, reporting
// unknown keys (with a suggestion) and keys set twice. It returns nil only
// when n is present but not a mapping; the caller then skips the block, as
// everything in it would only produce follow-on errors.
func (l *loader) mapping(n *yaml.Node, path string, known []string) *fields {
	f := &fields{l: l, path: path, keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}}
	n = resolve(n)
	if n == nil {
		return f
	}
	if n.Kind != yaml.MappingNode {
		l.errorf(n, path, "must be a mapping (key: value), not %s", describe(n))
		return nil
	}
	f.node = n
	own := map[string]*yaml.Node{}
	for _, p := range l.pairs(n, path, map[*yaml.Node]bool{}) {
		name := p.key.Value
		if path == "" && strings.HasPrefix(name, "x-") {
			continue // top-level x- keys hold anchors for the rest of the file
		}
		if !contains(known, name) {
			if p.own {
				l.errorf(p.key, path, "unknown key %q%s", name, l.suggestKey(name, known))
			} else {
				l.errorf(p.key, path, "unknown key %q%s, merged in at line %d", name, l.suggestKey(name, known), p.via.Line)
			}
			continue
		}
		if p.own {
			if prev := own[name]; prev != nil {
				l.errorf(p.key, join(path, name), "set twice; the first is %s", earlier(prev, p.key))
				continue
			}
			own[name] = p.key
		} else if f.keys[name] != nil {
			continue // merged keys never override what is already set
		}
		f.keys[name] = p.key
		if v := resolve(p.val); v != nil {
			f.vals[name] = v
		}
	}
	return f
}

type pair struct {
	key, val *yaml.Node
	own      bool       // written in the mapping itself, not merged in
	via      *yaml.Node // for merged pairs: the << key that brought them
}

// pairs lists n's key/value pairs highest precedence first, so that taking
// the first of each key gives YAML's merge semantics: n's own keys, then
// what n merges (of a list of merged mappings, the earlier wins). done
// makes each merged mapping count once, which keeps a chain of anchors
// that each merge the previous one twice linear instead of exponential.
// yaml.v3 keeps duplicate keys when building nodes; the caller reports
// them, since silently using one would hide a mistake.
func (l *loader) pairs(n *yaml.Node, path string, done map[*yaml.Node]bool) []pair {
	if done[n] {
		return nil
	}
	done[n] = true
	var own, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, l.mergePairs(k, v, path, done)...)
			continue
		}
		rk := resolve(k)
		if rk == nil || rk.Kind != yaml.ScalarNode {
			l.errorf(k, path, "keys must be plain names, not %s", describeKey(k))
			continue
		}
		own = append(own, pair{key: rk, val: v, own: true})
	}
	return append(own, merged...)
}

func (l *loader) mergePairs(k, v *yaml.Node, path string, done map[*yaml.Node]bool) []pair {
	rv := resolve(v)
	var maps []*yaml.Node
	switch {
	case rv == nil:
	case rv.Kind == yaml.MappingNode:
		maps = []*yaml.Node{rv}
	case rv.Kind == yaml.SequenceNode:
		for _, it := range rv.Content {
			item := resolve(it)
			if item == nil || item.Kind != yaml.MappingNode {
				l.errorf(it, path, "<< merges mappings, not %s", describeKey(it))
				continue
			}
			maps = append(maps, item)
		}
	default:
		l.errorf(v, path, "<< merges mappings, not %s", describe(rv))
	}
	var out []pair
	for _, m := range maps {
		for _, p := range l.pairs(m, path, done) {
			if p.own {
				p.own, p.via = false, k
			}
			out = append(out, p)
		}
	}
	return out
}

func describeKey(n *yaml.Node) string {
	if r := resolve(n); r != nil {
		return describe(r)
	}
	return "an empty value"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// has reports whether key is set to a non-null value.
func (f *fields) has(key string) bool { return f.vals[key] != nil }

// present reports whether key appears at all, even with no value.
func (f *fields) present(key string) bool { return f.keys[key] != nil }

func (f *fields) at(key string) string { return join(f.path, key) }

// pos is where a problem about key (or the whole mapping) is reported: the
// value if there is one, else the key, else the mapping.
func (f *fields) pos(key string) *yaml.Node {
	if v := f.vals[key]; v != nil {
		return v
	}
	if k := f.keys[key]; k != nil {
		return k
	}
	return f.node
}

// scalar returns key's value if it is a scalar, reporting anything else.
func (f *fields) scalar(key string) (*yaml.Node, bool) {
	v := f.vals[key]
	if v == nil {
		return nil, false
	}
	if v.Kind != yaml.ScalarNode {
		f.l.errorf(v, f.at(key), "must be a single value, not %s", describe(v))
		return nil, false
	}
	return v, true
}

// str sets *dst to key's text when present.
func (f *fields) str(key string, dst *string) bool {
	v, ok := f.scalar(key)
	if ok {
		*dst = v.Value
	}
	return ok
}

// dur sets *dst to key's duration when present and valid. Negative durations
// are always an error; positive says whether 0 is.
func (f *fields) dur(key string, dst *time.Duration, positive bool) bool {
	v, ok := f.scalar(key)
	if !ok {
		return false
	}
	d, ok := f.l.duration(v, f.at(key))
	if !ok {
		return false
	}
	if positive && d == 0 {
		f.l.errorf(v, f.at(key), "must be more than 0")
		return false
	}
	*dst = d
	return true
}

func (l *loader) duration(v *yaml.Node, path string) (time.Duration, bool) {
	s := strings.TrimSpace(v.Value)
	if s == "0" {
		return 0, true
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil && s != "" {
		l.errorf(v, path, "%q has no unit; write %ss (or ms, m, h)", v.Value, s)
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		hint := ""
		if strings.HasSuffix(s, "d") || strings.HasSuffix(s, "w") {
			hint = "; there are no days or weeks, write hours (24h)"
		}
		l.errorf(v, path, "%q is not a duration (like 10s)%s", v.Value, hint)
		return 0, false
	}
	if d < 0 {
		l.errorf(v, path, "%q is negative; durations must be 0 or more", v.Value)
		return 0, false
	}
	return d, true
}

// boolean sets *dst when key is true or false.
func (f *fields) boolean(key string, dst *bool) bool {
	v, ok := f.scalar(key)
	if !ok {
		return false
	}
	switch strings.ToLower(v.Value) {
	case "true":
		*dst = true
		return true
	case "false":
		*dst = false
		return true
	}
	f.l.errorf(v, f.at(key), "%q is not a boolean (use true or false)", v.Value)
	return false
}

// integer sets *dst when key is a whole number >= min.
func (f *fields) integer(key string, dst *int, min int) bool {
	v, ok := f.scalar(key)
	if !ok {
		return false
	}
	n, ok := f.l.number(v, f.at(key), min)
	if ok {
		*dst = n
	}
	return ok
}

func (l *loader) number(v *yaml.Node, path string, min int) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(v.Value))
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			l.errorf(v, path, "%q is too large", v.Value)
		} else {
			l.errorf(v, path, "%q is not a whole number", v.Value)
		}
		return 0, false
	}
	if n < min {
		l.errorf(v, path, "%d is too small; the least allowed is %d", n, min)
		return 0, false
	}
	return n, true
}

// enum sets *dst when key is one of allowed. aliases maps extra accepted
// names to what they stand for; the canonical name is stored.
func (f *fields) enum(key string, dst *string, allowed []string, aliases map[string]string) bool {
	v, ok := f.scalar(key)
	if !ok {
		return false
	}
	if contains(allowed, v.Value) {
		*dst = v.Value
		return true
	}
	if c, ok := aliases[v.Value]; ok {
		*dst = c
		return true
	}
	names := append([]string(nil), allowed...)
	for a := range aliases {
		names = append(names, a)
	}
	sort.Strings(names)
	hint := suggest(v.Value, names)
	if hint != "" {
		hint = " (did you mean " + strconv.Quote(hint) + "?)"
	}
	f.l.errorf(v, f.at(key), "unknown %s %q%s; valid: %s", lastKey(key), v.Value, hint, oneOf(allowed, aliases))
	return false
}

func lastKey(key string) string { return strings.ReplaceAll(key, "_", " ") }

// oneOf lists allowed values in schema order, each alias after its target.
func oneOf(allowed []string, aliases map[string]string) string {
	parts := make([]string, 0, len(allowed))
	for _, a := range allowed {
		var al []string
		for k, v := range aliases {
			if v == a {
				al = append(al, k)
			}
		}
		sort.Strings(al)
		if len(al) > 0 {
			a += " (alias " + strings.Join(al, ", ") + ")"
		}
		parts = append(parts, a)
	}
	switch len(parts) {
	case 1:
		return parts[0]
	case 2:
		return parts[0] + " or " + parts[1]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
}

// list returns key's items when it is a list; a lone scalar is reported.
func (f *fields) list(key string) ([]*yaml.Node, bool) {
	v := f.vals[key]
	if v == nil {
		return nil, false
	}
	if v.Kind != yaml.SequenceNode {
		f.l.errorf(v, f.at(key), "must be a list, not %s", describe(v))
		return nil, false
	}
	return v.Content, true
}

// strings returns key's items when it is a list of single values. Bad items
// are reported and left out.
func (f *fields) strings(key string) ([]string, []*yaml.Node, bool) {
	items, ok := f.list(key)
	if !ok {
		return nil, nil, false
	}
	var vals []string
	var nodes []*yaml.Node
	for i, it := range items {
		r := resolve(it)
		if r == nil || r.Kind != yaml.ScalarNode {
			f.l.errorf(it, index(f.at(key), i), "must be a single value, not %s", describeKey(it))
			continue
		}
		vals = append(vals, r.Value)
		nodes = append(nodes, r)
	}
	return vals, nodes, true
}

// suggestKey is " (did you mean X?)" for a near miss among known, or a note
// on where the key belongs when it is valid in another block.
func (l *loader) suggestKey(name string, known []string) string {
	if s := suggest(name, known); s != "" {
		return " (did you mean " + strconv.Quote(s) + "?)"
	}
	if where, ok := keyHome(name); ok {
		return " (" + name + " belongs in " + where + ")"
	}
	return ""
}

// suggest returns the closest of candidates within edit distance 2 (1 for
// very short words, where 2 would suggest nearly anything), or "".
func suggest(s string, candidates []string) string {
	if len(s) > 64 {
		return ""
	}
	best, bestD := "", 3
	limit := 2
	if len(s) <= 3 {
		limit = 1
	}
	for _, c := range candidates {
		d := levenshtein(strings.ToLower(s), strings.ToLower(c))
		if d <= limit && d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" && len(s) >= 4 {
		// "warning" for "warn", "prefix" for "group_prefix": one word
		// contains the other.
		ls := strings.ToLower(s)
		for _, c := range candidates {
			lc := strings.ToLower(c)
			if len(c) >= 4 && (strings.Contains(ls, lc) || strings.Contains(lc, ls)) {
				return c
			}
		}
	}
	return best
}

// human prints a duration the way it would be written in the file: 1h,
// 2m30s, 1.5s, rather than time.Duration's 1h0m0s.
func human(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// earlier says where prev is, seen from cur: "at line 3", or "earlier on
// this line" when both are on one line.
func earlier(prev, cur *yaml.Node) string {
	if prev.Line == cur.Line {
		return "earlier on this line"
	}
	return "at line " + strconv.Itoa(prev.Line)
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
