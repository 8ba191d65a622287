package config

import (
	"fmt"
	"strings"
)

// Diagnostic is one problem found in a config file, with its position.
type Diagnostic struct {
	File      string
	Line, Col int
	Path      string // field path, e.g. groups[0].members[2].timeout
	Msg       string // what is wrong and what to do, e.g. `"ten" is not a duration (like 10s)`
}

// String renders file:line:col: path: msg.
func (d Diagnostic) String() string { return d.render("") }

// warning renders a warning the way check prints it: the position first,
// so editors and grep treat it like an error, then "warning: ".
func (d Diagnostic) warning() string { return d.render("warning: ") }

func (d Diagnostic) render(kind string) string {
	var b strings.Builder
	if d.Line > 0 {
		fmt.Fprintf(&b, "%s:%d:%d: ", d.File, d.Line, d.Col)
	} else {
		fmt.Fprintf(&b, "%s: ", d.File)
	}
	b.WriteString(kind)
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Errors is every error of one file, sorted by position. Load returns it as
// its error.
type Errors []Diagnostic

// Error renders one diagnostic per line.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, d := range e {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}
