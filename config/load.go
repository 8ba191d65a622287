package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Load reads, parses and validates the file at path. On any problem in the
// file it returns a nil *Config and an Errors value holding every problem
// found, each positioned in path as given. If the file cannot be read at all
// the error is the read error (an *fs.PathError), not Errors.
//
// Relative paths inside the file (music_file, tls.cert, tls.key) are
// resolved against the current working directory, not the file's
// directory, so `check` and `run` started from the same place agree.
func Load(path string) (*Config, error) {
	c, errs, _, err := load(path)
	if err != nil {
		return nil, err
	}
	if errs != nil {
		return nil, errs
	}
	return c, nil
}

// Parse is Load for bytes already read; name is used in positions and as
// Config.File. Relative paths in the data still resolve against the current
// working directory.
func Parse(name string, data []byte) (*Config, error) {
	c, errs := parse(name, data)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// Check loads path exactly as Load does and writes every error, then every
// warning, one per line, then a count line such as "2 errors, 1 warning" or
// "no errors". It reports whether the file loads; the exit code is the
// caller's business.
func Check(path string, w io.Writer) (ok bool) {
	_, errs, warns, err := load(path)
	if err != nil {
		why := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			why = pe.Err.Error()
		}
		fmt.Fprintln(w, Diagnostic{File: path, Msg: "cannot read the file: " + why})
		fmt.Fprintln(w, count(1, 0))
		return false
	}
	for _, d := range errs {
		fmt.Fprintln(w, d.String())
	}
	for _, d := range warns {
		fmt.Fprintln(w, d.warning())
	}
	fmt.Fprintln(w, count(len(errs), len(warns)))
	return len(errs) == 0
}

func count(errs, warns int) string {
	plural := func(n int, what string) string {
		if n == 1 {
			return "1 " + what
		}
		return strconv.Itoa(n) + " " + what + "s"
	}
	s := "no errors"
	if errs > 0 {
		s = plural(errs, "error")
	}
	if warns > 0 {
		s += ", " + plural(warns, "warning")
	}
	return s
}

// load is the one code path behind Load and Check. Warnings are returned
// even when there are errors, so that check can show everything; warnings
// about a group that itself has errors are left out, as they would be
// computed from defaults standing in for the bad values.
func load(path string) (*Config, Errors, []Diagnostic, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	l := &loader{file: path}
	c := l.run(data)
	if len(l.errs) > 0 {
		return nil, l.errs, l.warns, nil
	}
	return c, nil, l.warns, nil
}

func parse(name string, data []byte) (*Config, Errors) {
	l := &loader{file: name}
	c := l.run(data)
	if len(l.errs) > 0 {
		return nil, l.errs
	}
	return c, nil
}

// loader holds one load's diagnostics and the positions cross-checks need.
// It lives for one call; nothing is shared between loads.
type loader struct {
	file  string
	errs  Errors
	warns []Diagnostic
	x     xref
}

func (l *loader) errorf(n *yaml.Node, path, format string, args ...any) {
	l.errs = append(l.errs, l.diag(n, path, format, args...))
}

func (l *loader) warnf(n *yaml.Node, path, format string, args ...any) {
	l.warns = append(l.warns, l.diag(n, path, format, args...))
}

func (l *loader) diag(n *yaml.Node, path, format string, args ...any) Diagnostic {
	// printable keeps one problem on one line whatever values the message
	// quotes.
	d := Diagnostic{File: l.file, Line: 1, Col: 1, Path: path, Msg: printable(fmt.Sprintf(format, args...))}
	if n != nil && n.Line > 0 {
		d.Line, d.Col = n.Line, max(n.Column, 1)
	}
	return d
}

// run parses data and returns the config, which is only meaningful when no
// errors were recorded.
func (l *loader) run(data []byte) (c *Config) {
	root, ok := l.document(data)
	c = defaults(l.file)
	if ok && root != nil {
		l.top(root, c)
	}
	l.indexes(c)
	l.errs = sortDiags(l.errs)
	l.warns = sortDiags(l.warns)
	c.Warnings = l.warns
	return c
}

