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
func (d Diagnostic) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: ", d.File, d.Line, d.Col)
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