// document parses data into its single YAML document's root, or nil for an
// empty file. An empty file (or one holding only comments, or null) is a
// valid config: every default and no groups, which is what an operator
// starting from nothing expects `run` to do.
func (l *loader) document(data []byte) (root *yaml.Node, ok bool) {
	defer func() {
		// yaml.v3 turns its own failures into errors, but a parser bug must
		// not take down a daemon that is reloading its config.
		if r := recover(); r != nil {
			l.errs = append(l.errs, Diagnostic{File: l.file, Line: 1, Col: 1, Msg: fmt.Sprintf("YAML parser failed: %v", r)})
			root, ok = nil, false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		l.syntax(data, err)
		return nil, false
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		l.syntax(data, err)
		return nil, false
	case len(next.Content) > 0 && resolve(next.Content[0]) != nil:
		l.errorf(next.Content[0], "", "a second YAML document (after ---); ringroute reads one document per file")
		return nil, false
	}
	if len(doc.Content) == 0 {
		return nil, true
	}
	root = resolve(doc.Content[0])
	if root == nil {
		return nil, true
	}
	if size, first := expansion(root); size > maxExpansion {
		l.errorf(first, "", "aliases expand this file to more than %d values; write repeated blocks out instead of nesting aliases", maxExpansion)
		return nil, false
	}
	if root.Kind != yaml.MappingNode {
		l.errorf(root, "", "the file must be a mapping of settings (like `groups: ...`), not %s", describe(root))
		return nil, false
	}
	return root, true
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are yaml.v3's parser (as opposed to scanner) errors. For
// these it reports the line of the enclosing construct counted from 0, not
// 1, so a list whose item is mis-indented is reported one line above the
// list.
var parserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"found undefined tag handle",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// syntax records a yaml.v3 error. yaml.v3 gives at most a line, which for
// many problems is where the enclosing block starts rather than where the
// mistake is, and never a column. So the position is found by parsing
// growing prefixes of the file: the first line, then the first byte in it,
// at which the same error appears is where the parser gave up. Stream
// problems (bad UTF-8, control characters) are found by scanning for them.
func (l *loader) syntax(data []byte, err error) {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if contains(parserProblems, msg) {
		line++
	}
	col := 0
	switch {
	case strings.Contains(msg, "UTF-8") || strings.Contains(msg, "control characters"):
		line, col = badByte(data)
	case strings.HasPrefix(msg, "unknown anchor '"):
		name := strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced")
		line, col = offset(data, bytes.Index(data, []byte("*"+name)))
	default:
		line, col = locate(data, msg, max(line, 1))
	}
	if line <= 0 {
		line = 1
	}
	if col <= 0 {
		col = firstCol(data, line)
	}
	l.errs = append(l.errs, Diagnostic{File: l.file, Line: line, Col: col, Msg: "YAML syntax: " + printable(msg) + syntaxHints[msg]})
}

// syntaxHints turn the parser's words into the usual cause.
var syntaxHints = map[string]string{
	"did not find expected key":                       " (check this line's indentation)",
	"did not find expected '-' indicator":             " (check this line's indentation)",
	"found a tab character that violates indentation": " (indent with spaces, not tabs)",
	"mapping values are not allowed in this context":  ` (quote a value that contains ": ", or check the indentation)`,
	"found character that cannot start any token":     " (quote the value)",
	"found unexpected end of stream":                  " (a quote is not closed)",
	"did not find expected ',' or ']'":                " (a [ list is not closed)",
	"did not find expected ',' or '}'":                " (a { mapping is not closed)",
}

// maxExpansion bounds how many values the file may hold once aliases are
// followed. The walk visits each value an alias reaches once per alias, so
// a few lines of nested aliases (a "billion laughs") could otherwise keep
// a reload busy for ever. Real files, aliases and all, are far below it.
const maxExpansion = 1 << 20

// expansion counts the values reachable from n with aliases followed,
// stopping once past maxExpansion, and returns the first alias seen, for a
// position.
func expansion(n *yaml.Node) (int, *yaml.Node) {
	memo := map[*yaml.Node]int{}
	var first *yaml.Node
	var size func(n *yaml.Node, depth int) int
	size = func(n *yaml.Node, depth int) int {
		if n == nil || depth > maxAliasDepth*4 {
			return 1
		}
		if s, ok := memo[n]; ok {
			return s
		}
		memo[n] = 1 // an anchor that contains itself counts once
		total := 1
		if n.Kind == yaml.AliasNode {
			if first == nil {
				first = n
			}
			total = size(n.Alias, depth+1)
		}
		for _, c := range n.Content {
			total += size(c, depth+1)
			if total > maxExpansion {
				break
			}
		}
		total = min(total, maxExpansion+1)
		memo[n] = total
		return total
	}
	return size(n, 0), first
}

// maxLocate bounds the prefix search, which parses the file once per step;
// beyond this size the line yaml.v3 gave is used as it is.
const maxLocate = 64 << 10

// locate finds where the parser fails with msg: the first line at or after
// from whose inclusion makes the error appear, then the first byte in that
// line. It returns from and 0 when the search does not reproduce the error.
func locate(data []byte, msg string, from int) (line, col int) {
	if len(data) > maxLocate {
		return from, 0
	}
	var ends []int // ends[k] is the length of the first k+1 lines
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	if from > len(ends) {
		return from, 0
	}
	k := sort.Search(len(ends)-(from-1), func(i int) bool {
		return parseError(data[:ends[from-1+i]]) == msg
	}) + from - 1
	if k >= len(ends) {
		return from, 0
	}
	start := 0
	if k > 0 {
		start = ends[k-1]
	}
	line = k + 1
	n := sort.Search(ends[k]-start, func(i int) bool {
		return parseError(data[:start+i+1]) == msg
	})
	if n == ends[k]-start {
		return line, 0
	}
	_, col = offset(data, start+n)
	return line, col
}

// parseError is the message (without "yaml: line N: ") that yaml.v3 gives
// for data as document reads it, or "".
func parseError(data []byte) (msg string) {
	defer func() {
		if recover() != nil {
			msg = ""
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for range 2 {
		var n yaml.Node
		err := dec.Decode(&n)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			return ""
		}
		s := err.Error()
		if m := yamlLine.FindStringSubmatch(s); m != nil {
			return m[2]
		}
		return strings.TrimPrefix(s, "yaml: ")
	}
	return ""
}

// badByte finds the first byte YAML's reader rejects: invalid UTF-8 or a
// control character other than tab, newline and carriage return.
func badByte(data []byte) (line, col int) {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if (r == utf8.RuneError && size == 1) || (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x7f && r < 0xa0 && r != 0x85) || r == 0xfffe || r == 0xffff {
			return offset(data, i)
		}
		i += size
	}
	return 0, 0
}

// offset turns a byte offset into a 1-based line and column (in runes).
func offset(data []byte, off int) (line, col int) {
	if off < 0 || off > len(data) {
		return 0, 0
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	start := bytes.LastIndexByte(before, '\n') + 1
	return line, utf8.RuneCount(before[start:]) + 1
}

// firstCol is the column of line's first non-blank character, or 1.
func firstCol(data []byte, line int) int {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return 1
	}
	s := lines[line-1]
	n := len(s) - len(bytes.TrimLeft(s, " \t"))
	return utf8.RuneCount(s[:n]) + 1
}

// sortDiags orders diagnostics by position, keeping the order found for
// equal positions, and drops exact repeats (an anchor reached twice).
func sortDiags(ds []Diagnostic) []Diagnostic {
	sort.SliceStable(ds, func(i, j int) bool {
		if ds[i].Line != ds[j].Line {
			return ds[i].Line < ds[j].Line
		}
		return ds[i].Col < ds[j].Col
	})
	out := ds[:0]
	seen := map[Diagnostic]bool{}
	for _, d := range ds {
		if seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// printable escapes what would break the one-line-per-problem output.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
